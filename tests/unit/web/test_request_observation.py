"""HTTP latency by route template (never the raw path), and the request's
ids on the log lines written while it runs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from fastapi import FastAPI, HTTPException
from prometheus_client import REGISTRY

from kami_events.logs import configure_logging
from kami_web.observability import RequestObservation

SERVICE = "observed-test"


def observed_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestObservation, service=SERVICE)

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, str]:
        logging.getLogger("kami_test.api").info("showing an order")
        if order_id == "missing":
            raise HTTPException(404, "no such order")
        return {"order_id": order_id}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=observed_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        yield http


def count(route: str, status: str, method: str = "GET") -> float:
    labels = {"service": SERVICE, "method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("kami_http_request_duration_seconds_count", labels) or 0.0


async def test_latency_is_labelled_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    before_ok, before_404 = count("/orders/{order_id}", "200"), count("/orders/{order_id}", "404")
    before_unmatched = count("unmatched", "404")

    for order_id in ("o-1", "o-2", "missing"):
        await client.get(f"/orders/{order_id}")
    await client.get("/no/such/route")

    assert count("/orders/{order_id}", "200") == before_ok + 2
    assert count("/orders/{order_id}", "404") == before_404 + 1
    assert count("unmatched", "404") == before_unmatched + 1
    assert count("/orders/o-1", "200") == 0  # no series per order


async def test_log_lines_carry_the_request_and_correlation_ids(
    client: httpx.AsyncClient,
) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    configure_logging(SERVICE, stream=out)
    try:
        given = await client.get(
            "/orders/o-7", headers={"X-Request-ID": "req-42", "X-Correlation-ID": "order-7"}
        )
        fresh = await client.get("/orders/o-8", headers={"X-Request-ID": "bad id {}"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()

    assert given.headers["x-request-id"] == "req-42"
    generated = fresh.headers["x-request-id"]
    assert generated != "bad id {}" and len(generated) == 32
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    first, second = (line for line in lines if line["logger"] == "kami_test.api")
    assert (first["request_id"], first["correlation_id"]) == ("req-42", "order-7")
    # Without a correlation header the request id stands in.
    assert second["request_id"] == second["correlation_id"] == generated
    assert structlog.contextvars.get_contextvars() == {}
