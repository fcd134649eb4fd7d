"""OpenTelemetry tracing: off unless the standard OTEL_* variables turn it on.

With `OTEL_TRACES_EXPORTER` unset or `none` nothing is set up: no provider,
no middleware on the broker or the HTTP app, no span is ever created. With
an exporter named (`otlp`, `console`, or any installed
`opentelemetry_traces_exporter` entry point), `configure_tracing` builds the
process's tracer provider; the exporter reads its own variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`...), the provider `OTEL_SERVICE_NAME` (default
`kami-<service>`), `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER`.

How one purchase becomes one trace across services:

- an HTTP request's span (FastAPI instrumentation) or a consumed message's
  span (FastStream's middleware) is current while a handler runs;
- the event store records the current span's `traceparent` in every
  envelope it commits (`TracedEventStore` in `kami_events.runtime`);
- the relay publishes each envelope inside that trace, so the publish span
  is the commit's child and the message's `traceparent` header points at it;
- the consumer's span continues from that header, and so on;
- a later request about the same purchase (the buyer paying the order)
  joins it with `continue_trace(<the order's traceparent>)`, linking the
  request's own span.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None

# `otlp` means OTLP over HTTP/protobuf (the spec's default protocol; the
# gRPC exporter is not installed): entry point names per protocol.
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


class TracingConfigError(ValueError):
    """OTEL_TRACES_EXPORTER names an exporter that is not installed."""


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER asks for; empty when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n and n != "none"]


def configure_tracing(
    service: str, environ: Mapping[str, str] = os.environ
) -> TracerProvider | None:
    """The process's tracer provider from OTEL_* variables, or None when tracing is off."""
    names = exporter_names(environ)
    if not names:
        return None
    attributes: dict[str, Any] = {}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = f"kami-{service}"
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    enable_tracing(provider)
    log.info("tracing on: exporting spans to %s", ", ".join(names))
    return provider


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    entry_name = name
    if name == "otlp":
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        entry_name = _OTLP_BY_PROTOCOL.get(protocol, protocol)
    found = entry_points(group="opentelemetry_traces_exporter", name=entry_name)
    if not found:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER: no span exporter {name!r} is installed")
    exporter_class = next(iter(found)).load()
    exporter: SpanExporter = exporter_class()
    return exporter


def enable_tracing(provider: TracerProvider) -> None:
    """Trace with `provider` from now on (tests pass one with an in-memory exporter).

    Services built afterwards put FastStream's middleware on their broker and
    FastAPI's instrumentation on their app.
    """
    global _provider
    _provider = provider
    trace.set_tracer_provider(provider)  # for libraries that use the global one


def disable_tracing() -> None:
    """Services built afterwards trace nothing (spans already started end normally)."""
    global _provider
    _provider = None


def tracer_provider() -> TracerProvider | None:
    """The provider services trace with, or None when tracing is off."""
    return _provider


def flush(timeout_millis: int = 5_000) -> None:
    """Export the spans still buffered (at shutdown)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the span current here, or None outside any span."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) a `traceparent` belongs to."""
    if not traceparent:
        return None
    span_context = trace.get_current_span(_extract(traceparent)).get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def _extract(traceparent: str) -> context.Context:
    return _PROPAGATOR.extract({"traceparent": traceparent})


@contextmanager
def within(traceparent: str | None) -> Iterator[None]:
    """Make the span `traceparent` names the parent of spans started inside
    (no span of its own): the relay publishes each envelope this way."""
    if _provider is None or not traceparent:
        yield
        return
    token = context.attach(_extract(traceparent))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def continue_trace(
    traceparent: str | None, name: str, attributes: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Run the block in a new span of the trace `traceparent` belongs to,
    linked to the span current here (say, the HTTP request that asked for it).

    A purchase spans several requests (placing the order, paying it); each
    later one joins the order's trace this way, so the purchase stays one
    trace. Without tracing, or without a `traceparent`, it does nothing.
    """
    if _provider is None or not traceparent:
        yield
        return
    parent = _extract(traceparent)
    if not trace.get_current_span(parent).get_span_context().is_valid:
        yield
        return
    here = trace.get_current_span().get_span_context()
    tracer = _provider.get_tracer("kami_events.tracing")
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.INTERNAL,
        links=[Link(here)] if here.is_valid else None,
        attributes=dict(attributes or {}),
    ):
        yield


@contextmanager
def consuming(traceparent: str | None, name: str) -> Iterator[None]:
    """Run a consumed message's handler in a consumer span, child of the span
    that published it (its `traceparent` header). Messages come in batches,
    so each gets its own span here rather than the batch's one."""
    if _provider is None or not traceparent:
        yield
        return
    tracer = _provider.get_tracer("kami_events.consumer")
    with tracer.start_as_current_span(name, context=_extract(traceparent), kind=SpanKind.CONSUMER):
        yield


class PublishingInTrace:
    """The broker as the relay sees it: each envelope is published within the
    trace its commit recorded (its `traceparent` header), so FastStream's
    telemetry middleware starts the publish span there and writes its own
    span into the header for the consumers."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    async def publish(self, message: Any, *, headers: dict[str, str], **options: Any) -> Any:
        with within(headers.get("traceparent")):
            return await self._broker.publish(message, headers=headers, **options)
