"""Mainland China mobile numbers, the login identifier."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kami_identity.domain.rejections import InvalidInput

_MOBILE = re.compile(r"1[3-9]\d{9}")


@dataclass(frozen=True)
class Phone:
    """An 11-digit mainland mobile number (`1[3-9]` then nine digits)."""

    number: str

    @classmethod
    def parse(cls, raw: str) -> Phone:
        """Accepts an optional `+86`/`86` prefix, spaces and dashes."""
        cleaned = re.sub(r"[\s-]", "", raw)
        for prefix in ("+86", "0086"):
            cleaned = cleaned.removeprefix(prefix)
        if len(cleaned) == 13 and cleaned.startswith("86"):
            cleaned = cleaned[2:]
        if not _MOBILE.fullmatch(cleaned):
            raise InvalidInput(
                "invalid_phone", "The phone number must be an 11-digit mainland mobile number."
            )
        return cls(cleaned)

    @property
    def masked(self) -> str:
        """`13812341234` -> `138****1234`: what events and profiles show."""
        return f"{self.number[:3]}****{self.number[-4:]}"

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"Phone({self.masked})"
