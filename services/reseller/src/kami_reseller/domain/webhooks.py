"""Webhook delivery policy: what is sent, and when a failed attempt is retried.

Each webhook is one document (`webhook_id`, its event and body) with its
attempts; a failed attempt (no answer, or not 2xx) is retried after an
exponentially growing delay, `base * 2**(attempt-1)`, capped, until
`max_attempts`; then the webhook is `failed` until someone re-sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class WebhookEventType(StrEnum):
    ORDER_DELIVERED = "order.delivered"
    ORDER_REFUNDED = "order.refunded"
    ORDER_CANCELLED = "order.cancelled"


class WebhookStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: timedelta = timedelta(seconds=2)
    max_delay: timedelta = timedelta(minutes=30)
    max_attempts: int = 8

    def delay_after(self, attempts_made: int) -> timedelta:
        """How long to wait after the `attempts_made`-th failed attempt."""
        factor = 1 << max(attempts_made - 1, 0)
        return min(self.base_delay * factor, self.max_delay)

    def next_attempt_at(self, attempts_made: int, failed_at: datetime) -> datetime | None:
        """None: no more automatic attempts."""
        if attempts_made >= self.max_attempts:
            return None
        return failed_at + self.delay_after(attempts_made)


def succeeded(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300
