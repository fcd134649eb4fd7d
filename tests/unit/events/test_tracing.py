"""Tracing is off unless OTEL_TRACES_EXPORTER names an exporter; when on, a
later request about a purchase joins the purchase's trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kami_events import tracing


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_exporters_come_from_the_standard_variable(
    environ: dict[str, str], names: list[str]
) -> None:
    assert tracing.exporter_names(environ) == names


def test_no_exporter_means_no_provider() -> None:
    assert tracing.configure_tracing("ordering", {"OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.tracer_provider() is None
    assert tracing.current_traceparent() is None


def test_an_exporter_gives_a_provider_named_after_the_service() -> None:
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    provider = tracing.configure_tracing("ordering", environ)
    try:
        assert provider is not None and tracing.tracer_provider() is provider
        assert provider.resource.attributes["service.name"] == "kami-ordering"
    finally:
        tracing.disable_tracing()
        assert provider is not None
        provider.shutdown()


def test_an_unknown_exporter_is_a_clear_error() -> None:
    with pytest.raises(tracing.TracingConfigError, match="zipkin"):
        tracing.configure_tracing("ordering", {"OTEL_TRACES_EXPORTER": "zipkin"})
    assert tracing.tracer_provider() is None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable_tracing(provider)
    yield exporter
    tracing.disable_tracing()


def test_a_later_request_continues_the_purchase_trace_and_links_its_own(
    spans: InMemorySpanExporter,
) -> None:
    provider = tracing.tracer_provider()
    assert provider is not None
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /orders"):
        order_traceparent = tracing.current_traceparent()
    assert order_traceparent is not None

    with tracer.start_as_current_span("POST /payments") as request:
        with tracing.continue_trace(order_traceparent, "pay order", {"kami.order_id": "o-1"}):
            inside = tracing.current_traceparent()
        # Outside the block the request's own span is current again.
        assert tracing.current_traceparent() != inside

    pay = next(s for s in spans.get_finished_spans() if s.name == "pay order")
    order = next(s for s in spans.get_finished_spans() if s.name == "POST /orders")
    assert pay.context is not None and order.context is not None
    assert pay.context.trace_id == order.context.trace_id
    assert pay.parent is not None and pay.parent.span_id == order.context.span_id
    assert [link.context.span_id for link in pay.links] == [request.get_span_context().span_id]
    assert tracing.trace_id_of(inside) == format(order.context.trace_id, "032x")


def test_without_tracing_continue_trace_and_within_do_nothing() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.continue_trace(traceparent, "pay order"), tracing.within(traceparent):
        assert tracing.current_traceparent() is None
    assert tracing.trace_id_of(traceparent) == "0af7651916cd43dd8448eb211c80319c"
    assert tracing.trace_id_of("garbage") is None
