"""The app factory: health, readiness and metrics routes, error handlers,
request metrics and log context, tracing when it is on, and the service
runtime started in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kami_events import tracing
from kami_events.runtime import ServiceRuntime
from kami_web.dead_letters import dead_letter_router
from kami_web.errors import ErrorResponse, install_error_handlers
from kami_web.limits import DEFAULT_MAX_BODY_BYTES, BodySizeLimit, NulInUrlRefused
from kami_web.observability import RequestObservation


def create_app(
    runtime: ServiceRuntime,
    routers: Sequence[APIRouter] = (),
    *,
    title: str,
    description: str = "",
    version: str = "0.1.0",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """`max_body_bytes`: the largest request body any route reads (413 beyond)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            # uvicorn has finished the requests in flight by now (SIGTERM).
            await runtime.stop()
            tracing.flush()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        responses={
            400: {"model": ErrorResponse, "description": "The body could not be read"},
            413: {"model": ErrorResponse, "description": "The request body is too large"},
            422: {"model": ErrorResponse},
        },
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(RequestObservation, service=runtime.settings.service_name)
    provider = tracing.tracer_provider()
    if provider is not None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=provider, excluded_urls="/healthz,/readyz,/metrics"
        )
    app.add_middleware(BodySizeLimit, max_body_bytes=max_body_bytes)
    app.add_middleware(NulInUrlRefused)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="MongoDB and Kafka reachable, consumer in its group, outbox not lagging",
        responses={503: {"description": "not ready"}},
    )
    async def readyz(response: Response) -> dict[str, object]:
        readiness = await runtime.readiness()
        if not readiness.ready:
            response.status_code = 503
        return {"ready": readiness.ready, "checks": readiness.checks}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"description": "The text exposition format", "content": {"text/plain": {}}}
        },
    )
    async def metrics() -> Response:
        await runtime.relay.lag()  # refresh the outbox gauges at scrape time
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    app.include_router(dead_letter_router(runtime))
    _document_token_refusals(app)
    return app


_REFUSAL = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
}


def _document_token_refusals(app: FastAPI) -> None:
    """Every route that takes a token (its operation names a security scheme)
    may answer 401 (no valid token) and 403 (a role or standing it lacks):
    say so in the OpenAPI document, where the routes themselves cannot."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    if isinstance(operation, dict) and operation.get("security"):
                        responses = operation.setdefault("responses", {})
                        responses.setdefault("401", {"description": "No valid token", **_REFUSAL})
                        responses.setdefault(
                            "403", {"description": "The token does not allow it", **_REFUSAL}
                        )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
