"""What a route works with: the visitor's session and language, the
backends, and rendering a template into a response that carries the
(re-sealed) session cookie.

Routes take `page: PageDep`; a POST's CSRF token is checked before the
route runs (`checked_page`, installed on every router by `app.py`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from kami_webfront import formatting
from kami_webfront.clients import BackendError, Backends
from kami_webfront.i18n import LANGUAGE_COOKIE, Translate, choose_language, translator
from kami_webfront.security import UNSAFE_METHODS, CsrfRefused, csrf_matches, submitted_csrf_token
from kami_webfront.session import COOKIE_NAME, Session, SessionSealer
from kami_webfront.settings import WebSettings

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.globals.update(formatting.GLOBALS)
TEMPLATES.env.filters.update(formatting.FILTERS)
# Refresh the access token when it has less than this left.
_REFRESH_MARGIN_SECONDS = 60


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


@dataclass
class Page:
    request: Request
    settings: WebSettings
    backends: Backends
    sealer: SessionSealer
    session: Session
    language: str
    t: Translate
    # Whether the session changed and the cookie must be written again.
    dirty: bool = False
    flashes: list[str] = field(default_factory=list)

    @property
    def token(self) -> str | None:
        return self.session.access_token

    def require_login(self) -> str:
        if self.session.access_token is None:
            path = self.request.url.path
            if self.request.url.query:
                path += "?" + self.request.url.query
            raise LoginRequired(path)
        return self.session.access_token

    def set_session(self, session: Session) -> None:
        self.session = session
        self.dirty = True

    def context(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "request": self.request,
            "t": self.t,
            "lang": self.language,
            "session": self.session,
            "csrf_token": self.session.csrf,
            "flashes": self.flashes,
            **values,
        }

    def render(
        self, template: str, status_code: int = 200, *, no_store: bool = False, **values: Any
    ) -> Response:
        response = TEMPLATES.TemplateResponse(
            self.request, template, self.context(values), status_code=status_code
        )
        if no_store:
            response.headers["Cache-Control"] = "no-store"
        return self.finish(response)

    def redirect(self, path: str) -> Response:
        # htmx follows HX-Redirect itself; a plain form follows the 303.
        if self.request.headers.get("HX-Request"):
            response: Response = HTMLResponse("", headers={"HX-Redirect": path})
        else:
            response = RedirectResponse(path, status_code=303)
        return self.finish(response)

    def finish(self, response: Response) -> Response:
        if self.dirty:
            write_session_cookie(response, self.request, self.settings, self.sealer, self.session)
        return response


def is_secure(request: Request, settings: WebSettings) -> bool:
    if settings.web_cookie_secure is not None:
        return settings.web_cookie_secure
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"


def write_session_cookie(
    response: Response,
    request: Request,
    settings: WebSettings,
    sealer: SessionSealer,
    session: Session,
) -> None:
    response.set_cookie(
        COOKIE_NAME,
        sealer.seal(session),
        max_age=settings.web_session_max_age_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_secure(request, settings),
    )


async def _refreshed(page: Page) -> None:
    session = page.session
    if session.refresh_token is None or session.access_expires_at is None:
        return
    if session.access_expires_at - time.time() > _REFRESH_MARGIN_SECONDS:
        return
    try:
        tokens = await page.backends.post(
            "identity", "/auth/refresh", json={"refresh_token": session.refresh_token}
        )
    except BackendError:
        page.set_session(Session())  # the login is over: log in again
        return
    page.set_session(
        session.refreshed(tokens["access_token"], tokens["refresh_token"], tokens["expires_in"])
    )


async def current_page(request: Request) -> Page:
    state = request.app.state
    settings: WebSettings = state.settings
    sealer: SessionSealer = state.sealer
    opened = sealer.open(request.cookies.get(COOKIE_NAME))
    language = choose_language(request.cookies.get(LANGUAGE_COOKIE), settings.web_default_language)
    page = Page(
        request=request,
        settings=settings,
        backends=state.backends,
        sealer=sealer,
        session=opened or Session(),
        language=language,
        t=translator(language, settings.web_default_language),
        dirty=opened is None,
    )
    await _refreshed(page)
    return page


async def checked_page(request: Request) -> Page:
    """The page, after a POST's CSRF token was found to match the session's."""
    page = await current_page(request)
    if request.method in UNSAFE_METHODS and not csrf_matches(
        page.session.csrf, await submitted_csrf_token(request)
    ):
        raise CsrfRefused
    return page


PageDep = Annotated[Page, Depends(checked_page)]


def login_path(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="/")
