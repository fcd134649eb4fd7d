"""The external provider behind advanced (L2) verification.

A real provider (face match against the national ID photo, bank-card
four-factor check...) plugs in behind `AdvancedVerificationProvider`. The
default is `SimulatedVerificationProvider`, deterministic so that tests and
the demo choose the outcome by the ID number's 3-digit sequence code (its
digits 15-17), like a payment sandbox's test card numbers:

| sequence code | outcome |
|---|---|
| `000` | rejected (`identity_mismatch`) |
| `999` | times out on the first `timeouts_before_answer` attempts, then approves |
| anything else | approved |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Verdict(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class ProviderAnswer:
    verdict: Verdict
    reason: str | None = None


@dataclass(frozen=True)
class AdvancedCheck:
    """What the provider is asked to confirm. `repr` hides the personal data."""

    request_id: str
    attempt: int
    legal_name: str = field(repr=False)
    id_number: str = field(repr=False)
    evidence: str = field(repr=False)


class AdvancedVerificationProvider(Protocol):
    async def verify(self, check: AdvancedCheck) -> ProviderAnswer:
        """The provider's verdict; `TIMED_OUT` (or a raised `TimeoutError`)
        leaves the request pending for a retry."""


class SimulatedVerificationProvider:
    REJECT_SEQUENCE = "000"
    SLOW_SEQUENCE = "999"

    def __init__(self, *, timeouts_before_answer: int = 2) -> None:
        self.timeouts_before_answer = timeouts_before_answer

    async def verify(self, check: AdvancedCheck) -> ProviderAnswer:
        sequence = check.id_number[14:17]
        if sequence == self.REJECT_SEQUENCE:
            return ProviderAnswer(Verdict.REJECTED, "identity_mismatch")
        if sequence == self.SLOW_SEQUENCE and check.attempt <= self.timeouts_before_answer:
            return ProviderAnswer(Verdict.TIMED_OUT)
        return ProviderAnswer(Verdict.APPROVED)
