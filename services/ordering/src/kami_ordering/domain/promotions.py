"""Commerce terms an order is priced by (docs/commerce.md): an offer's quantity
tiers and flash sales (`OfferPricing`, one stream per offer) and coupons
(`Coupon`, one stream per code).

Pure: the aggregates check a command and trigger events; `price_order` picks
the unit price and the discount for an order from them. Usage limits (a
coupon's uses, a flash sale's keys) are not decided here but by the unique
inserts of `kami_ordering.adapters.quotas` (docs/storage.md): this module
says what the limits are, the claims say who got within them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from kami_events.aggregate import Aggregate
from kami_events.catalogue.ordering import (
    CouponIssued,
    CouponKind,
    CouponScope,
    DiscountFunder,
    FlashSaleScheduled,
    OfferPriceTiersSet,
    PriceTier,
)
from kami_events.event import Event
from kami_events.money import Money
from kami_ordering.domain.terms import OfferTerms, PlacementRefused, RefusalKind

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,31}$")
MAX_TIERS = 20


def invalid(code: str, message: str) -> PlacementRefused:
    return PlacementRefused(RefusalKind.INVALID, code, message)


def unavailable(code: str, message: str) -> PlacementRefused:
    return PlacementRefused(RefusalKind.UNAVAILABLE, code, message)


# -- quantity tiers and flash sales -------------------------------------------------


@dataclass(frozen=True)
class FlashSale:
    flash_sale_id: str
    unit_price: int
    starts_at: datetime
    ends_at: datetime
    stock_cap: int
    per_buyer_limit: int

    def running(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


class OfferPricing(Aggregate):
    """An offer's quantity tiers and flash sales, set by the offer's seller."""

    aggregate_type: ClassVar[str] = "ordering.offer_pricing"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.tiers: tuple[PriceTier, ...] = ()
        self.flash_sales: dict[str, FlashSale] = {}

    def set_tiers(self, offer: OfferTerms, seller_id: str, tiers: list[tuple[int, int]]) -> None:
        """Tiers as `(min_quantity, unit_price)`: ascending quantities from 2 up
        (below the first tier the listed price applies), each price below the
        listed price and not above the tier before it."""
        _check_seller(offer, seller_id)
        if len(tiers) > MAX_TIERS:
            raise invalid("tiers_invalid", f"At most {MAX_TIERS} tiers.")
        previous_quantity, previous_price = 1, offer.unit_price.amount
        for min_quantity, unit_price in tiers:
            if min_quantity <= previous_quantity:
                raise invalid(
                    "tiers_invalid",
                    "Tier quantities must start above 1 and ascend strictly; "
                    f"{min_quantity} follows {previous_quantity}.",
                )
            if unit_price <= 0 or unit_price > previous_price:
                raise invalid(
                    "tiers_invalid",
                    f"The tier from {min_quantity} must cost more than 0 and at most "
                    f"{previous_price} fen (the price below it); it asks {unit_price}.",
                )
            previous_quantity, previous_price = min_quantity, unit_price
        self._trigger(
            OfferPriceTiersSet(
                offer_id=self.id,
                seller_id=seller_id,
                tiers=[PriceTier(min_quantity=q, unit_price=p) for q, p in tiers],
            )
        )

    def schedule_flash_sale(
        self,
        offer: OfferTerms,
        seller_id: str,
        *,
        flash_sale_id: str,
        unit_price: int,
        starts_at: datetime,
        ends_at: datetime,
        stock_cap: int,
        per_buyer_limit: int,
        now: datetime,
    ) -> None:
        _check_seller(offer, seller_id)
        if not now <= ends_at or not starts_at < ends_at:
            raise invalid("flash_sale_invalid", "The sale must end after it starts, in the future.")
        if not 0 < unit_price < offer.unit_price.amount:
            raise invalid(
                "flash_sale_invalid",
                f"A flash sale price is below the listed {offer.unit_price.amount} fen.",
            )
        if stock_cap < 1 or per_buyer_limit < 1:
            raise invalid("flash_sale_invalid", "Stock cap and per-buyer limit are at least 1.")
        for other in self.flash_sales.values():
            if other.starts_at < ends_at and starts_at < other.ends_at:
                raise PlacementRefused(
                    RefusalKind.UNAVAILABLE,
                    "flash_sale_overlaps",
                    f"Flash sale {other.flash_sale_id} already runs in that window.",
                )
        self._trigger(
            FlashSaleScheduled(
                offer_id=self.id,
                seller_id=seller_id,
                flash_sale_id=flash_sale_id,
                unit_price=unit_price,
                starts_at=starts_at,
                ends_at=ends_at,
                stock_cap=stock_cap,
                max_per_buyer=per_buyer_limit,
            )
        )

    def running_sale(self, now: datetime) -> FlashSale | None:
        return next((s for s in self.flash_sales.values() if s.running(now)), None)

    def tier_for(self, quantity: int) -> PriceTier | None:
        chosen = None
        for tier in self.tiers:
            if tier.min_quantity <= quantity:
                chosen = tier
        return chosen

    def apply(self, event: Event) -> None:
        match event:
            case OfferPriceTiersSet():
                self.tiers = tuple(event.tiers)
            case FlashSaleScheduled():
                self.flash_sales[event.flash_sale_id] = FlashSale(
                    flash_sale_id=event.flash_sale_id,
                    unit_price=event.unit_price,
                    starts_at=event.starts_at,
                    ends_at=event.ends_at,
                    stock_cap=event.stock_cap,
                    per_buyer_limit=event.max_per_buyer,
                )
            case _:
                super().apply(event)


def _check_seller(offer: OfferTerms, seller_id: str) -> None:
    if offer.seller_id != seller_id:
        raise PlacementRefused(RefusalKind.FORBIDDEN, "not_your_offer", "The offer is not yours.")


# -- coupons ------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponTerms:
    issuer_id: str
    funded_by: DiscountFunder
    kind: CouponKind
    amount_off: int
    percent_off: int
    max_off: int | None
    min_spend: int
    scope: CouponScope
    offer_ids: tuple[str, ...]
    category_id: str | None
    starts_at: datetime
    ends_at: datetime
    per_buyer_limit: int
    total_limit: int


class Coupon(Aggregate):
    aggregate_type: ClassVar[str] = "ordering.coupon"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.terms: CouponTerms | None = None

    @classmethod
    def issue(cls, code: str, terms: CouponTerms) -> Coupon:
        """A new coupon. A seller's coupon names only its own offers (the caller
        checked they are the seller's) and is funded by the seller; a platform
        coupon covers a category or everything and is funded by the platform."""
        if not CODE_PATTERN.match(code):
            raise invalid("coupon_invalid", "A code is 3-32 capital letters, digits, - or _.")
        if terms.kind is CouponKind.FIXED:
            if terms.amount_off <= 0 or terms.percent_off or terms.max_off is not None:
                raise invalid("coupon_invalid", "A fixed coupon takes amount_off (fen) alone.")
        elif not 0 < terms.percent_off < 100 or terms.amount_off or not terms.max_off:
            raise invalid(
                "coupon_invalid", "A percentage coupon takes percent_off (1-99) and a max_off cap."
            )
        if not terms.starts_at < terms.ends_at:
            raise invalid("coupon_invalid", "The validity window must end after it starts.")
        if terms.per_buyer_limit < 1 or terms.total_limit < terms.per_buyer_limit:
            raise invalid("coupon_invalid", "Limits: 1 <= per_buyer_limit <= total_limit.")
        match terms.funded_by, terms.scope:
            case DiscountFunder.SELLER, CouponScope.OFFERS if terms.offer_ids:
                pass
            case DiscountFunder.PLATFORM, CouponScope.CATEGORY if terms.category_id:
                pass
            case DiscountFunder.PLATFORM, CouponScope.ALL:
                pass
            case _:
                raise invalid(
                    "coupon_invalid",
                    "A seller's coupon names its offers; a platform coupon a category or all.",
                )
        coupon = cls(code)
        coupon._trigger(
            CouponIssued(
                coupon_id=code,
                issuer_id=terms.issuer_id,
                funded_by=terms.funded_by,
                kind=terms.kind,
                amount_off=terms.amount_off,
                percent_off=terms.percent_off,
                max_off=terms.max_off,
                min_spend=terms.min_spend,
                scope=terms.scope,
                offer_ids=list(terms.offer_ids),
                category_id=terms.category_id,
                starts_at=terms.starts_at,
                ends_at=terms.ends_at,
                uses_per_buyer=terms.per_buyer_limit,
                max_uses=terms.total_limit,
            )
        )
        return coupon

    def discount_for(
        self, offer: OfferTerms, category_id: str | None, total: int, now: datetime
    ) -> int:
        """The discount on an order of `total` fen for `offer`, or `PlacementRefused`
        saying why the coupon does not apply. Never more than the total less 1
        fen: an order always costs something (a payment is positive)."""
        terms = self.terms
        assert terms is not None
        if now < terms.starts_at:
            raise unavailable(
                "coupon_not_started",
                f"Coupon {self.id} is valid from {terms.starts_at.isoformat()}.",
            )
        if now >= terms.ends_at:
            raise unavailable("coupon_expired", f"Coupon {self.id} expired.")
        applies = (
            terms.scope is CouponScope.ALL
            or (terms.scope is CouponScope.OFFERS and offer.offer_id in terms.offer_ids)
            or (terms.scope is CouponScope.CATEGORY and category_id == terms.category_id)
        )
        if not applies:
            raise invalid(
                "coupon_not_applicable", f"Coupon {self.id} does not apply to this offer."
            )
        if total < terms.min_spend:
            raise invalid(
                "coupon_min_spend",
                f"Coupon {self.id} needs an order of at least {terms.min_spend} fen; "
                f"this one is {total}.",
            )
        if terms.kind is CouponKind.FIXED:
            off = terms.amount_off
        else:
            off = total * terms.percent_off // 100
            if terms.max_off is not None:
                off = min(off, terms.max_off)
        return max(0, min(off, total - 1))

    def apply(self, event: Event) -> None:
        match event:
            case CouponIssued():
                self.terms = CouponTerms(
                    issuer_id=event.issuer_id,
                    funded_by=event.funded_by,
                    kind=event.kind,
                    amount_off=event.amount_off,
                    percent_off=event.percent_off,
                    max_off=event.max_off,
                    min_spend=event.min_spend,
                    scope=event.scope,
                    offer_ids=tuple(event.offer_ids),
                    category_id=event.category_id,
                    starts_at=event.starts_at,
                    ends_at=event.ends_at,
                    per_buyer_limit=event.uses_per_buyer,
                    total_limit=event.max_uses,
                )
            case _:
                super().apply(event)


# -- an order's price ---------------------------------------------------------------


@dataclass(frozen=True)
class AppliedCoupon:
    code: str
    discount: int
    funded_by: DiscountFunder
    per_buyer_limit: int
    total_limit: int


@dataclass(frozen=True)
class OrderPrice:
    """What an order is placed at: the unit price and where it came from, and
    the coupon's discount (the buyer pays `total - discount`)."""

    unit_price: Money
    quantity: int
    tier_min_quantity: int | None = None
    flash_sale: FlashSale | None = None
    coupon: AppliedCoupon | None = None

    @property
    def total(self) -> int:
        return self.unit_price.amount * self.quantity

    @property
    def discount(self) -> int:
        return self.coupon.discount if self.coupon else 0

    @property
    def amount_due(self) -> int:
        return self.total - self.discount


def price_order(
    offer: OfferTerms,
    quantity: int,
    pricing: OfferPricing | None,
    coupon: Coupon | None,
    category_id: str | None,
    now: datetime,
) -> OrderPrice:
    """A running flash sale's price wins (within its per-buyer limit), else the
    quantity tier, else the listed price; a coupon then comes off the total."""
    unit = offer.unit_price
    tier_min: int | None = None
    sale = pricing.running_sale(now) if pricing else None
    if sale is not None:
        if quantity > sale.per_buyer_limit:
            raise invalid(
                "flash_sale_limit",
                f"The flash sale sells at most {sale.per_buyer_limit} per buyer; "
                f"{quantity} were asked for.",
            )
        unit = Money(amount=sale.unit_price, currency=unit.currency)
    elif pricing is not None and (tier := pricing.tier_for(quantity)) is not None:
        unit = Money(amount=tier.unit_price, currency=unit.currency)
        tier_min = tier.min_quantity
    applied = None
    if coupon is not None:
        assert coupon.terms is not None
        discount = coupon.discount_for(offer, category_id, unit.amount * quantity, now)
        if discount > 0:
            applied = AppliedCoupon(
                code=coupon.id,
                discount=discount,
                funded_by=coupon.terms.funded_by,
                per_buyer_limit=coupon.terms.per_buyer_limit,
                total_limit=coupon.terms.total_limit,
            )
    return OrderPrice(unit, quantity, tier_min, sale, applied)
