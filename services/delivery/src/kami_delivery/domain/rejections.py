"""Why a request is refused, in domain terms. The API maps each kind to a 4xx."""

from __future__ import annotations


class Rejection(Exception):
    """A refusal with a stable machine-readable `code` and a human message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(Rejection):
    """The thing does not exist, or is not the caller's to see (never says which)."""


class Forbidden(Rejection):
    """The caller may not do this at all (a service not entitled to an internal API)."""


class Conflict(Rejection):
    """The request clashes with the thing's current state."""


class Gone(Rejection):
    """The thing existed for the caller but is no longer available (a voided key)."""


class InvalidInput(Rejection):
    """The request's content breaks a rule."""
