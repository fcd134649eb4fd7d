"""The catalog on the real Kafka: its offer events reach `kami.catalog.offer.v1`
for ordering, inventory and payment, and other services' events (stock,
deposits) arriving over Kafka change what buyers see."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

from aiokafka import ConsumerRecord

from kami_events.catalogue.catalog import OfferDelisted, OfferListed
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import (
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
)
from kami_events.catalogue.identity import Role
from kami_events.catalogue.inventory import StockChanged
from kami_events.catalogue.payment import (
    DepositBelowMinimum,
    DepositChangeCause,
    DepositChanged,
)
from kami_events.serialization import decode
from kami_events.topics import topic_for
from tests.integration.catalog.conftest import CatalogUnderTest
from tests.integration.conftest import eventually
from tests.integration.kafka_helpers import header, read_topic

Records = list[ConsumerRecord[Any, Any]]


def of(records: Records, key: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records if r.key == key.encode()]


async def offer_events(c: CatalogUnderTest, offer_id: str, count: int) -> Records:
    records = await read_topic(
        c.kafka_bootstrap or "",
        topic_for("catalog.offer"),
        lambda rs: len([r for r in rs if r.key == offer_id.encode()]) >= count,
    )
    return [r for r in records if r.key == offer_id.encode()]


async def with_product(c: CatalogUnderTest) -> str:
    await c.add_category("life", "生活服务")
    await c.add_category("mobile-topup", "话费充值", "life")
    return await c.publish(
        "中国移动 话费充值卡 100元",
        "mobile-topup",
        kind="phone_topup",
        face_value=10_000,
        scope="全国通用",
        validity_days=365,
        usage_rules="拨打10086按提示充值",
        faq=[{"question": "卡密无效怎么办?", "answer": "在订单页发起售后, 15分钟内全额退款。"}],
    )


async def test_offer_and_product_events_are_published_to_kafka(
    live_catalog: CatalogUnderTest,
) -> None:
    c = live_catalog
    product_id = await with_product(c)
    seller = c.as_user("s-kafka", Role.SELLER)
    offer_id = await c.list_offer(
        "s-kafka",
        product_id,
        9_800,
        min_quantity_per_order=1,
        max_quantity_per_order=5,
        guarantee_window_minutes=30,
    )
    await c.ok("PUT", f"/offers/{offer_id}/price", seller, json={"unit_price": 9_600})
    await c.ok("POST", f"/offers/{offer_id}/withdraw", seller)

    records = await offer_events(c, offer_id, 3)
    assert [header(r, "event_type") for r in records] == [
        "OfferListed",
        "OfferPriceChanged",
        "OfferDelisted",
    ]
    listed, changed, delisted = (decode(r.value) for r in records)
    assert listed.producer == "catalog" and listed.aggregate_type == "catalog.offer"
    assert [e.aggregate_version for e in (listed, changed, delisted)] == [1, 2, 3]
    assert listed.payload == OfferListed(
        offer_id=offer_id,
        product_id=product_id,
        seller_id="s-kafka",
        unit_price=9_800,
        delivery_mode=DeliveryMode.AUTO,
        manual_delivery_sla_minutes=None,
        guarantee_window_minutes=30,
        min_quantity_per_order=1,
        max_quantity_per_order=5,
    )
    assert of(records, offer_id)[1]["payload"]["new_unit_price"] == 9_600
    assert isinstance(delisted.payload, OfferDelisted)
    assert delisted.payload.reason == "seller_request"

    products = await read_topic(
        c.kafka_bootstrap or "",
        topic_for("catalog.product"),
        lambda rs: any(r.key == product_id.encode() for r in rs),
    )
    (published,) = of(products, product_id)
    assert published["payload"]["face_value"] == 10_000
    assert published["payload"]["scope"] == "全国通用"
    assert published["payload"]["faq"][0]["question"] == "卡密无效怎么办?"


async def comparison(c: CatalogUnderTest, product_id: str) -> dict[str, Any]:
    return await c.ok("GET", f"/products/{product_id}/offers")  # type: ignore[no-any-return]


def sellers(view: dict[str, Any]) -> list[tuple[str, int, int | None]]:
    return [
        (line["offer"]["seller_id"], line["offer"]["unit_price"], line["offer"]["stock"])
        for line in view["offers"]
    ]


def best(view: dict[str, Any]) -> str:
    (line,) = [line for line in view["offers"] if line["best_value"]]
    return str(line["offer"]["seller_id"])


async def test_price_comparison_of_three_sellers_follows_stock_and_deposits_over_kafka(
    live_catalog: CatalogUnderTest,
) -> None:
    c = live_catalog
    # Sellers unique to this run: other runs' events stay on the shared topics.
    run = uuid4().hex[:8]
    ids = {name: f"{name}-{run}" for name in ("s-1", "s-2", "s-3")}
    product_id = await with_product(c)
    offers = {
        seller: await c.list_offer(ids[seller], product_id, price)
        for seller, price in (("s-1", 9_800), ("s-2", 9_500), ("s-3", 9_600))
    }
    # Listed, but inventory has reported no keys yet: nothing to buy.
    assert (await comparison(c, product_id))["offers"] == []

    for seller, available in (("s-1", 10), ("s-2", 0), ("s-3", 5)):
        await c.send(
            StockChanged(offer_id=offers[seller], available=available, reserved=0),
            producer="inventory",
        )

    async def shows(expected: list[tuple[str, int, int | None]]) -> bool:
        seen = sellers(await comparison(c, product_id))
        return seen == [(ids[s], price, stock) for s, price, stock in expected]

    def best_is(view: dict[str, Any], name: str) -> bool:
        return best(view) == ids[name]

    await eventually(lambda: shows([("s-3", 9_600, 5), ("s-1", 9_800, 10)]))
    assert best_is(await comparison(c, product_id), "s-3")

    # s-2 gets keys: the cheapest offer appears and is the best value.
    await c.send(
        StockChanged(offer_id=offers["s-2"], available=4, reserved=0), producer="inventory"
    )
    await eventually(lambda: shows([("s-2", 9_500, 4), ("s-3", 9_600, 5), ("s-1", 9_800, 10)]))
    view = await comparison(c, product_id)
    assert best_is(view, "s-2")
    assert view["best_value_offer_id"] == offers["s-2"]
    # The product's summary follows the offers a moment later.
    await eventually(
        lambda: _summary_is(c, product_id, min_price=9_500, stock=19),
        message="the product summary did not follow the stock change",
    )

    # s-2 fails one delivery in two: still listed, no longer the best value.
    for event in (
        KeyDelivered(
            delivery_id="d-1",
            order_id="o-1",
            buyer_id="b-1",
            offer_id=offers["s-2"],
            seller_id=ids["s-2"],
            key_ids=["k-1"],
            channels=[DeliveryChannel.VAULT],
            mode=DeliveryMode.AUTO,
        ),
        DeliveryFailed(
            delivery_id="d-2",
            order_id="o-2",
            buyer_id="b-2",
            offer_id=offers["s-2"],
            seller_id=ids["s-2"],
            reason=DeliveryFailure.KEY_INVALID,
            key_ids=["k-2"],
            faulty_key_ids=["k-2"],
        ),
    ):
        await c.send(event, producer="delivery")
    await eventually(
        lambda: _seller_success(c, ids["s-2"], 5_000), message="delivery outcomes not applied"
    )
    view = await comparison(c, product_id)
    assert best_is(view, "s-3")
    s2 = view["offers"][0]["seller"]
    assert (s2["delivery_success_bp"], s2["reliable"]) == (5_000, False)

    # s-3's deposit falls below the minimum: its offer is delisted...
    await c.send(
        DepositBelowMinimum(seller_id=ids["s-3"], balance=20_000, minimum=50_000, shortfall=30_000),
        producer="payment",
    )
    await eventually(lambda: shows([("s-2", 9_500, 4), ("s-1", 9_800, 10)]))
    assert best_is(await comparison(c, product_id), "s-1")
    # ...and listed again once topped up.
    await c.send(
        DepositChanged(
            seller_id=ids["s-3"],
            direction="credit",
            amount=40_000,
            balance=60_000,
            minimum=50_000,
            cause=DepositChangeCause.TOP_UP,
        ),
        producer="payment",
    )
    await eventually(lambda: shows([("s-2", 9_500, 4), ("s-3", 9_600, 5), ("s-1", 9_800, 10)]))

    records = await offer_events(c, offers["s-3"], 3)
    assert [header(r, "event_type") for r in records] == [
        "OfferListed",
        "OfferDelisted",
        "OfferListed",
    ]
    delisted = decode(records[1].value)
    assert isinstance(delisted.payload, OfferDelisted)
    assert delisted.payload.reason == "deposit_below_minimum"

    # Sold out: hidden again, without any delisting event.
    await c.send(
        StockChanged(offer_id=offers["s-1"], available=0, reserved=2), producer="inventory"
    )
    await eventually(lambda: shows([("s-2", 9_500, 4), ("s-3", 9_600, 5)]))
    assert (await c.ok("GET", f"/offers/{offers['s-1']}"))["status"] == "listed"


async def _seller_success(c: CatalogUnderTest, seller_id: str, expected: int) -> bool:
    response = await c.client.get(f"/sellers/{seller_id}")
    return response.status_code == 200 and response.json()["delivery_success_bp"] == expected


async def _summary_is(c: Any, product_id: str, *, min_price: int, stock: int) -> bool:
    product = (await comparison(c, product_id))["product"]
    return bool(product["min_price"] == min_price and product["stock"] == stock)
