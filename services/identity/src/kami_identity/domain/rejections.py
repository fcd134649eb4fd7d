"""Why identity refuses a command: typed outcomes with a stable machine code
and a human message. The HTTP layer maps each kind to its status; nothing
here knows about HTTP.

A rejection message never contains what the caller sent: no phone number,
ID number, code or password is echoed back (or into a log).
"""

from __future__ import annotations


class Rejected(Exception):
    """A business rule refused the command. Subclasses say what kind of refusal."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidInput(Rejected):
    """The input breaks a rule of its own (a bad phone, ID number, password)."""


class ChallengeFailed(Rejected):
    """A one-time code was wrong, expired, used up or never requested."""


class Unauthenticated(Rejected):
    """Credentials (password, refresh token, phone proof) did not prove who the caller is."""


class Forbidden(Rejected):
    """The caller is known but may not do this (e.g. a suspended account)."""


class NotFound(Rejected):
    """No such user."""


class Conflict(Rejected):
    """The command conflicts with the current state (already verified, phone taken...)."""


class TooManyRequests(Rejected):
    """A rate limit or a lockout; retry after `retry_after_seconds`."""

    def __init__(self, code: str, message: str, retry_after_seconds: int) -> None:
        super().__init__(code, message)
        self.retry_after_seconds = max(1, retry_after_seconds)
