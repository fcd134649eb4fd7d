"""Ordering's and identity's events as delivery receives them, for the tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.identity import IdentityVerified, KycTier
from kami_events.catalogue.ordering import OrderPaid, OrderPlaced
from kami_events.envelope import Envelope
from kami_events.event import Event

E = TypeVar("E", bound=Event)

SELLER = "seller-1"
OFFER = "offer-1"
PRODUCT = "product-1"


def placed(
    order_id: str,
    buyer_id: str,
    *,
    mode: DeliveryMode = DeliveryMode.AUTO,
    quantity: int = 2,
    seller_id: str = SELLER,
    offer_id: str = OFFER,
    buyer_fields: dict[str, str] | None = None,
    now: datetime,
) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        buyer_id=buyer_id,
        seller_id=seller_id,
        offer_id=offer_id,
        product_id=PRODUCT,
        quantity=quantity,
        unit_price=1_000,
        total=1_000 * quantity,
        delivery_mode=mode,
        payment_deadline=now + timedelta(minutes=15),
        buyer_fields=buyer_fields or {},
    )


def paid(order: OrderPlaced, key_ids: list[str]) -> OrderPaid:
    return OrderPaid(
        order_id=order.order_id,
        buyer_id=order.buyer_id,
        seller_id=order.seller_id,
        offer_id=order.offer_id,
        payment_id=f"pay-{order.order_id}",
        product_id=order.product_id,
        quantity=order.quantity,
        key_ids=key_ids,
        amount=order.total,
        delivery_mode=order.delivery_mode,
    )


def verified(user_id: str, tier: KycTier, priority: int) -> IdentityVerified:
    return IdentityVerified(
        user_id=user_id,
        tier=tier,
        previous_tier=None,
        daily_payment_limit=100_000,
        delivery_priority=priority,
        aftersales_priority=priority,
    )


def envelope(
    event: E, *, at: datetime, producer: str = "ordering", version: int = 1, **extra: Any
) -> Envelope[E]:
    aggregate_id = event.aggregate_id  # type: ignore[attr-defined]
    return Envelope.wrap(
        event,
        producer=producer,
        aggregate_id=aggregate_id,
        aggregate_version=version,
        correlation_id=aggregate_id,
        occurred_at=at,
        **extra,
    )
