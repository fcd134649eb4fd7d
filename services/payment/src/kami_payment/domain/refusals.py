"""Why a command was refused, in terms the API turns into a 4xx.

A refusal changes nothing (when a refusal must also be recorded, e.g. a
payment over the daily limit, the handler saves the `PaymentFailed` first and
then raises). The domain says what kind of refusal it is; the API picks the
status code.
"""

from __future__ import annotations

from enum import StrEnum


class RefusalKind(StrEnum):
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    INVALID = "invalid"
    # Too much at once (password checks): retry after `retry_after` seconds.
    BUSY = "busy"


class Refused(Exception):
    """A command the rules do not allow: `code` is stable, `message` is for people."""

    def __init__(
        self,
        code: str,
        message: str,
        kind: RefusalKind = RefusalKind.CONFLICT,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind
        self.retry_after = retry_after
