"""What payment knows of orders, buyers and sellers: read models built from
ordering's and identity's events, and the rules payment applies with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum

from kami_events.catalogue.identity import KycTier
from kami_events.catalogue.ordering import DiscountFunder
from kami_payment.domain.refusals import RefusalKind, Refused

# China has kept UTC+8 without daylight saving since 1991; a fixed offset
# needs no tz database on the host.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def payment_day(moment: datetime) -> date:
    """The calendar day (Asia/Shanghai) a payment counts against."""
    return moment.astimezone(SHANGHAI).date()


class OrderStatus(StrEnum):
    """The order's saga state as payment last heard it, of those that decide
    whether it can be paid (paid, delivered and completed are no longer
    written: payment's own payment says it was paid)."""

    PLACED = "placed"
    RESERVED = "reserved"
    PAID = "paid"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUND_REQUESTED = "refund_requested"

    @property
    def rank(self) -> int:
        """Later states outrank earlier ones; a replayed older event never wins."""
        return _RANKS[self]


_RANKS = {
    OrderStatus.PLACED: 0,
    OrderStatus.RESERVED: 1,
    OrderStatus.PAID: 2,
    OrderStatus.DELIVERED: 3,
    OrderStatus.COMPLETED: 4,
    OrderStatus.CANCELLED: 5,
    OrderStatus.REFUND_REQUESTED: 5,
}


@dataclass(frozen=True)
class OrderView:
    order_id: str
    buyer_id: str
    seller_id: str
    total: int
    status: OrderStatus
    payment_deadline: datetime
    reservation_expires_at: datetime | None = None
    # The trace of the order's saga: paying it joins that trace.
    traceparent: str | None = None
    # A coupon's discount, already off `total`, and who funds it.
    discount: int = 0
    discount_funded_by: DiscountFunder | None = None

    def check_payable_by(self, buyer_id: str, now: datetime) -> None:
        """Payment's own pre-check before any money moves: the buyer's order,
        awaiting payment, before its deadline. Raises `Refused` otherwise."""
        if buyer_id != self.buyer_id:
            # The same answer as for an unknown order: ids of others' orders leak nothing.
            raise order_not_found(self.order_id)
        if self.status is OrderStatus.PLACED:
            raise Refused(
                "order_not_reserved",
                f"Order {self.order_id} is not awaiting payment yet (its keys are being "
                "reserved); retry in a moment.",
            )
        if self.status is not OrderStatus.RESERVED:
            raise Refused(
                "order_not_payable",
                f"Order {self.order_id} is {self.status.value} and can no longer be paid.",
            )
        if now >= self.payment_deadline:
            raise Refused(
                "payment_deadline_passed",
                f"The payment deadline of order {self.order_id} passed at "
                f"{self.payment_deadline.isoformat()}.",
            )


def order_not_found(order_id: str) -> Refused:
    return Refused(
        "order_not_found",
        f"No order {order_id} of yours awaits payment (a just-placed order takes a "
        "moment to reach payment; retry shortly).",
        RefusalKind.NOT_FOUND,
    )


@dataclass(frozen=True)
class BuyerStanding:
    """A buyer's KYC tier and daily limit (from `IdentityVerified`) and any
    suspension (from `UserSuspended`)."""

    buyer_id: str
    tier: KycTier | None
    daily_payment_limit: int
    suspended: bool = False
    suspended_until: datetime | None = None

    def is_suspended(self, now: datetime) -> bool:
        return self.suspended and (self.suspended_until is None or now < self.suspended_until)


@dataclass(frozen=True)
class SellerAccount:
    """A seller approved by identity (`SellerApproved`): it may keep a deposit."""

    seller_id: str
    shop_name: str
    approved_at: datetime
    # What identity approved the seller to sell (`SellerApproved.category`):
    # its deposit minimum depends on it. None: the default minimum.
    category: str | None = None


@dataclass(frozen=True)
class DepositMinimums:
    """The deposit each seller must keep, by the category the operator approved
    it for. Why the approval's category and not, say, the catalog category a
    seller lists most in: the minimum is a risk decision the operator takes
    when approving a seller, and one a seller could otherwise lower by what it
    chooses to list; it is also known to payment by event, before the first
    top-up, with no read of catalog's offers."""

    default: int
    by_category: Mapping[str, int] = field(default_factory=dict)

    def for_category(self, category: str | None) -> int:
        if category is None:
            return self.default
        return self.by_category.get(category, self.default)
