"""The priority lane of automatic deliveries.

`OrderPaid` only enqueues a `QueuedDelivery`; workers take the job with the
highest `priority` (the buyer's KYC tier grants it, via `IdentityVerified`)
and, among equals, the one paid first. When deliveries back up, higher tiers
are served first; when they do not, everyone is served at once.

A job whose inventory call fails is retried with capped exponential backoff,
a bounded number of times, then parked for an operator: an unreachable
inventory is not the buyer's key being bad, so it never fails the delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kami_delivery.domain.delivery import OrderFacts


@dataclass(frozen=True)
class QueuedDelivery:
    delivery_id: str
    order: OrderFacts
    priority: int
    enqueued_at: datetime
    # The `OrderPaid` that asked for it, for the commit's causation.
    causation_id: str
    traceparent: str | None = None
    attempts: int = 0
    # Known when it was queued, so that a worker need not read them again:
    # whether the buyer has a verified phone (a text goes out too; None: not
    # known, the worker asks), and when ordering refunds the order if nothing
    # arrived (None: no deadline).
    buyer_has_phone: bool | None = None
    delivery_deadline: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_delay: timedelta
    max_delay: timedelta

    def next_attempt(self, attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed tries, or None: give up."""
        if attempts >= self.max_attempts:
            return None
        delay: timedelta = min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0))
        return now + delay
