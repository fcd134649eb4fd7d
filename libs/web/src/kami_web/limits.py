"""The largest request body a Kami API reads (DESIGN §6: bad input is a clear
4xx). Without it a client could make a service buffer any number of bytes
before validation said a word.

A body declared larger than the limit (`Content-Length`) is refused before
the route runs; one streamed without a length is cut off as soon as it
passes the limit. Both answer 413 in Kami's error body.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kami_web.errors import error_body

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def _message(limit: int) -> str:
    return f"The request body is larger than {limit} bytes, the most this API reads."


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; the error
    handlers turn it into a 413 like any HTTPException."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_message(limit))


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(
                error_body("payload_too_large", _message(self.limit)), status_code=413
            )
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, receive_within_limit, send)


class NulInUrlRefused:
    """Answers 422 to a URL whose path or query holds a NUL character.

    No Kami id or query value contains one, and PostgreSQL (FerretDB's
    backend) cannot store or even compare a string with it: a route that
    took it to the database would fail with a 5xx instead of a clear 4xx."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope["query_string"])
        ):
            response = JSONResponse(
                error_body("invalid_url", "The URL holds a NUL character (%00)."),
                status_code=422,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
