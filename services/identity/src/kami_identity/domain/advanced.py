"""An advanced (L2) verification request, decided by an external provider.

One request per user at a time. The tier is granted only when the provider
approves; a provider that times out leaves the request pending, and it is
tried again after a growing delay, up to `max_attempts`.

`start_attempt` moves `next_attempt_at` forward before the provider is
called, so it doubles as a lease: two workers never call the provider for the
same attempt, and a worker that dies mid-call is retried when the delay ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from kami_identity.domain.rejections import Conflict


class AdvancedStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: timedelta = timedelta(seconds=5)
    max_delay: timedelta = timedelta(minutes=5)
    max_attempts: int = 10

    def delay(self, attempt: int) -> timedelta:
        delay: timedelta = self.base_delay * 2 ** max(0, attempt - 1)
        return min(delay, self.max_delay)


class AdvancedVerification(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    user_id: str
    status: AdvancedStatus
    submitted_at: datetime
    attempts: int = 0
    next_attempt_at: datetime
    decided_at: datetime | None = None
    rejection_reason: str | None = None
    # The applicant's evidence for the provider, encrypted; dropped once decided.
    evidence_sealed: bytes | None

    @classmethod
    def submit(
        cls,
        previous: AdvancedVerification | None,
        *,
        request_id: str,
        user_id: str,
        evidence_sealed: bytes,
        now: datetime,
    ) -> AdvancedVerification:
        if previous is not None and previous.status is AdvancedStatus.PENDING:
            raise Conflict(
                "verification_pending", "An advanced verification is already in progress."
            )
        if previous is not None and previous.status is AdvancedStatus.APPROVED:
            raise Conflict("already_verified", "Advanced verification is already complete.")
        return cls(
            request_id=request_id,
            user_id=user_id,
            status=AdvancedStatus.PENDING,
            submitted_at=now,
            next_attempt_at=now,
            evidence_sealed=evidence_sealed,
        )

    def is_due(self, now: datetime) -> bool:
        return self.status is AdvancedStatus.PENDING and self.next_attempt_at <= now

    def start_attempt(self, now: datetime, retry: RetryPolicy) -> AdvancedVerification:
        attempt = self.attempts + 1
        return self.model_copy(
            update={"attempts": attempt, "next_attempt_at": now + retry.delay(attempt)}
        )

    def approve(self, now: datetime) -> AdvancedVerification:
        return self._decide(AdvancedStatus.APPROVED, now, None)

    def reject(self, reason: str, now: datetime) -> AdvancedVerification:
        return self._decide(AdvancedStatus.REJECTED, now, reason)

    def _decide(
        self, status: AdvancedStatus, now: datetime, reason: str | None
    ) -> AdvancedVerification:
        return self.model_copy(
            update={
                "status": status,
                "decided_at": now,
                "rejection_reason": reason,
                "evidence_sealed": None,
            }
        )
