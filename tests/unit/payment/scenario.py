"""Ordering's and identity's events as payment receives them, built with the
fields the catalogue requires. Shared by the unit and integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kami_events.catalogue.common import DeliveryMode, RefundReason, RefundSource
from kami_events.catalogue.identity import IdentityVerified, KycTier, SellerApproved
from kami_events.catalogue.ordering import (
    CancelReason,
    CompletedBy,
    DiscountFunder,
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderPaid,
    OrderPlaced,
    OrderRefundRequested,
    OrderReserved,
)
from kami_payment.domain.payment import payment_id_for


@dataclass(frozen=True)
class Purchase:
    """One order of `total` fen by `buyer_id` from `seller_id`; with a coupon,
    `total` is what the buyer pays, `discount` less than the price."""

    order_id: str
    buyer_id: str
    seller_id: str
    total: int
    placed_at: datetime
    discount: int = 0
    discount_funded_by: DiscountFunder | None = None

    @property
    def payment_id(self) -> str:
        return payment_id_for(self.order_id)

    @property
    def deadline(self) -> datetime:
        return self.placed_at + timedelta(minutes=15)

    def _ids(self) -> dict[str, str]:
        return {
            "order_id": self.order_id,
            "buyer_id": self.buyer_id,
            "seller_id": self.seller_id,
            "offer_id": f"offer-{self.seller_id}",
        }

    def placed(self) -> OrderPlaced:
        return OrderPlaced(
            **self._ids(),
            product_id="product-1",
            quantity=1,
            unit_price=self.total + self.discount,
            total=self.total + self.discount,
            discount=self.discount,
            delivery_mode=DeliveryMode.AUTO,
            payment_deadline=self.deadline,
        )

    def reserved(self) -> OrderReserved:
        return OrderReserved(
            **self._ids(),
            key_ids=[f"key-{self.order_id}"],
            total=self.total,
            payment_deadline=self.deadline,
            reservation_expires_at=self.deadline + timedelta(minutes=5),
            discount=self.discount,
            discount_funded_by=self.discount_funded_by,
        )

    def paid(self) -> OrderPaid:
        return OrderPaid(
            **self._ids(),
            payment_id=self.payment_id,
            product_id="product-1",
            quantity=1,
            key_ids=[f"key-{self.order_id}"],
            amount=self.total,
            delivery_mode=DeliveryMode.AUTO,
        )

    def delivered(self) -> OrderDelivered:
        return OrderDelivered(
            **self._ids(),
            delivery_id=f"delivery-{self.order_id}",
            key_ids=[f"key-{self.order_id}"],
            guarantee_ends_at=self.placed_at + timedelta(hours=1),
        )

    def completed(self) -> OrderCompleted:
        return OrderCompleted(
            **self._ids(), completed_by=CompletedBy.GUARANTEE_ELAPSED, total=self.total
        )

    def cancelled(self, reason: CancelReason = CancelReason.PAYMENT_TIMEOUT) -> OrderCancelled:
        return OrderCancelled(
            **self._ids(), reason=reason, release_key_ids=[f"key-{self.order_id}"]
        )

    def refund_requested(
        self,
        refund_id: str,
        *,
        amount: int | None = None,
        source: RefundSource = RefundSource.ESCROW,
        reason: RefundReason = RefundReason.DELIVERY_FAILED,
    ) -> OrderRefundRequested:
        return OrderRefundRequested(
            **self._ids(),
            payment_id=self.payment_id,
            refund_id=refund_id,
            amount=self.total if amount is None else amount,
            source=source,
            reason=reason,
            void_key_ids=[f"key-{self.order_id}"],
        )


def verified(user_id: str, tier: KycTier, daily_limit: int) -> IdentityVerified:
    return IdentityVerified(
        user_id=user_id,
        tier=tier,
        previous_tier=None,
        daily_payment_limit=daily_limit,
        delivery_priority=0,
        aftersales_priority=0,
    )


def seller_approved(seller_id: str, category: str | None = None) -> SellerApproved:
    return SellerApproved(
        user_id=seller_id, shop_name=f"shop {seller_id}", approved_by="op-1", category=category
    )
