"""A seller's standing from other services' events: flags, suspensions and
deposits take its offers off sale and bring them back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from kami_events.catalogue.aftersales import FlagReason, SellerFlagCleared, SellerFlagged
from kami_events.catalogue.identity import Role, SellerApproved, SuspensionReason, UserSuspended
from kami_events.catalogue.inventory import StockChanged
from kami_events.catalogue.payment import DepositBelowMinimum
from tests.integration.catalog.conftest import CatalogUnderTest


async def with_offer(c: CatalogUnderTest, seller: str) -> tuple[str, str]:
    await c.add_category("steam", "Steam")
    product_id = await c.publish("Steam 钱包充值卡 100元", "steam", face_value=10_000)
    offer_id = await c.list_offer(seller, product_id, 9_700)
    await c.feed(StockChanged(offer_id=offer_id, available=3, reserved=0), producer="inventory")
    return product_id, offer_id


def flag(severity: Literal["warning", "critical"]) -> SellerFlagged:
    return SellerFlagged(
        seller_id="s-1",
        reason=FlagReason.HIGH_INVALID_KEY_RATE,
        severity=severity,
        window_days=30,
        orders=200,
        upheld_claims=30,
        rate_basis_points=1_500,
    )


async def test_a_warning_marks_the_seller_a_critical_flag_delists(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    await c.feed(
        SellerApproved(user_id="s-1", shop_name="蒸汽小铺", approved_by="op-1"), producer="identity"
    )
    product_id, offer_id = await with_offer(c, "s-1")
    await c.feed(flag("warning"), producer="aftersales")
    line = (await c.ok("GET", f"/products/{product_id}/offers"))["offers"][0]
    assert line["seller"]["shop_name"] == "蒸汽小铺"
    assert (line["seller"]["flagged"], line["seller"]["reliable"]) == ("warning", False)
    assert line["best_value"] is True  # the only offer

    await c.feed(flag("critical"), producer="aftersales")
    assert (await c.ok("GET", f"/products/{product_id}/offers"))["offers"] == []
    offer = await c.ok("GET", f"/offers/{offer_id}")
    assert (offer["status"], offer["delist_reason"]) == ("delisted", "seller_flagged")
    relist = await c.client.post(
        "/offers",
        headers=c.as_user("s-1", Role.SELLER),
        json={
            "product_id": product_id,
            "unit_price": 9_700,
            "delivery_mode": "auto",
            "max_quantity_per_order": 2,
        },
    )
    assert relist.status_code == 403
    assert relist.json()["error"]["code"] == "seller_seller_flagged"


async def test_a_dated_suspension_delists_until_it_ends(catalog: CatalogUnderTest) -> None:
    c = catalog
    _, offer_id = await with_offer(c, "s-1")
    await c.feed(
        UserSuspended(
            user_id="s-1",
            reason=SuspensionReason.TERMS_VIOLATION,
            suspended_by="op-1",
            until=c.clock() + timedelta(days=2),
        ),
        producer="identity",
    )
    assert (await c.ok("GET", f"/offers/{offer_id}"))["delist_reason"] == "seller_suspended"
    handlers = c.service.handlers
    assert await handlers.restore_after_suspensions() == 0
    c.clock.advance(timedelta(days=2, seconds=1))
    assert await handlers.restore_after_suspensions() == 1
    assert await handlers.restore_after_suspensions() == 0
    offer = await c.ok("GET", f"/offers/{offer_id}")
    assert (offer["status"], offer["live"]) == ("listed", True)


async def test_a_seller_below_the_deposit_minimum_cannot_list(catalog: CatalogUnderTest) -> None:
    c = catalog
    await c.feed(
        DepositBelowMinimum(seller_id="s-9", balance=0, minimum=50_000, shortfall=50_000),
        producer="payment",
    )
    await c.add_category("steam", "Steam")
    product_id = await c.publish("Steam 钱包充值卡 50元", "steam", face_value=5_000)
    refused = await c.client.post(
        "/offers",
        headers=c.as_user("s-9", Role.SELLER),
        json={
            "product_id": product_id,
            "unit_price": 4_900,
            "delivery_mode": "auto",
            "max_quantity_per_order": 2,
        },
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "seller_deposit_below_minimum"
    assert await c.ok("GET", "/sellers/me/offers", c.as_user("s-9", Role.SELLER)) == []


async def test_stale_events_never_undo_newer_ones(catalog: CatalogUnderTest) -> None:
    c = catalog
    _, offer_id = await with_offer(c, "s-1")  # stock version 1: 3 keys
    newer = c.envelope(
        StockChanged(offer_id=offer_id, available=0, reserved=1), producer="inventory"
    )
    older = newer.model_copy(
        update={
            "aggregate_version": 1,
            "payload": StockChanged(offer_id=offer_id, available=7, reserved=0),
        }
    )
    await c.service.projector.apply_consumed(newer)
    await c.service.projector.apply_consumed(older)
    offer = await c.ok("GET", f"/offers/{offer_id}")
    assert (offer["stock"], offer["live"]) == (0, False)


async def test_a_flagged_sellers_offers_are_demoted_in_search_until_the_flag_clears(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    product_id, flagged_offer = await with_offer(c, "s-1")  # 97.00
    good_offer = await c.list_offer("s-2", product_id, 9_900)
    await c.feed(StockChanged(offer_id=good_offer, available=2, reserved=0), producer="inventory")

    async def card() -> dict[str, Any]:
        hits = (await c.ok("GET", "/search?q=Steam"))["items"]
        [hit] = [h for h in hits if h["product_id"] == product_id]
        return dict(hit)

    assert ((await card())["min_price"], (await card())["demoted"]) == (9_700, False)
    await c.feed(flag("warning"), producer="aftersales")
    # The cheaper offer is hidden behind the one in good standing...
    assert (await card())["min_price"] == 9_900
    comparison = await c.ok("GET", f"/products/{product_id}/offers")
    assert [line["offer"]["offer_id"] for line in comparison["offers"]] == [
        good_offer,
        flagged_offer,
    ]
    assert comparison["best_value_offer_id"] == good_offer
    # ...but still on sale (a warning demotes; only a critical flag delists).
    assert (await c.ok("GET", f"/offers/{flagged_offer}"))["status"] == "listed"

    await c.feed(
        SellerFlagCleared(
            seller_id="s-1",
            reason=FlagReason.HIGH_INVALID_KEY_RATE,
            window_days=30,
            orders=900,
            upheld_claims=30,
            rate_basis_points=333,
        ),
        producer="aftersales",
    )
    assert (await card())["min_price"] == 9_700


async def test_one_flagged_offer_is_demoted_apart_from_its_sellers_others(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    product_id, flagged_offer = await with_offer(c, "s-1")
    good_offer = await c.list_offer("s-2", product_id, 9_900)
    await c.feed(StockChanged(offer_id=good_offer, available=2, reserved=0), producer="inventory")
    offer_flag = flag("warning").model_copy(update={"offer_id": flagged_offer})
    await c.feed(offer_flag, producer="aftersales")
    comparison = await c.ok("GET", f"/products/{product_id}/offers")
    assert comparison["best_value_offer_id"] == good_offer
    assert comparison["offers"][-1]["seller"]["flagged"] == "warning"
    assert (await c.ok("GET", f"/offers/{flagged_offer}"))["status"] == "listed"
