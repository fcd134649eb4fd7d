"""Key verification with each product's issuer (the arrival guarantee, issue 6).

An issuer (the game studio, the carrier, the video platform) can tell
whether one of its keys is still redeemable. Delivery asks, because only
delivery holds the buyer's plaintext (DESIGN §6): aftersales gets the
verdicts, never the keys.

Each product is served by the issuer adapter registered for it (or for
`*`); a product with none answers `unknown`. No real issuer is wired here:
the local platform and the tests register the *simulated* issuer, which
answers deterministically from a marker the seller's test keys carry:
`INVALID` → invalid, `USED` → already used, `VALID` → valid, anything else
→ unknown (the issuer does not know the key).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

from kami_delivery.domain.keys import CardSecret


class Verdict(StrEnum):
    VALID = "valid"
    ALREADY_USED = "already_used"
    INVALID = "invalid"
    UNKNOWN = "unknown"


class KeyIssuer(Protocol):
    async def verify(self, product_id: str, secret: CardSecret) -> Verdict: ...


class SimulatedIssuer:
    """The local stand-in for the issuers' APIs (never in production)."""

    async def verify(self, product_id: str, secret: CardSecret) -> Verdict:
        text = secret.reveal().upper()
        if "INVALID" in text:
            return Verdict.INVALID
        if "USED" in text:
            return Verdict.ALREADY_USED
        if "VALID" in text:
            return Verdict.VALID
        return Verdict.UNKNOWN


class IssuerDirectory:
    """Which issuer adapter verifies which product's keys."""

    ANY = "*"

    def __init__(self, issuers: Mapping[str, KeyIssuer] | None = None) -> None:
        self._issuers = dict(issuers or {})

    async def verify(self, product_id: str, secret: CardSecret) -> Verdict:
        issuer = self._issuers.get(product_id) or self._issuers.get(self.ANY)
        if issuer is None:
            return Verdict.UNKNOWN
        return await issuer.verify(product_id, secret)
