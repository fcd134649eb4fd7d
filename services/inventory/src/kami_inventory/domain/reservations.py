"""Reserving keys for an order: the deadline, the expiry margin, and the
decision that answers an `OrderPlaced` once and for all.

The decision is recorded before it is announced, so a redelivered
`OrderPlaced` (after a crash, a rebalance or a replay) announces the same
outcome instead of reserving again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kami_events.catalogue.common import RefundReason
from kami_events.catalogue.inventory import (
    KeyReservationFailed,
    KeyReserved,
    PoolEvent,
    ReservationFailure,
    VoidReason,
)
from kami_inventory.domain.instants import to_millis


@dataclass(frozen=True)
class ReservationPolicy:
    # Held past the payment deadline, so a last-second payment finds its keys.
    grace: timedelta
    # A key must stay valid this long after the reservation ends.
    expiry_margin: timedelta

    def held_until(self, payment_deadline: datetime) -> datetime:
        return to_millis(payment_deadline + self.grace)

    def sellable_after(self, now: datetime, held_until: datetime) -> datetime:
        """Keys expiring at or before this instant are never reserved."""
        return max(now, held_until) + self.expiry_margin


@dataclass(frozen=True)
class Reservation:
    """The answer to one order: keys held until `expires_at`, or a failure."""

    order_id: str
    offer_id: str
    requested: int
    key_ids: tuple[str, ...] = ()
    expires_at: datetime | None = None
    failure: ReservationFailure | None = None
    available: int = 0

    @classmethod
    def held(
        cls, order_id: str, offer_id: str, key_ids: tuple[str, ...], expires_at: datetime
    ) -> Reservation:
        return cls(order_id, offer_id, len(key_ids), key_ids, expires_at)

    @classmethod
    def failed(
        cls,
        order_id: str,
        offer_id: str,
        requested: int,
        failure: ReservationFailure,
        available: int,
    ) -> Reservation:
        return cls(order_id, offer_id, requested, failure=failure, available=available)

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    def event(self) -> PoolEvent:
        if self.failure is not None:
            return KeyReservationFailed(
                offer_id=self.offer_id,
                order_id=self.order_id,
                reason=self.failure,
                requested=self.requested,
                available=self.available,
            )
        assert self.expires_at is not None
        return KeyReserved(
            offer_id=self.offer_id,
            order_id=self.order_id,
            key_ids=list(self.key_ids),
            expires_at=self.expires_at,
        )


_VOID_REASONS = {
    RefundReason.CHARGEBACK: VoidReason.CHARGEBACK,
    RefundReason.CLAIM_UPHELD: VoidReason.CLAIM_UPHELD,
    RefundReason.DELIVERY_FAILED: VoidReason.DELIVERY_FAILED,
    # Refunds before delivery: the keys never reached the buyer either.
    RefundReason.LATE_PAYMENT: VoidReason.DELIVERY_FAILED,
    RefundReason.VERIFICATION_FAILED: VoidReason.DELIVERY_FAILED,
}


def void_reason_for(refund: RefundReason) -> VoidReason:
    return _VOID_REASONS[refund]
