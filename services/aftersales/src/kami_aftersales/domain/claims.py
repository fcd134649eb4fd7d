"""What aftersales knows about an order, and what a buyer may claim about it.

`OrderFacts` is built from ordering's, delivery's and payment's events (the
`orders` read model); the guarantee window is DESIGN §3's: from delivery
until `guarantee_ends_at`, unless the buyer confirmed arrival first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kami_events.catalogue.aftersales import IssueCategory


class OrderStage(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


# Claims about a key the buyer got: a verifier can tell whether it works.
KEY_CATEGORIES = frozenset(
    {IssueCategory.KEY_INVALID, IssueCategory.KEY_ALREADY_USED, IssueCategory.KEY_EXPIRED}
)


class ClaimRefused(Exception):
    """A claim the order does not allow; `code` is the API's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OrderFacts:
    order_id: str
    buyer_id: str
    seller_id: str
    offer_id: str
    product_id: str
    quantity: int
    unit_price: int
    stage: OrderStage
    paid_amount: int = 0
    delivered_key_ids: tuple[str, ...] = ()
    guarantee_ends_at: datetime | None = None
    arrival_confirmed: bool = False
    # Refunds ordering requested for the order so far, in fen (any reason).
    refunds_requested: int = 0
    settled: bool = False
    refund_ids: tuple[str, ...] = field(default=())

    @property
    def delivered(self) -> bool:
        return bool(self.delivered_key_ids) or self.stage in (
            OrderStage.DELIVERED,
            OrderStage.COMPLETED,
        )

    def within_guarantee(self, now: datetime) -> bool:
        """A claim now is inside the guarantee window: delivered, not yet
        completed, arrival not confirmed, the window not over."""
        return (
            self.stage is OrderStage.DELIVERED
            and not self.arrival_confirmed
            and self.guarantee_ends_at is not None
            and now < self.guarantee_ends_at
        )

    @property
    def refundable(self) -> int:
        """What may still go back to the buyer."""
        return max(0, self.paid_amount - self.refunds_requested)

    def check_claimable(self, buyer_id: str) -> None:
        if buyer_id != self.buyer_id:
            raise ClaimRefused(
                404, "order_not_found", f"There is no order {self.order_id} for you."
            )
        if self.stage in (OrderStage.PLACED, OrderStage.CANCELLED):
            raise ClaimRefused(
                409, "order_not_paid", "Only a paid order can be claimed; this one was not paid."
            )
        if self.stage is OrderStage.REFUNDED or self.refundable == 0:
            raise ClaimRefused(409, "order_refunded", "This order was already refunded.")

    def claimed_keys(self, key_ids: list[str]) -> tuple[str, ...]:
        """The keys a claim is about: those named (all the order's delivered
        keys when none are), each of which must be the order's."""
        if not key_ids:
            return self.delivered_key_ids
        strangers = [k for k in key_ids if k not in self.delivered_key_ids]
        if strangers:
            raise ClaimRefused(
                422,
                "key_not_in_order",
                f"Keys {', '.join(strangers[:5])} were not delivered with order {self.order_id}.",
            )
        return tuple(dict.fromkeys(key_ids))
