"""Every error a Kami API returns is a 4xx (or 503) with a machine-readable
code and a human message, never a bare 500 (DESIGN §6):

    {"error": {"code": "otp_expired", "message": "The code has expired; request a new one."}}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """The body of every error response (documented in each OpenAPI schema)."""

    error: ErrorDetail


class ApiError(Exception):
    """Raise from a route to answer with `status` and a stable `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(
    code: str, message: str, fields: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return ErrorResponse(error=ErrorDetail(code=code, message=message, fields=fields)).model_dump(
        exclude_none=True
    )


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


_UNREADABLE: dict[type[BaseException], str] = {
    RecursionError: "The JSON body is nested too deeply to read.",
    UnicodeDecodeError: "The body is not valid UTF-8.",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "location": ".".join(str(part) for part in error["loc"]),
                "message": error["msg"],
            }
            for error in exc.errors()
        ]
        summary = "; ".join(f"{f['location']}: {f['message']}" for f in fields[:3])
        return JSONResponse(
            error_body("invalid_request", f"The request is invalid: {summary}", fields),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        # FastAPI says only "There was an error parsing the body"; its cause says why.
        cause = exc.__cause__
        unreadable = _UNREADABLE.get(type(cause)) if cause and exc.status_code == 400 else None
        if unreadable:
            code, message = "unreadable_body", unreadable
        return JSONResponse(
            error_body(code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug or an unreachable dependency: say so without leaking internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("unavailable", "The service could not complete the request; retry later."),
            status_code=503,
        )
