"""Coupons, quantity tiers and flash sales: the pure pricing rules, and the
placement handler holding, giving back and redeeming what an order claimed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from kami_events.catalogue.ordering import (
    CouponHeld,
    CouponKind,
    CouponRedeemed,
    CouponReleased,
    CouponScope,
    DiscountFunder,
    OrderPlaced,
    OrderReserved,
)
from kami_events.store import CommitContext
from kami_ordering.domain.order import OrderState
from kami_ordering.domain.promotions import (
    Coupon,
    CouponTerms,
    OfferPricing,
    price_order,
)
from kami_ordering.domain.terms import PlacementRefused
from tests.unit.ordering.script import OFFER, PRICE, SELLER, T0, SagaScript, auto_offer

CATEGORY = "cat-games"


def terms(**changes: Any) -> CouponTerms:
    base: dict[str, Any] = {
        "issuer_id": SELLER,
        "funded_by": DiscountFunder.SELLER,
        "kind": CouponKind.FIXED,
        "amount_off": 500,
        "percent_off": 0,
        "max_off": None,
        "min_spend": 0,
        "scope": CouponScope.OFFERS,
        "offer_ids": (OFFER,),
        "category_id": None,
        "starts_at": T0 - timedelta(hours=1),
        "ends_at": T0 + timedelta(days=1),
        "per_buyer_limit": 1,
        "total_limit": 2,
    }
    base.update(changes)
    return CouponTerms(**base)


def tiers() -> OfferPricing:
    pricing = OfferPricing(OFFER)
    pricing.set_tiers(auto_offer(), SELLER, [(10, 9_200), (100, 9_000)])
    return pricing


# -- pure rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "unit", "tier"),
    [(1, PRICE, None), (9, PRICE, None), (10, 9_200, 10), (99, 9_200, 10), (100, 9_000, 100)],
)
def test_the_highest_tier_reached_prices_the_order(
    quantity: int, unit: int, tier: int | None
) -> None:
    price = price_order(auto_offer(), quantity, tiers(), None, None, T0)
    assert (price.unit_price.amount, price.tier_min_quantity) == (unit, tier)
    assert price.total == unit * quantity


@pytest.mark.parametrize(
    "bad", [[(1, 9_000)], [(10, 9_200), (10, 9_100)], [(10, 9_600)], [(10, 9_000), (20, 9_100)]]
)
def test_tiers_must_ascend_and_get_cheaper(bad: list[tuple[int, int]]) -> None:
    with pytest.raises(PlacementRefused) as refused:
        OfferPricing(OFFER).set_tiers(auto_offer(), SELLER, bad)
    assert refused.value.code == "tiers_invalid"


def test_only_the_offers_seller_sets_its_tiers() -> None:
    with pytest.raises(PlacementRefused) as refused:
        OfferPricing(OFFER).set_tiers(auto_offer(), "someone-else", [(10, 9_000)])
    assert refused.value.code == "not_your_offer"


def test_a_running_flash_sale_wins_over_tiers_within_its_per_buyer_limit() -> None:
    pricing = tiers()
    pricing.schedule_flash_sale(
        auto_offer(),
        SELLER,
        flash_sale_id="fs1",
        unit_price=5_000,
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=10),
        stock_cap=20,
        per_buyer_limit=2,
        now=T0,
    )
    assert price_order(auto_offer(), 2, pricing, None, None, T0).unit_price.amount == 5_000
    before = price_order(auto_offer(), 1, pricing, None, None, T0 - timedelta(seconds=1))
    assert before.unit_price.amount == PRICE and before.flash_sale is None
    after = price_order(auto_offer(), 1, pricing, None, None, T0 + timedelta(minutes=10))
    assert after.flash_sale is None
    with pytest.raises(PlacementRefused) as refused:
        price_order(auto_offer(), 3, pricing, None, None, T0)
    assert refused.value.code == "flash_sale_limit"
    with pytest.raises(PlacementRefused) as overlapping:
        pricing.schedule_flash_sale(
            auto_offer(),
            SELLER,
            flash_sale_id="fs2",
            unit_price=5_000,
            starts_at=T0 + timedelta(minutes=5),
            ends_at=T0 + timedelta(hours=1),
            stock_cap=5,
            per_buyer_limit=1,
            now=T0,
        )
    assert overlapping.value.code == "flash_sale_overlaps"


def test_fixed_and_capped_percentage_discounts() -> None:
    fixed = Coupon.issue("SAVE5", terms())
    assert price_order(auto_offer(), 2, None, fixed, None, T0).discount == 500
    percent = Coupon.issue(
        "TENOFF",
        terms(kind=CouponKind.PERCENT, amount_off=0, percent_off=10, max_off=1_500),
    )
    assert price_order(auto_offer(), 1, None, percent, None, T0).discount == 950
    assert price_order(auto_offer(), 5, None, percent, None, T0).discount == 1_500
    price = price_order(auto_offer(), 5, None, percent, None, T0)
    assert price.amount_due == 5 * PRICE - 1_500


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"min_spend": 20_000}, "coupon_min_spend"),
        ({"starts_at": T0 + timedelta(minutes=1)}, "coupon_not_started"),
        ({"ends_at": T0}, "coupon_expired"),
        ({"offer_ids": ("another-offer",)}, "coupon_not_applicable"),
        (
            {
                "funded_by": DiscountFunder.PLATFORM,
                "scope": CouponScope.CATEGORY,
                "category_id": "other",
                "offer_ids": (),
            },
            "coupon_not_applicable",
        ),
    ],
)
def test_a_coupon_that_does_not_apply_says_why(changes: dict[str, Any], code: str) -> None:
    coupon = Coupon.issue("NOPE1", terms(**changes))
    with pytest.raises(PlacementRefused) as refused:
        price_order(auto_offer(), 2, None, coupon, CATEGORY, T0)
    assert refused.value.code == code


def test_platform_category_coupon_applies_to_the_category() -> None:
    coupon = Coupon.issue(
        "GAMES",
        terms(
            funded_by=DiscountFunder.PLATFORM,
            scope=CouponScope.CATEGORY,
            category_id=CATEGORY,
            offer_ids=(),
        ),
    )
    price = price_order(auto_offer(), 1, None, coupon, CATEGORY, T0)
    assert price.coupon is not None and price.coupon.funded_by is DiscountFunder.PLATFORM


@pytest.mark.parametrize(
    "changes",
    [
        {"funded_by": DiscountFunder.SELLER, "scope": CouponScope.ALL},
        {"kind": CouponKind.PERCENT, "amount_off": 0, "percent_off": 10, "max_off": None},
        {"per_buyer_limit": 3, "total_limit": 2},
        {"ends_at": T0 - timedelta(hours=2)},
    ],
)
def test_issuing_a_malformed_coupon_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(PlacementRefused) as refused:
        Coupon.issue("BAD1", terms(**changes))
    assert refused.value.code == "coupon_invalid"


def test_a_discount_never_makes_an_order_free() -> None:
    coupon = Coupon.issue("HUGE", terms(amount_off=1_000_000))
    assert price_order(auto_offer(), 1, None, coupon, None, T0).amount_due == 1


# -- placement --------------------------------------------------------------------


async def issue(script: SagaScript, code: str, **changes: Any) -> None:
    await script.coupons.save(Coupon.issue(code, terms(**changes)), CommitContext(code))


async def test_a_coupon_is_held_by_the_unpaid_order_and_given_back_on_cancellation() -> None:
    script = SagaScript()
    await issue(script, "SAVE5")
    placed = await script.buyer_places_order(quantity=2, coupon_code="SAVE5")
    order = placed.loaded.order
    assert order.total.amount == 2 * PRICE - 500 and order.coupon_status == "held"
    assert script.last(OrderPlaced).discount == 500
    assert script.last(CouponHeld).funded_by is DiscountFunder.SELLER
    await script.inventory_reserves()
    assert script.last(OrderReserved).total == 2 * PRICE - 500
    assert len(script.quotas.held_by("coupon:SAVE5")) == 1

    await script.buyer_cancels()
    assert script.last(CouponReleased).coupon_id == "SAVE5"
    assert script.quotas.held_by("coupon:SAVE5") == []
    # Given back: the same buyer may use it again.
    again = await script.buyer_places_order(coupon_code="SAVE5")
    assert again.loaded.order.coupon_status == "held"


async def test_a_delivered_order_redeems_its_coupon_for_good() -> None:
    script = SagaScript()
    await issue(script, "SAVE5")
    await script.buyer_places_order(quantity=2, coupon_code="SAVE5")
    await script.inventory_reserves()
    await script.payment_confirms()
    await script.delivery_delivers()
    assert script.last(CouponRedeemed).discount == 500
    assert [s["status"] for s in script.quotas.held_by("coupon:SAVE5")] == ["redeemed"]
    with pytest.raises(PlacementRefused) as refused:
        await script.buyer_places_order(coupon_code="SAVE5")
    assert refused.value.code == "coupon_buyer_limit"


async def test_a_coupon_past_its_total_limit_is_refused_at_once() -> None:
    script = SagaScript()
    await issue(script, "TWO", total_limit=2)
    for buyer in ("b1", "b2"):
        await script.buyer_places_order(buyer_id=buyer, coupon_code="TWO")
    with pytest.raises(PlacementRefused) as refused:
        await script.buyer_places_order(buyer_id="b3", coupon_code="TWO")
    assert refused.value.code == "coupon_exhausted"
    with pytest.raises(PlacementRefused) as unknown:
        await script.buyer_places_order(coupon_code="NOSUCH")
    assert unknown.value.code == "coupon_not_found"


async def flash_sale(script: SagaScript, *, stock_cap: int, lasts: timedelta) -> None:
    """Flash sale `fs1` of OFFER from T0: 10.00 a key, one per buyer."""
    pricing = OfferPricing(OFFER)
    pricing.schedule_flash_sale(
        auto_offer(),
        SELLER,
        flash_sale_id="fs1",
        unit_price=1_000,
        starts_at=T0,
        ends_at=T0 + lasts,
        stock_cap=stock_cap,
        per_buyer_limit=1,
        now=T0,
    )
    await script.pricing.save(pricing, CommitContext(OFFER))


async def test_racing_buyers_never_exceed_a_flash_sales_cap_or_per_buyer_limit() -> None:
    script = SagaScript()
    script.catalog.offers[OFFER] = auto_offer(max_quantity=5)
    await flash_sale(script, stock_cap=5, lasts=timedelta(minutes=5))

    async def attempt(buyer: str) -> str:
        try:
            await script.buyer_places_order(buyer_id=buyer, quantity=1)
        except PlacementRefused as refused:
            return refused.code
        return "placed"

    results = await asyncio.gather(*(attempt(f"b{n % 12}") for n in range(40)))
    assert results.count("placed") == 5
    assert set(results) == {"placed", "flash_sale_sold_out", "flash_sale_buyer_limit"}
    winners = {s["order_id"] for s in script.quotas.held_by("flash:fs1")}
    assert len(winners) == 5
    buyers = [s for s in script.quotas.slots.values() if s["slot"] == "buyer"]
    assert len(buyers) == 5  # losers gave their buyer slot back


async def test_a_flash_sale_order_that_expires_gives_its_key_back() -> None:
    script = SagaScript()
    await flash_sale(script, stock_cap=1, lasts=timedelta(hours=1))
    placed = await script.buyer_places_order(quantity=1)
    assert placed.loaded.order.unit_price.amount == 1_000
    await script.inventory_reserves()
    await script.inventory_lets_the_reservation_expire()
    assert (await script.order()).state is OrderState.CANCELLED
    assert script.quotas.held_by("flash:fs1") == []
    second = await script.buyer_places_order(buyer_id="b2", quantity=1)
    assert second.loaded.order.flash_sale_id == "fs1"


async def test_a_sold_out_flash_sale_refuses_at_once_until_a_key_comes_back_or_it_ends() -> None:
    script = SagaScript()
    script.quotas.memo = True
    await flash_sale(script, stock_cap=1, lasts=timedelta(hours=1))
    won = await script.buyer_places_order(buyer_id="b1", quantity=1)
    with pytest.raises(PlacementRefused) as first:
        await script.buyer_places_order(buyer_id="b2", quantity=1)
    assert first.value.code == "flash_sale_sold_out"

    # Known sold out: refused before the offer is even looked up.
    offers = dict(script.catalog.offers)
    script.catalog.offers.clear()
    with pytest.raises(PlacementRefused) as again:
        await script.buyer_places_order(buyer_id="b3", quantity=1)
    assert again.value.code == "flash_sale_sold_out"
    assert again.value.message == first.value.message
    script.catalog.offers.update(offers)

    # The winner's order expires: its key is back, and the next buyer gets it.
    script.order_id = won.loaded.order.id
    await script.inventory_reserves()
    await script.inventory_lets_the_reservation_expire()
    third = await script.buyer_places_order(buyer_id="b3", quantity=1)
    assert third.loaded.order.flash_sale_id == "fs1"

    # Sold out again, then the sale ends: the offer sells at its own price.
    with pytest.raises(PlacementRefused):
        await script.buyer_places_order(buyer_id="b4", quantity=1)
    script.clock.advance(timedelta(hours=1))
    after = await script.buyer_places_order(buyer_id="b4", quantity=1)
    assert after.loaded.order.flash_sale_id is None
    assert after.loaded.order.unit_price.amount == PRICE
