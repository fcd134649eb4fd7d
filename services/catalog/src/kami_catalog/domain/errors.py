"""A command the catalog refuses, with a stable code for clients."""

from __future__ import annotations

from enum import StrEnum


class RejectionKind(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"


class Rejected(Exception):
    """The command breaks a catalog rule: `code` is machine-readable, `message`
    says why to a human. Nothing was written."""

    def __init__(self, kind: RejectionKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message

    @classmethod
    def invalid(cls, code: str, message: str) -> Rejected:
        return cls(RejectionKind.INVALID, code, message)

    @classmethod
    def not_found(cls, code: str, message: str) -> Rejected:
        return cls(RejectionKind.NOT_FOUND, code, message)

    @classmethod
    def conflict(cls, code: str, message: str) -> Rejected:
        return cls(RejectionKind.CONFLICT, code, message)

    @classmethod
    def forbidden(cls, code: str, message: str) -> Rejected:
        return cls(RejectionKind.FORBIDDEN, code, message)
