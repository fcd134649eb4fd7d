"""What every response and every form submission goes through.

- Headers: a Content-Security-Policy of 'self' only (the pages load their
  scripts and styles from /static; there is no inline script or style, so
  an injected one does not run), no MIME sniffing, no framing, no referrer
  to other sites.
- CSRF: every POST carries the session's token (the form's `csrf_token`
  field, or htmx's `X-CSRF-Token` header) and is refused with 403 unless it
  matches the one sealed in the session cookie. The cookie is SameSite=Lax
  as well; the token covers the browsers and the cases Lax does not.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CsrfRefused(Exception):
    pass


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware), so server-sent events stream through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cache-Control", "no-cache")
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def submitted_csrf_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached: the route reads the same form
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def csrf_matches(expected: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(expected.encode(), submitted.encode())
