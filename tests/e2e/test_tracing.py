"""One purchase is one trace across the services (DESIGN §7).

A platform of its own runs with tracing on, configured only by the standard
variables (`OTEL_TRACES_EXPORTER=otlp` and its endpoint); each process
exports its spans over OTLP/HTTP to a collector in this test, which follows
the purchase's trace id from `POST /orders` to `KeyDelivered`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from kami_events.mongo import connect
from kami_events.tracing import trace_id_of
from kami_local import Platform, available_services
from kami_market import funded_buyer, list_offer_with_keys, operator_of
from tests.conftest import Servers
from tests.e2e.conftest import E2E_ENV, OPERATOR_PHONE
from tests.e2e.test_observability import buy_and_confirm


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, str]


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: what every process exported."""

    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: a.value.string_value for a in span.attributes},
                        )
                    )
        with self.lock:
            self.spans.extend(received)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    spans = Collector()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            spans.receive(self.rfile.read(int(self.headers["Content-Length"])))
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield spans, server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def traced_platform(
    servers: Servers,
    tmp_path_factory: pytest.TempPathFactory,
    collector: tuple[Collector, int],
) -> Iterator[Platform]:
    _, port = collector
    instance = Platform.isolated(
        servers.kafka_bootstrap,
        servers.mongodb_uri,
        home=tmp_path_factory.mktemp("traced-platform"),
        name="e2etr",
        extra_env=E2E_ENV
        | {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    )
    with instance.running(available_services()):
        yield instance


@pytest.fixture(scope="module")
async def traced_databases(traced_platform: Platform, servers: Servers) -> AsyncIterator[None]:
    yield
    client = connect(servers.mongodb_uri, app_name="kami-e2e-cleanup")
    try:
        for name in await client.list_database_names():
            if name.startswith(f"{traced_platform.database_prefix}_"):
                await client.drop_database(name)
    finally:
        await client.close()


async def purchase_envelopes(platform: Platform, order_id: str) -> list[dict[str, object]]:
    client = connect(platform.mongodb_uri, app_name="kami-e2e-traces")
    envelopes: list[dict[str, object]] = []
    try:
        for service in ("ordering", "inventory", "payment", "delivery"):
            commits = client[f"{platform.database_prefix}_{service}"]["events"]
            async for commit in commits.find({"correlation_id": order_id}, {"events": 1}):
                envelopes.extend(commit["events"])
    finally:
        await client.close()
    return envelopes


async def test_one_purchase_is_one_trace_across_the_services(
    traced_platform: Platform,
    traced_databases: None,
    collector: tuple[Collector, int],
) -> None:
    spans, _ = collector
    operator = await operator_of(traced_platform, OPERATOR_PHONE)
    offer = await list_offer_with_keys(traced_platform, operator, keys=1)
    buyer = await funded_buyer(traced_platform, 5000)
    order_id = await buy_and_confirm(buyer, offer)

    # Every event of the purchase, in every service's store, is in one trace.
    envelopes = await purchase_envelopes(traced_platform, order_id)
    by_type = {str(e["event_type"]): e for e in envelopes}
    for expected in ("OrderPlaced", "KeyReserved", "PaymentConfirmed", "OrderPaid", "KeyDelivered"):
        assert expected in by_type, sorted(by_type)
    assert all(e["traceparent"] for e in envelopes)
    trace_id = trace_id_of(str(by_type["OrderPlaced"]["traceparent"]))
    assert trace_id is not None
    # From placing the order to its delivery and settlement (confirming
    # arrival is a later request of the buyer's, with a trace of its own).
    purchase = {
        str(e["event_type"]): trace_id_of(str(e["traceparent"]))
        for e in envelopes
        if e["event_type"] not in ("ArrivalConfirmed", "OrderCompleted")
    }
    assert set(purchase.values()) == {trace_id}, purchase

    def complete(found: list[Span]) -> bool:
        handled = {(s.service, s.attributes.get("kami.event_type")) for s in found}
        return ("kami-ordering", "KeyDelivered") in handled and any(
            s.service == "kami-payment" and s.name == "pay order" for s in found
        )

    deadline = asyncio.get_running_loop().time() + 30
    while not complete(spans.trace(trace_id)):
        assert asyncio.get_running_loop().time() < deadline, spans.trace(trace_id)
        await asyncio.sleep(0.3)
    trace = spans.trace(trace_id)
    ids = {span.span_id for span in trace}
    # One tree: its root is the buyer's POST /orders, every other span's
    # parent is in the trace.
    roots = [span for span in trace if not span.parent_span_id]
    assert [(r.service, r.name) for r in roots] == [("kami-ordering", "POST /orders")]
    orphans = [s for s in trace if s.parent_span_id and s.parent_span_id not in ids]
    assert orphans == [], orphans
    handled = {(s.service, s.attributes.get("kami.event_type")) for s in trace}
    for step in (
        ("kami-inventory", "OrderPlaced"),
        ("kami-ordering", "KeyReserved"),
        ("kami-payment", "OrderReserved"),
        ("kami-ordering", "PaymentConfirmed"),
        ("kami-inventory", "OrderPaid"),
        ("kami-delivery", "OrderPaid"),
        ("kami-ordering", "KeyDelivered"),
    ):
        assert step in handled, step
    assert {s.service for s in trace} >= {
        "kami-ordering",
        "kami-inventory",
        "kami-payment",
        "kami-delivery",
    }
