"""The web service's app: pages from `routes/` (one router per area: shop,
account, orders, tickets; the seller center and the operator console add
theirs), static files (our CSS and script, htmx and its SSE extension,
vendored), security headers, CSRF, and errors rendered as pages.

It keeps no data: every page is built from the services' public APIs,
called with the visitor's token from the sealed session cookie.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kami_web.observability import RequestObservation
from kami_webfront.clients import BackendError, Backends
from kami_webfront.i18n import translator
from kami_webfront.pages import TEMPLATES, LoginRequired, checked_page, current_page, login_path
from kami_webfront.routes import ROUTERS
from kami_webfront.security import CsrfRefused, SecurityHeaders
from kami_webfront.session import SessionSealer
from kami_webfront.settings import WebSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(
    settings: WebSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """`transport`: how calls reach the services (tests answer them in-process)."""
    settings = settings or WebSettings()
    key = settings.session_key_bytes()
    if key is None:
        log.warning("KAMI_WEB_SESSION_KEY is not set: sessions end when this process stops")
        key = secrets.token_bytes(32)
    backends = Backends(settings, transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await backends.close()

    app = FastAPI(
        title="Kami web",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Every route, whatever router it is on, has its POSTs' CSRF token checked.
        dependencies=[Depends(checked_page)],
    )
    app.state.settings = settings
    app.state.backends = backends
    app.state.sealer = SessionSealer(key, settings.web_session_max_age_seconds)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestObservation, service=settings.service_name)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, object]:
        # Ready as soon as it serves: a service that is down shows as an
        # error on the pages that need it, not as this process being unready.
        return {"ready": True, "checks": {}}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _: CsrfRefused) -> Response:
        return await _error_page(request, 403, "error.csrf")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("HX-Request"):
            return HTMLResponse("", headers={"HX-Redirect": login_path(exc.next_path)})
        return RedirectResponse(login_path(exc.next_path), status_code=303)

    @app.exception_handler(BackendError)
    async def backend_error(request: Request, exc: BackendError) -> Response:
        if exc.status == 401:
            return RedirectResponse(login_path(request.url.path), status_code=303)
        status = exc.status if exc.status in (403, 404, 409, 422, 429) else 502
        log.info("backend refused %s %s: %s", request.method, request.url.path, exc)
        return await _error_page(request, status, "error.backend", detail=exc.message)

    return app


async def _error_page(
    request: Request, status: int, message: str, detail: str | None = None
) -> Response:
    try:
        page = await current_page(request)
    except BackendError:
        settings: WebSettings = request.app.state.settings
        t = translator(settings.web_default_language)
        return HTMLResponse(t(message), status_code=status)
    return page.render("error.html", status_code=status, message=message, detail=detail)


__all__ = ["TEMPLATES", "create_app"]
