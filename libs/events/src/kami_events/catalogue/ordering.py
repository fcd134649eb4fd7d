"""Events of the ordering service: orders and the purchase saga (DESIGN §3).

Topic `kami.ordering.order.v1`, one stream per order (aggregate id = order
id, which is also the `correlation_id` of everything in the purchase). The
order's stream is the saga's state: every transition is one of these events
(`PLACED → RESERVED → PAID → DELIVERED → COMPLETED`, or `CANCELLED` /
`REFUNDED`). Besides the core catalogue of DESIGN §2, `OrderReserved`,
`OrderDelivered` and `OrderRefunded` record the saga states that have no core
event of their own.
Main consumers: inventory (release or sell keys), payment (what may be paid,
refunds, settlement), delivery (what to deliver), aftersales, catalog (sales).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kami_events.catalogue.common import (
    AggregateEvent,
    BuyerFieldName,
    DeliveryMode,
    Id,
    Quantity,
    Reason,
    RefundReason,
    RefundSource,
    UtcDatetime,
)
from kami_events.money import CNY, Currency, Fen, PositiveFen

BuyerFieldValue = Annotated[str, Field(min_length=1, max_length=200)]

# Keys an order holds or held. Empty for manually delivered offers without keys.
OrderKeyIds = Annotated[list[Id], Field(max_length=1000)]

# The offer's delivery terms, copied into the order when it is placed.
TermMinutes = Annotated[int, Field(ge=1, le=7 * 24 * 60, strict=True)]


class CancelReason(StrEnum):
    # Inventory could not reserve the keys (`KeyReservationFailed`).
    OUT_OF_STOCK = "out_of_stock"
    OFFER_DELISTED = "offer_delisted"
    # Payment failed (`PaymentFailed`), e.g. declined or over the daily limit.
    PAYMENT_FAILED = "payment_failed"
    # The payment deadline passed without a confirmed payment.
    PAYMENT_TIMEOUT = "payment_timeout"
    BUYER_CANCELLED = "buyer_cancelled"
    BUYER_SUSPENDED = "buyer_suspended"


class DiscountFunder(StrEnum):
    # The seller gives the discount up out of its own price: it is paid less.
    SELLER = "seller"
    # The platform pays the discount to the seller at settlement (a promotion cost).
    PLATFORM = "platform"


class CompletedBy(StrEnum):
    # The buyer confirmed the keys arrived and work (`ArrivalConfirmed`).
    BUYER_CONFIRMED = "buyer_confirmed"
    # The guarantee window after delivery passed without a claim.
    GUARANTEE_ELAPSED = "guarantee_elapsed"


class OrderEvent(AggregateEvent):
    """An order and its purchase saga (aggregate `ordering.order`, id = order id,
    also the purchase's `correlation_id`). Main consumers: inventory, payment,
    delivery; aftersales and catalog for history."""

    abstract = True
    aggregate_type: ClassVar[str] = "ordering.order"
    aggregate_id_field: ClassVar[str] = "order_id"

    order_id: Id
    buyer_id: Id
    seller_id: Id
    offer_id: Id


class OrderPlaced(OrderEvent):
    """A buyer placed an order (idempotently, by the client's idempotency key) at
    the offer's current price; the saga starts. Consumed by inventory (reserve
    `quantity` keys until `payment_deadline`), payment (the amount to expect) and
    delivery (account-bound details for the delivery)."""

    product_id: Id
    quantity: Quantity
    unit_price: PositiveFen
    total: PositiveFen = Field(description="unit_price × quantity, in fen.")
    currency: Currency = CNY
    delivery_mode: DeliveryMode
    payment_deadline: UtcDatetime
    buyer_fields: dict[BuyerFieldName, BuyerFieldValue] = Field(
        default_factory=dict,
        max_length=10,
        description="The values the product's required buyer fields ask for (account-bound).",
    )
    guarantee_window_minutes: TermMinutes | None = Field(
        default=None,
        description="The offer's guarantee window when the order was placed: after delivery, "
        "how long the buyer may claim a faulty key.",
    )
    manual_delivery_sla_minutes: TermMinutes | None = Field(
        default=None,
        description="For a manual offer: how long the seller has to deliver once the order is "
        "paid, as the offer said when the order was placed.",
    )
    tier_min_quantity: Quantity | None = Field(
        default=None,
        description="The quantity tier `unit_price` came from (its `min_quantity`), if any.",
    )
    flash_sale_id: Id | None = Field(
        default=None, description="The flash sale `unit_price` came from, if any."
    )
    coupon_id: Id | None = Field(default=None, description="The coupon (its code) the order holds.")
    discount: Fen = Field(
        default=0, description="The coupon's discount: the buyer pays `total - discount`."
    )

    @model_validator(mode="after")
    def _total_is_price_times_quantity(self) -> Self:
        if self.total != self.unit_price * self.quantity:
            raise ValueError(
                f"total {self.total} != unit_price {self.unit_price} × quantity {self.quantity}"
            )
        return self


class OrderReserved(OrderEvent):
    """The keys are held for this order: it awaits payment until
    `payment_deadline`. For a manual offer there are no keys to hold (`key_ids`
    is empty) and the order is reserved as soon as it is placed. Consumed by
    payment (the order is now payable, for exactly `total`)."""

    key_ids: OrderKeyIds
    total: PositiveFen = Field(description="What the buyer pays: after any coupon's discount.")
    currency: Currency = CNY
    payment_deadline: UtcDatetime
    reservation_expires_at: UtcDatetime
    discount: Fen = Field(default=0, description="The coupon's discount, already off `total`.")
    discount_funded_by: DiscountFunder | None = Field(
        default=None,
        description="Who funds the discount: the platform pays it to the seller at settlement.",
    )


class OrderPaid(OrderEvent):
    """Payment was confirmed and verified for this order: the point of no return
    for the buyer's money. Consumed by inventory (mark the keys sold), delivery
    (deliver them now, or ask the seller for manual delivery)."""

    payment_id: Id
    product_id: Id
    quantity: Quantity
    key_ids: OrderKeyIds
    amount: PositiveFen
    currency: Currency = CNY
    delivery_mode: DeliveryMode
    delivery_deadline: UtcDatetime | None = Field(
        default=None,
        description="When the keys must be delivered by: the manual SLA from payment, or the "
        "platform's automatic delivery limit. Ordering refunds the buyer if nothing arrived.",
    )


class OrderDelivered(OrderEvent):
    """The keys reached the buyer (`KeyDelivered`); the guarantee window runs
    until `guarantee_ends_at`. Consumed by payment (settles to the seller when it
    settles at delivery) and aftersales (claims allowed until the window ends)."""

    delivery_id: Id
    key_ids: OrderKeyIds
    guarantee_ends_at: UtcDatetime


class OrderCompleted(OrderEvent):
    """The order is done: the buyer confirmed arrival or the guarantee window
    passed. Consumed by payment (settles when it settles after the window),
    catalog (sales and seller reliability), aftersales."""

    completed_by: CompletedBy
    total: PositiveFen
    currency: Currency = CNY


class OrderCancelled(OrderEvent):
    """The order ended before any money was kept: no keys delivered, nothing to
    refund. Consumed by inventory (release `release_key_ids`), payment (an intent
    for it may no longer be paid; money arriving later is refunded), catalog."""

    reason: CancelReason
    detail: Reason | None = None
    release_key_ids: OrderKeyIds = Field(
        description="Keys reserved for the order that go back to the pool (may be empty)."
    )
    payment_id: Id | None = None


class OrderRefundRequested(OrderEvent):
    """The saga compensates a paid order: money goes back to the buyer (or, after
    a chargeback, is recovered from the seller), from `source`. `refund_id`
    makes the request idempotent. Consumed by payment (moves the money), and by
    inventory (voids `void_key_ids`)."""

    payment_id: Id
    refund_id: Id
    amount: PositiveFen
    currency: Currency = CNY
    source: RefundSource
    reason: RefundReason
    ticket_id: Id | None = Field(default=None, description="The after-sales ticket, if any.")
    void_key_ids: OrderKeyIds = Field(
        description="Delivered or faulty keys that must never be sold again (may be empty)."
    )


class OrderRefunded(OrderEvent):
    """The refund (or chargeback recovery) of `refund_id` is done: the order
    reached `REFUNDED`, unless `ends_order` is false. Consumed by catalog
    (seller reliability), aftersales (closes the ticket), delivery (hides
    voided keys from the vault)."""

    payment_id: Id
    refund_id: Id
    amount: PositiveFen
    currency: Currency = CNY
    source: RefundSource
    reason: RefundReason
    ends_order: bool = Field(
        default=True,
        description="False when the order goes on: part of its money went back (a partial "
        "after-sales compensation), or a payment it never took was returned.",
    )


# -- commerce: coupons, price tiers, flash sales (docs/commerce.md) ---------------------


class CouponKind(StrEnum):
    FIXED = "fixed"  # `amount_off` fen off the order
    PERCENT = "percent"  # `percent_off` percent off, at most `max_off` fen


class CouponScope(StrEnum):
    OFFERS = "offers"  # a seller's coupon: only for the listed offers of that seller
    CATEGORY = "category"  # a platform coupon for one category's products
    ALL = "all"  # a platform coupon for every offer


class CouponEvent(AggregateEvent):
    """A coupon (aggregate `ordering.coupon`, id = the coupon's code). Its uses
    are facts of the orders that use it (`CouponHeld`, `CouponReleased`,
    `CouponRedeemed` on the order's stream)."""

    abstract = True
    aggregate_type: ClassVar[str] = "ordering.coupon"
    aggregate_id_field: ClassVar[str] = "coupon_id"

    coupon_id: Id


class CouponIssued(CouponEvent):
    """A seller (for its own offers) or the platform (an operator: a category or
    everything) issued a coupon. Who issued it funds its discount. Consumed by
    ordering itself (its coupon stream) and by analytics."""

    issuer_id: Id
    funded_by: DiscountFunder
    kind: CouponKind
    amount_off: Fen = Field(default=0, description="FIXED: fen off the order.")
    percent_off: int = Field(default=0, ge=0, le=100, strict=True, description="PERCENT: % off.")
    max_off: Fen | None = Field(default=None, description="PERCENT: the most it takes off.")
    min_spend: Fen = Field(default=0, description="The order's total before the discount.")
    scope: CouponScope
    offer_ids: list[Id] = Field(default_factory=list, max_length=100)
    category_id: Id | None = None
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    uses_per_buyer: int = Field(ge=1, le=1000, strict=True)
    max_uses: int = Field(ge=1, le=100_000, strict=True)


class OfferPricingEvent(AggregateEvent):
    """An offer's quantity tiers and flash sales (aggregate `ordering.offer_pricing`,
    id = the offer id), set by the offer's seller through ordering."""

    abstract = True
    aggregate_type: ClassVar[str] = "ordering.offer_pricing"
    aggregate_id_field: ClassVar[str] = "offer_id"

    offer_id: Id
    seller_id: Id


class PriceTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_quantity: Quantity
    unit_price: PositiveFen


class OfferPriceTiersSet(OfferPricingEvent):
    """The offer's unit price by quantity: the tier with the highest `min_quantity`
    not above the order's quantity applies; below the first tier, the listed
    price. An empty list goes back to the listed price alone. Consumed by ordering
    (the price of new orders) and by catalog readers of prices."""

    tiers: list[PriceTier] = Field(max_length=20)


class FlashSaleScheduled(OfferPricingEvent):
    """A flash sale: from `starts_at` to `ends_at`, `stock_cap` keys at
    `unit_price`, at most `per_buyer_limit` per buyer; ordering decides who gets
    one when the order is placed. Consumed by ordering (placement decides who gets a
    key) and by readers announcing the sale."""

    flash_sale_id: Id
    unit_price: PositiveFen
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    stock_cap: int = Field(ge=1, le=100_000, strict=True)
    max_per_buyer: int = Field(ge=1, le=1000, strict=True)


class CouponHeld(OrderEvent):
    """The unpaid order holds one use of the coupon (a use claimed under the
    coupon's limits when the order was placed). Consumed by payment (the discount
    and who funds it arrive with `OrderReserved`) and analytics."""

    coupon_id: Id
    discount: PositiveFen
    funded_by: DiscountFunder


class CouponReleased(OrderEvent):
    """The order gave its use of the coupon back: cancelled, expired or refunded.
    Consumed by analytics and the fault suite's auditor."""

    coupon_id: Id
    reason: Reason


class CouponRedeemed(OrderEvent):
    """The order was delivered: its use of the coupon is final. Consumed by
    analytics and the fault suite's auditor (redemptions within the limits)."""

    coupon_id: Id
    discount: PositiveFen
    funded_by: DiscountFunder
