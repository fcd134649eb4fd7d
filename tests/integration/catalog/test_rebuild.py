"""The read models are projections: rebuilt from scratch out of the event
stores and the consumed-event log, they equal the live ones."""

from __future__ import annotations

from typing import Any

from kami_catalog.__main__ import rebuild_projections
from kami_catalog.adapters.projections import READ_MODELS
from kami_events.catalogue.aftersales import IssueCategory, TicketOpened
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import DeliveryChannel, KeyDelivered
from kami_events.catalogue.identity import Role, SellerApproved
from kami_events.catalogue.inventory import StockChanged
from kami_events.catalogue.payment import DepositBelowMinimum
from tests.integration.catalog.conftest import CatalogUnderTest
from tests.integration.catalog.shop import build_shop


async def snapshot(c: CatalogUnderTest) -> dict[str, list[dict[str, Any]]]:
    db = c.service.runtime.db
    return {name: [doc async for doc in db[name].find().sort("_id", 1)] for name in READ_MODELS}


async def views(c: CatalogUnderTest, product_ids: list[str]) -> list[Any]:
    seen: list[Any] = [
        await c.ok("GET", "/categories"),
        await c.ok("GET", "/search", params={"q": "话费 100"}),
        await c.ok("GET", "/search", params={"category": "games", "sort": "price_asc"}),
        await c.ok("GET", "/hot-picks"),
        await c.ok("GET", "/sellers/s-a"),
    ]
    for product_id in product_ids:
        seen.append(await c.ok("GET", f"/products/{product_id}/offers"))
    return seen


async def test_rebuilding_the_projections_gives_the_live_read_models(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    shop = await build_shop(c)
    operator = c.as_user(c.OPERATOR, Role.OPERATOR)
    # Category changes touch every product filed below them.
    await c.ok("PATCH", "/categories/life", operator, json={"name": "生活缴费"})
    await c.add_category("entertainment", "文娱")
    await c.ok("PATCH", "/categories/video-vip", operator, json={"parent_id": "entertainment"})
    # Offers change: a price, a withdrawal, a delisting for the deposit.
    seller_a = c.as_user("s-a", Role.SELLER)
    await c.ok("PUT", f"/offers/{shop.offers['a:M2']}/price", seller_a, json={"unit_price": 9_650})
    await c.ok("POST", f"/offers/{shop.offers['a:H1']}/withdraw", seller_a)
    await c.feed(
        DepositBelowMinimum(seller_id="s-c", balance=0, minimum=10_000, shortfall=10_000),
        producer="payment",
    )
    # Reliability facts, and stock replaced by a newer count.
    await c.feed(
        SellerApproved(user_id="s-a", shop_name="点卡小铺", approved_by="op-1"),
        producer="identity",
    )
    await c.feed(
        KeyDelivered(
            delivery_id="d-1",
            order_id="o-1",
            buyer_id="b-1",
            offer_id=shop.offers["a:M1"],
            seller_id="s-a",
            key_ids=["k-1"],
            channels=[DeliveryChannel.VAULT],
            mode=DeliveryMode.AUTO,
        ),
        producer="delivery",
    )
    await c.feed(
        TicketOpened(
            ticket_id="t-1",
            order_id="o-1",
            buyer_id="b-1",
            seller_id="s-a",
            offer_id=shop.offers["a:M1"],
            category=IssueCategory.KEY_INVALID,
            key_ids=["k-1"],
            within_guarantee=True,
            priority=0,
            opened_by="buyer",
        ),
        producer="aftersales",
    )
    await c.feed(
        StockChanged(offer_id=shop.offers["a:M1"], available=8, reserved=2), producer="inventory"
    )
    await c.service.projector.catch_up()

    live = await snapshot(c)
    compared = [shop.products[k] for k in ("M1", "M2", "G3", "V1")]
    live_views = await views(c, compared)
    # The state is not trivial: every read model has documents.
    assert all(live[name] for name in READ_MODELS), {n: len(d) for n, d in live.items()}
    video = next(d for d in live["products"] if d["_id"] == shop.products["V1"])
    assert video["category_path"] == ["entertainment", "video-vip"]
    assert "文娱" in video["category_names"] and "文娱" in video["terms"]

    await c.service.read_models.clear()
    await c.service.projector.load_index()  # as a restart would
    assert (await c.ok("GET", "/search", params={"q": "话费"}))["items"] == []

    # The command an operator runs (with the service stopped), then a restart.
    counts = await rebuild_projections(c.service.settings)
    assert counts == {name: len(docs) for name, docs in live.items()}
    assert await snapshot(c) == live
    await c.service.projector.load_index()
    assert await views(c, compared) == live_views

    # Rebuilding again, over rebuilt read models, changes nothing either.
    await c.service.projector.rebuild()
    assert await snapshot(c) == live
    assert await views(c, compared) == live_views
