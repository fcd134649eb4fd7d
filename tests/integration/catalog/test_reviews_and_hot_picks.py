"""Reviews (买家秀) from buyers with a completed order, their ratings, and hot
picks from recently completed orders."""

from __future__ import annotations

from datetime import timedelta

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.identity import Role
from kami_events.catalogue.ordering import CompletedBy, OrderCompleted, OrderPlaced
from tests.integration.catalog.conftest import CatalogUnderTest
from tests.integration.catalog.shop import build_shop, complete_order


async def test_only_buyers_with_a_completed_order_review_and_only_once(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    shop = await build_shop(c)
    offer = shop.offers["a:M2"]  # b-1 completed an order of it; b-9 did not
    url = f"/offers/{offer}/reviews"

    stranger = await c.client.post(url, headers=c.as_user("b-9"), json={"rating": 1})
    assert stranger.status_code == 403
    assert stranger.json()["error"]["code"] == "review_not_allowed"
    # An order of another offer of the same seller does not count either.
    other = await c.client.post(
        f"/offers/{shop.offers['a:H1']}/reviews", headers=c.as_user("b-1"), json={"rating": 2}
    )
    assert other.status_code == 403

    posted = await c.client.post(
        url, headers=c.as_user("b-1"), json={"rating": 4, "comment": "到账很快"}
    )
    assert posted.status_code == 201, posted.text
    again = await c.client.post(url, headers=c.as_user("b-1"), json={"rating": 5})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_reviewed"
    bad = await c.client.post(url, headers=c.as_user("b-1"), json={"rating": 6})
    assert bad.status_code == 422

    reviews = await c.ok("GET", url)
    assert [(r["buyer_id"], r["rating"], r["comment"]) for r in reviews] == [("b-1", 4, "到账很快")]
    # Ratings aggregate into the offer, the product and the seller: s-a has
    # M1 (5 stars, in build_shop) and M2 (4 stars).
    assert (await c.ok("GET", f"/offers/{offer}"))["rating_milli"] == 4_000
    assert (await c.ok("GET", f"/products/{shop.products['M2']}"))["rating_milli"] == 4_000
    seller = await c.ok("GET", "/sellers/s-a")
    assert (seller["rating_milli"], seller["rating_count"]) == (4_500, 2)


async def test_hot_picks_are_the_best_sellers_of_the_recent_window(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    shop = await build_shop(c)  # today: M2 3 keys, M3 2, M1 1
    await complete_order(c, shop, "a:H1", "b-4", 2, days_ago=3)
    await complete_order(c, shop, "a:H1", "b-5", 2, days_ago=3)
    # Long ago: many keys, but outside a 7-day window.
    await complete_order(c, shop, "b:M4", "b-6", 50, days_ago=10)

    picks = await c.ok("GET", "/hot-picks", params={"days": 7, "limit": 3})
    assert [(shop.names([p["product"]["product_id"]])[0], p["units_sold"]) for p in picks] == [
        ("H1", 4),
        ("M2", 3),
        ("M3", 2),
    ]
    month = await c.ok("GET", "/hot-picks", params={"days": 30, "limit": 1})
    assert month[0]["units_sold"] == 50
    # All-time sales on the product include the old order.
    assert (await c.ok("GET", f"/products/{shop.products['M4']}"))["sales"] == 50


async def test_buyers_see_every_detail_of_a_product(catalog: CatalogUnderTest) -> None:
    c = catalog
    await c.add_category("games", "游戏娱乐")
    await c.add_category("genshin", "原神", "games")
    product_id = await c.publish(
        "原神 空月祝福 月卡",
        "genshin",
        delivery_mode="manual",
        face_value=3_000,
        brand="米哈游",
        aliases=["原神月卡"],
        scope="中国大陆官服",
        validity_days=365,
        usage_rules="兑换后30天内每日登录领取",
        binds_to_account=True,
        buyer_fields=[
            {"name": "uid", "label": "游戏UID", "pattern": "^[1-9][0-9]{8}$"},
            {"name": "server", "label": "服务器", "choices": ["天空岛", "世界树"]},
        ],
        tutorial="1. 下单时填写UID 2. 卖家充值后确认收货",
        faq=[{"question": "如何绑定账号?", "answer": "下单时填写游戏UID和服务器。"}],
        image_urls=["https://img.example/genshin/welkin.png"],
    )
    page = await c.ok("GET", f"/products/{product_id}")
    assert page["face_value"] == 3_000 and page["brand"] == "米哈游"
    assert page["scope"] == "中国大陆官服" and page["validity_days"] == 365
    assert page["binds_to_account"] is True
    assert page["required_buyer_fields"] == ["uid", "server"]
    assert page["buyer_fields"][1]["choices"] == ["天空岛", "世界树"]
    assert page["faq"][0]["question"] == "如何绑定账号?"
    assert page["image_url"] == "https://img.example/genshin/welkin.png"
    assert page["category_path"] == ["games", "genshin"]
    assert page["live_offers"] == 0 and page["in_stock"] is False

    offer_id = await c.list_offer(
        "s-1", product_id, 2_800, delivery_mode="manual", manual_delivery_sla_minutes=30
    )
    page = await c.ok("GET", f"/products/{product_id}")
    # Manual delivery keeps no key pool: on sale means available.
    assert (page["live_offers"], page["in_stock"], page["min_price"]) == (1, True, 2_800)
    offer = await c.ok("GET", f"/offers/{offer_id}")
    assert (offer["stock"], offer["manual_delivery_sla_minutes"]) == (None, 30)
    auto = await c.client.post(
        "/offers",
        headers=c.as_user("s-2", Role.SELLER),
        json={
            "product_id": product_id,
            "unit_price": 2_700,
            "delivery_mode": "auto",
            "max_quantity_per_order": 1,
        },
    )
    assert auto.status_code == 422
    assert auto.json()["error"]["code"] == "delivery_mode_not_allowed"


async def test_a_completion_seen_before_its_placement_still_counts_its_keys(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    await c.add_category("steam", "Steam")
    product_id = await c.publish("Steam 钱包充值卡 50元", "steam", face_value=5_000)
    offer_id = await c.list_offer("s-1", product_id, 4_900)
    order = {"order_id": "o-late", "buyer_id": "b-1", "seller_id": "s-1", "offer_id": offer_id}
    await c.feed(
        OrderCompleted(**order, completed_by=CompletedBy.GUARANTEE_ELAPSED, total=14_700),
        producer="ordering",
    )
    await c.feed(
        OrderPlaced(
            **order,
            product_id=product_id,
            quantity=3,
            unit_price=4_900,
            total=14_700,
            delivery_mode=DeliveryMode.AUTO,
            payment_deadline=c.clock() + timedelta(minutes=15),
        ),
        producer="ordering",
    )
    assert (await c.ok("GET", f"/offers/{offer_id}"))["sales"] == 3
    assert (await c.ok("GET", f"/products/{product_id}"))["sales"] == 3
    (pick,) = await c.ok("GET", "/hot-picks")
    assert (pick["product"]["product_id"], pick["units_sold"]) == (product_id, 3)
