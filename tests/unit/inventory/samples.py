"""Catalog and ordering events as inventory receives them, for tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import uuid4

from kami_events.catalogue.aftersales import ReplacementApproved
from kami_events.catalogue.catalog import (
    DelistReason,
    OfferDelisted,
    OfferListed,
    ProductKind,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode, RefundReason, RefundSource
from kami_events.catalogue.ordering import (
    CancelReason,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderRefundRequested,
)
from kami_events.store import CommitContext, Tracking

SELLER = "seller-a"
OTHER_SELLER = "seller-b"
BUYER = "buyer-1"
PRODUCT = "product-1"
PRICE = 9_500


def offer_listed(
    offer_id: str,
    seller_id: str = SELLER,
    *,
    product_id: str = PRODUCT,
    mode: DeliveryMode = DeliveryMode.AUTO,
) -> OfferListed:
    return OfferListed(
        offer_id=offer_id,
        product_id=product_id,
        seller_id=seller_id,
        unit_price=PRICE,
        delivery_mode=mode,
        manual_delivery_sla_minutes=60 if mode is DeliveryMode.MANUAL else None,
        guarantee_window_minutes=15,
        max_quantity_per_order=10,
    )


def offer_delisted(offer_id: str, seller_id: str = SELLER) -> OfferDelisted:
    return OfferDelisted(
        offer_id=offer_id,
        product_id=PRODUCT,
        seller_id=seller_id,
        reason=DelistReason.SELLER_REQUEST,
    )


def product_published(
    product_id: str = PRODUCT, validity_days: int | None = None
) -> ProductPublished:
    return ProductPublished(
        product_id=product_id,
        category_id="games",
        name="100 点卡",
        kind=ProductKind.GAME_POINTS,
        face_value=10_000,
        validity_days=validity_days,
    )


def order_placed(
    order_id: str,
    offer_id: str,
    *,
    quantity: int = 1,
    deadline: datetime,
    seller_id: str = SELLER,
    mode: DeliveryMode = DeliveryMode.AUTO,
) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        buyer_id=BUYER,
        seller_id=seller_id,
        offer_id=offer_id,
        product_id=PRODUCT,
        quantity=quantity,
        unit_price=PRICE,
        total=PRICE * quantity,
        delivery_mode=mode,
        payment_deadline=deadline,
    )


def order_cancelled(
    order_id: str, offer_id: str, key_ids: list[str], seller_id: str = SELLER
) -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id,
        buyer_id=BUYER,
        seller_id=seller_id,
        offer_id=offer_id,
        reason=CancelReason.PAYMENT_TIMEOUT,
        release_key_ids=key_ids,
    )


def order_paid(order_id: str, offer_id: str, key_ids: list[str]) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=offer_id,
        payment_id=f"pay-{order_id}",
        product_id=PRODUCT,
        quantity=max(1, len(key_ids)),
        key_ids=key_ids,
        amount=PRICE * max(1, len(key_ids)),
        delivery_mode=DeliveryMode.AUTO,
    )


def refund_requested(
    order_id: str,
    offer_id: str,
    key_ids: list[str],
    *,
    refund_id: str = "refund-1",
    reason: RefundReason = RefundReason.DELIVERY_FAILED,
) -> OrderRefundRequested:
    return OrderRefundRequested(
        order_id=order_id,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=offer_id,
        payment_id=f"pay-{order_id}",
        refund_id=refund_id,
        amount=PRICE,
        source=RefundSource.ESCROW,
        reason=reason,
        void_key_ids=key_ids,
    )


def replacement_approved(
    ticket_id: str, order_id: str, offer_id: str, key_ids: list[str], seller_id: str = SELLER
) -> ReplacementApproved:
    return ReplacementApproved(
        ticket_id=ticket_id,
        order_id=order_id,
        buyer_id=BUYER,
        seller_id=seller_id,
        offer_id=offer_id,
        key_ids=key_ids,
        approved_by="rule-verified-faulty-key",
    )


def message(order_id: str) -> tuple[CommitContext, Tracking]:
    """The commit context and tracking key of one delivery of one message."""
    event_id = uuid4()
    return CommitContext(order_id, causation_id=str(event_id)), Tracking("inventory", event_id)


def csv_lines(start: datetime, *keys_and_days: tuple[str, int]) -> str:
    """A CSV file: each key with an expiry that many days after `start`."""
    rows = [f"{key},{(start + timedelta(days=days)).isoformat()}" for key, days in keys_and_days]
    return "\n".join(rows) + "\n"
