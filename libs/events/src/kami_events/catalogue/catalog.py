"""Events of the catalog service: products and sellers' offers.

Topics: `kami.catalog.product.v1` (one stream per product, aggregate id =
product id) and `kami.catalog.offer.v1` (one stream per offer, aggregate id =
offer id). An offer is one seller's listing of one product at one price; its
keys live in the inventory pool of the same id.
Main consumers: inventory (which offers may reserve keys), ordering (what can
be ordered, at which price, with which buyer fields).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kami_events.catalogue.common import (
    AggregateEvent,
    BuyerFieldName,
    DeliveryMode,
    Id,
    Reason,
)
from kami_events.money import CNY, Currency, Fen, PositiveFen

Minutes = Annotated[int, Field(ge=1, le=7 * 24 * 60, strict=True)]
QuantityPerOrder = Annotated[int, Field(ge=1, le=1000, strict=True)]
Alias = Annotated[str, Field(min_length=1, max_length=100)]
ImageUrl = Annotated[str, Field(max_length=500, pattern=r"^https?://[^\s]+$")]


class ProductKind(StrEnum):
    GAME_POINTS = "game_points"
    PHONE_TOPUP = "phone_topup"
    MEMBERSHIP = "membership"
    COURSE = "course"
    GIFT_CARD = "gift_card"
    OTHER = "other"


class DelistReason(StrEnum):
    SELLER_REQUEST = "seller_request"
    # The seller's deposit fell below the minimum (`DepositBelowMinimum`).
    DEPOSIT_BELOW_MINIMUM = "deposit_below_minimum"
    SELLER_SUSPENDED = "seller_suspended"
    SELLER_FLAGGED = "seller_flagged"
    PRODUCT_WITHDRAWN = "product_withdrawn"
    OPERATOR = "operator"


class BuyerFieldSpec(BaseModel):
    """How to ask the buyer for one value of an account-bound product: the label
    to show and what a valid value looks like."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: BuyerFieldName
    label: str = Field(
        min_length=1, max_length=50, description="What the buyer sees, e.g. 游戏UID."
    )
    pattern: str | None = Field(
        default=None,
        max_length=200,
        description="A regular expression (Python/PCRE subset) the whole value must match.",
    )
    choices: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list,
        max_length=50,
        description="If not empty, the value must be one of these (e.g. a game server).",
    )

    @model_validator(mode="after")
    def _pattern_compiles(self) -> Self:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern of {self.name!r} is not a regular expression: {exc}"
                ) from None
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"choices of {self.name!r} repeat a value")
        return self


class FaqEntry(BaseModel):
    """One question a buyer may have about a product, with its answer (e.g. what
    to do when a key is reported invalid, how to bind it to an account)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1, max_length=200)
    answer: str = Field(min_length=1, max_length=2000)


class ProductEvent(AggregateEvent):
    """A product of the catalogue, e.g. a 100-yuan game point card (aggregate
    `catalog.product`, id = product id). Main consumers: ordering, inventory."""

    abstract = True
    aggregate_type: ClassVar[str] = "catalog.product"
    aggregate_id_field: ClassVar[str] = "product_id"

    product_id: Id


class ProductPublished(ProductEvent):
    """An operator published a product (or republished it with new details):
    sellers may now list offers for it. Consumed by ordering (which buyer fields
    an order needs), inventory (the product a pool belongs to), search/BI."""

    category_id: Id
    name: str = Field(min_length=1, max_length=200)
    kind: ProductKind
    face_value: Fen | None = Field(
        description="The nominal value of one key in fen (a 100-yuan card: 10000), if it has one."
    )
    currency: Currency = CNY
    required_buyer_fields: list[BuyerFieldName] = Field(
        default_factory=list,
        max_length=10,
        description="Values the buyer must give when ordering an account-bound product.",
    )
    # What buyers see before they buy (full transparency); all optional, so
    # earlier messages without them stay valid.
    aliases: list[Alias] = Field(
        default_factory=list, max_length=20, description="Other names buyers search by."
    )
    brand: str | None = Field(
        default=None, max_length=100, description="The issuer or brand, e.g. 米哈游, 中国移动."
    )
    scope: str | None = Field(
        default=None, max_length=200, description="Where a key works, e.g. 中国大陆官服."
    )
    validity_days: Annotated[int, Field(ge=1, le=3650, strict=True)] | None = Field(
        default=None, description="How long a key stays redeemable, in days."
    )
    usage_rules: str | None = Field(default=None, max_length=2000)
    binds_to_account: bool = Field(
        default=False, description="Whether the product is credited to a buyer's account."
    )
    delivery_mode: DeliveryMode | None = Field(
        default=None,
        description="How the product is delivered; `manual` offers only when manual.",
    )
    buyer_fields: list[BuyerFieldSpec] = Field(
        default_factory=list,
        max_length=10,
        description="Label and validation of each of `required_buyer_fields`.",
    )
    tutorial: str | None = Field(default=None, max_length=5000)
    faq: list[FaqEntry] = Field(default_factory=list, max_length=30)
    image_urls: list[ImageUrl] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _buyer_fields_describe_the_required_ones(self) -> Self:
        names = [spec.name for spec in self.buyer_fields]
        if len(set(names)) != len(names):
            raise ValueError("buyer_fields repeat a name")
        if self.buyer_fields and set(names) != set(self.required_buyer_fields):
            raise ValueError("buyer_fields must describe exactly the required_buyer_fields")
        return self


class OfferEvent(AggregateEvent):
    """One seller's offer of one product: price, delivery terms, on sale or not
    (aggregate `catalog.offer`, id = offer id). Main consumers: inventory (which
    pools may reserve keys), ordering (what can be ordered, at which price)."""

    abstract = True
    aggregate_type: ClassVar[str] = "catalog.offer"
    aggregate_id_field: ClassVar[str] = "offer_id"

    offer_id: Id
    product_id: Id
    seller_id: Id


class OfferListed(OfferEvent):
    """A seller's offer is on sale, with its full terms. Raised again with the
    same `offer_id` when a delisted offer is relisted. Consumed by inventory
    (reservations allowed) and ordering (orderable; price and delivery terms)."""

    unit_price: PositiveFen
    currency: Currency = CNY
    delivery_mode: DeliveryMode
    manual_delivery_sla_minutes: Minutes | None = Field(
        description="For manual delivery: how long the seller has before the order is refunded."
    )
    guarantee_window_minutes: Minutes = Field(
        description="After delivery, how long the buyer may claim a faulty key (default 15)."
    )
    max_quantity_per_order: QuantityPerOrder
    min_quantity_per_order: QuantityPerOrder = Field(
        default=1, description="The fewest keys one order may buy."
    )

    @model_validator(mode="after")
    def _sla_only_for_manual(self) -> Self:
        manual = self.delivery_mode is DeliveryMode.MANUAL
        if manual != (self.manual_delivery_sla_minutes is not None):
            raise ValueError("manual_delivery_sla_minutes is required for, and only for, manual")
        if self.min_quantity_per_order > self.max_quantity_per_order:
            raise ValueError("min_quantity_per_order exceeds max_quantity_per_order")
        return self


class OfferPriceChanged(OfferEvent):
    """The seller changed the offer's unit price; orders placed before keep their
    price. Consumed by ordering (price of new orders), search/BI."""

    old_unit_price: PositiveFen
    new_unit_price: PositiveFen
    currency: Currency = CNY


class OfferDelisted(OfferEvent):
    """The offer is off sale: no new reservations, no new orders. Orders already
    reserved or paid run to their end. Consumed by inventory (reservations for it
    now fail with `offer_delisted`) and ordering."""

    reason: DelistReason
    detail: Reason | None = None
