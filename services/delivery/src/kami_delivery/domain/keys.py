"""Card-key secrets and what the domain decides about keys.

A `CardSecret` holds a key's plaintext in memory only: its `repr` and `str`
are masked, so a secret that ends up in a log line, an exception or a debug
dump shows as `CardSecret(***)`. Only `reveal()` gives the text, and only the
vault's sealing and the owner's reveal/export call it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from kami_events.catalogue.delivery import DeliveryFailure

MAX_SECRET_LENGTH: Final = 512


class CardSecret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value or not value.strip():
            raise ValueError("a card key's secret is not empty")
        if len(value) > MAX_SECRET_LENGTH:
            raise ValueError(f"a card key's secret has at most {MAX_SECRET_LENGTH} characters")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        return mask_secret(self._value)

    def __repr__(self) -> str:
        return "CardSecret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CardSecret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("CardSecret", self._value))


def mask_secret(secret: str) -> str:
    """What the vault lists instead of the secret: its length in bullets, and
    the last four characters only when the key is long enough (12+) that they
    give no useful head start."""
    visible = 4 if len(secret) >= 12 else 0
    hidden = min(len(secret) - visible, 16)
    return "•" * hidden + (secret[-visible:] if visible else "")


# What a buyer may add or leave out when typing a key back: case, spaces, dashes.
_SEPARATORS = re.compile(r"[\s\-]+")
_LOOSE_GAP = r"[\s\-]*"


def redact_secrets(text: str, secrets: Mapping[str, CardSecret]) -> tuple[str, int]:
    """`text` with each of `secrets` (by key id) in it replaced by
    `[card key <key id>]`, and how many were. A secret is found whatever its
    case and with spaces or dashes added or left out, as a buyer pastes or
    retypes it into a complaint; longer secrets first, so one that contains
    another is replaced whole."""
    found = 0
    ordered = sorted(secrets.items(), key=lambda item: -len(item[1].reveal()))
    for key_id, secret in ordered:
        core = _SEPARATORS.sub("", secret.reveal())
        if not core:
            continue
        pattern = _LOOSE_GAP.join(re.escape(char) for char in core)
        text, n = re.subn(pattern, f"[card key {key_id}]", text, flags=re.IGNORECASE)
        found += n
    return text, found


class UnavailableStatus(StrEnum):
    """Why inventory would not hand over a key for an order."""

    BLOCKED = "blocked"
    VOIDED = "voided"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


def failure_for(unavailable: Mapping[str, UnavailableStatus]) -> tuple[DeliveryFailure, str]:
    """The `DeliveryFailed` reason and an operator's detail for keys inventory
    refused. A blocked key (taken off sale: near expiry, reported invalid) is
    `key_blocked`; a voided, expired or unknown one cannot work: `key_invalid`.
    When both occur, `key_blocked` wins: the seller's pool needs attention."""
    if not unavailable:
        raise ValueError("no unavailable keys: nothing failed")
    statuses = set(unavailable.values())
    reason = (
        DeliveryFailure.KEY_BLOCKED
        if UnavailableStatus.BLOCKED in statuses
        else DeliveryFailure.KEY_INVALID
    )
    counts = ", ".join(
        f"{sum(1 for s in unavailable.values() if s is status)} {status.value}"
        for status in UnavailableStatus
        if status in statuses
    )
    return reason, f"inventory refused {len(unavailable)} key(s): {counts}"
