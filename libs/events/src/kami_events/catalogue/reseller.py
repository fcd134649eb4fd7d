"""Events of the reseller service (分站/代理): approved resellers, their
credentials and markups, and the orders they place for their customers.

Two aggregates, two topics:

- `reseller.reseller` (`kami.reseller.reseller.v1`): one approved reseller
  (aggregate id = reseller id; every event names the identity user behind it).
- `reseller.order` (`kami.reseller.order.v1`): one order a reseller placed
  (aggregate id = the reseller order id, which is also the ordering order id).

A credential's secret never travels in an event: only its key id does.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from kami_events.catalogue.common import AggregateEvent, Id, Quantity, UtcDatetime
from kami_events.money import CNY, Amount, Currency, PositiveAmount

BasisPoints = Annotated[int, Field(ge=0, le=100_000, strict=True)]
"""A markup in 1/10000 of the offer price (1500 = +15%), at most +1000%."""

WebhookUrl = Annotated[str, Field(min_length=8, max_length=500, pattern=r"^https?://")]


class ResellerEvent(AggregateEvent):
    """One reseller (aggregate `reseller.reseller`, id = reseller id). Main
    consumers: payment (the reseller's prepaid wallet), BI."""

    abstract = True
    aggregate_type: ClassVar[str] = "reseller.reseller"
    aggregate_id_field: ClassVar[str] = "reseller_id"

    reseller_id: Id


class ResellerApproved(ResellerEvent):
    """An operator approved identity user `user_id` as a reseller. Consumed by
    payment (opens the reseller's prepaid wallet), BI."""

    user_id: Id
    approved_by: Id
    default_markup_bp: BasisPoints = Field(
        description="The markup on every resellable offer without its own markup."
    )


class ResellerCredentialIssued(ResellerEvent):
    """A new API credential (key id and secret) was issued to the reseller; the
    secret was shown once and is never in an event. Earlier credentials stay
    valid until revoked. Consumed by BI and security audit."""

    key_id: Id


class ResellerCredentialRevoked(ResellerEvent):
    """An operator revoked the credential `key_id`: requests it signs are refused from now on.
    Consumed by BI and security audit."""

    key_id: Id
    revoked_by: Id


class ResellerMarkupSet(ResellerEvent):
    """The reseller set its markup: on one offer (`offer_id`), or its default
    (`offer_id` null). Consumed by BI (reseller pricing reports)."""

    offer_id: Id | None = None
    markup_bp: BasisPoints


class ResellerWebhookSet(ResellerEvent):
    """The URL the reseller wants its signed webhooks sent to (null: none).
    Consumed by BI."""

    url: WebhookUrl | None = None


class ResellerOrderState(StrEnum):
    REQUESTED = "requested"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class ResellerOrderEvent(AggregateEvent):
    """One order a reseller placed for a customer (aggregate `reseller.order`,
    id = order id, the same id ordering gives the order). Main consumers:
    ordering (places the order), payment (captures from the reseller wallet)."""

    abstract = True
    aggregate_type: ClassVar[str] = "reseller.order"
    aggregate_id_field: ClassVar[str] = "order_id"

    order_id: Id
    reseller_id: Id


class ResellerOrderRequested(ResellerOrderEvent):
    """The reseller asked for `quantity` keys of `offer_id` for its customer.
    `unit_price` is the offer's price as the reseller service last saw it;
    `reseller_unit_price` what the reseller pays per key (offer price plus its
    markup). Consumed by ordering (places the order for `user_id`, the
    reseller's identity user) and payment (captures `reseller_total` from the
    reseller wallet: `total` to escrow, `margin` to the reseller's margin account)."""

    user_id: Id
    offer_id: Id
    quantity: Quantity
    unit_price: PositiveAmount
    reseller_unit_price: PositiveAmount
    total: PositiveAmount
    reseller_total: PositiveAmount
    margin: Amount = Field(description="`reseller_total - total`.")
    currency: Currency = CNY
    customer_ref: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="The reseller's own reference for its customer's order."
    )


class ResellerOrderDelivered(ResellerOrderEvent):
    """Ordering delivered the order's keys; the reseller may fetch them.
    Consumed by BI (reseller sales)."""

    key_ids: Annotated[list[Id], Field(max_length=1000)]
    delivered_at: UtcDatetime


class ResellerOrderClosed(ResellerOrderEvent):
    """The order ended without keys for the reseller to keep: cancelled (no
    money kept) or refunded (money back to the reseller wallet). Consumed by BI."""

    state: ResellerOrderState
    reason: Annotated[str, Field(max_length=200)] | None = None
    refunded_amount: Amount = 0
