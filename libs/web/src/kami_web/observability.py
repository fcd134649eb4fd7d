"""What every HTTP request leaves behind: its latency in
`kami_http_request_duration_seconds`, labelled by the route's template
(`/orders/{order_id}`, never the raw path, so one order is not one time
series), and its ids on every log line written while it runs.

A pure ASGI middleware (not `BaseHTTPMiddleware`): it neither buffers the
body nor moves the endpoint to another task, so the log context it binds is
the one the endpoint and uvicorn's access log see.
"""

from __future__ import annotations

import re
import time
from uuid import uuid4

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kami_events.logs import log_context

HTTP_REQUEST_SECONDS = Histogram(
    "kami_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and status",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"
# A request path that matched no route: one label value for all of them.
UNMATCHED_ROUTE = "unmatched"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestObservation:
    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {name.decode("latin-1"): value for name, value in scope.get("headers", [])}
        request_id = _client_id(headers.get(REQUEST_ID_HEADER)) or uuid4().hex
        correlation_id = _client_id(headers.get(CORRELATION_ID_HEADER)) or request_id
        status = 500  # unless the app answers: an exception escaped it

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] != "http.response.start":
                await send(message)
                return
            status = int(message["status"])
            message["headers"] = [
                *message.get("headers", []),
                (REQUEST_ID_HEADER.encode(), request_id.encode()),
            ]
            # Routing is done by now: uvicorn's access log line, written
            # while the response starts, gets the order's id.
            order_id = scope.get("path_params", {}).get("order_id")
            with log_context(order_id=order_id if isinstance(order_id, str) else None):
                await send(message)

        try:
            with log_context(request_id=request_id, correlation_id=correlation_id):
                await self.app(scope, receive, send_observed)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            HTTP_REQUEST_SECONDS.labels(self.service, scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )


def _client_id(raw: bytes | None) -> str | None:
    """A caller's request or correlation id, if it is a sane one (it goes into logs)."""
    if raw is None:
        return None
    value = raw.decode("latin-1").strip()
    return value if _CLIENT_ID.match(value) else None
