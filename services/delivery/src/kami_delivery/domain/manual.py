"""Manual delivery: the seller hands over the keys within the offer's SLA.

On `OrderPaid` for a manual offer, delivery opens a `ManualTask` with the
buyer's account-bound fields and a deadline (`OrderPaid.delivery_deadline`,
or payment time + the offer's SLA).
The seller submits the keys before it; after it, the SLA poller fails the
delivery (`DeliveryFailed{manual_sla_expired}`) and the saga refunds. Who
wins a race at the deadline is decided by the delivery's stream: the first
outcome appended wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kami_delivery.domain.delivery import OrderFacts
from kami_delivery.domain.keys import MAX_SECRET_LENGTH, CardSecret
from kami_delivery.domain.rejections import Conflict, InvalidInput, NotFound


class TaskStatus(StrEnum):
    OPEN = "open"
    DELIVERED = "delivered"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ManualTask:
    delivery_id: str
    order: OrderFacts
    paid_at: datetime
    deadline: datetime
    status: TaskStatus = TaskStatus.OPEN

    @classmethod
    def open(
        cls,
        order: OrderFacts,
        *,
        paid_at: datetime,
        deadline: datetime | None = None,
        sla: timedelta | None = None,
    ) -> ManualTask:
        """The task of a paid manual order. Its deadline is the one ordering set
        in `OrderPaid` (ordering refunds when it passes, so delivery keeps the
        same one), else payment time plus the offer's (or the default) SLA."""
        if deadline is None:
            if sla is None or sla <= timedelta(0):
                raise ValueError("a manual delivery needs a deadline or a positive SLA")
            deadline = paid_at + sla
        if deadline <= paid_at:
            raise ValueError("a manual delivery's deadline comes after its payment")
        return cls(order.delivery_id, order, paid_at, deadline)

    def is_overdue(self, now: datetime) -> bool:
        return self.status is TaskStatus.OPEN and now >= self.deadline

    def accept_keys(self, seller_id: str, keys: Sequence[str], now: datetime) -> list[CardSecret]:
        """Check a seller's submission; returns the keys as secrets."""
        if seller_id != self.order.seller_id:
            raise NotFound("delivery_not_found", "No manual delivery with this id is yours.")
        if self.status is TaskStatus.DELIVERED:
            raise Conflict("already_delivered", "This order's keys were already submitted.")
        if self.status is TaskStatus.EXPIRED or now >= self.deadline:
            raise Conflict(
                "sla_expired",
                f"The delivery deadline ({self.deadline.isoformat()}) has passed; "
                "the order is refunded.",
            )
        if len(keys) != self.order.quantity:
            raise InvalidInput(
                "wrong_key_count",
                f"This order needs exactly {self.order.quantity} key(s), got {len(keys)}.",
            )
        secrets: list[CardSecret] = []
        for position, key in enumerate(keys, start=1):
            try:
                secrets.append(CardSecret(key.strip()))
            except ValueError:
                raise InvalidInput(
                    "invalid_key",
                    f"Key {position} must be 1 to {MAX_SECRET_LENGTH} non-blank characters.",
                ) from None
        if len(set(secrets)) != len(secrets):
            raise InvalidInput("duplicate_key", "The same key was submitted twice.")
        return secrets
