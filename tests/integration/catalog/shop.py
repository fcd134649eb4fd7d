"""A small marketplace for the catalog's integration tests: categories,
products, three sellers' offers, stock, completed orders and reviews."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import uuid4

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.identity import Role
from kami_events.catalogue.inventory import StockChanged
from kami_events.catalogue.ordering import CompletedBy, OrderCompleted, OrderPlaced
from tests.integration.catalog.conftest import CatalogUnderTest

ACCOUNT: dict[str, Any] = {
    "binds_to_account": True,
    "buyer_fields": [{"name": "uid", "label": "游戏UID", "pattern": "^[1-9][0-9]{8}$"}],
}


@dataclass
class Shop:
    products: dict[str, str] = field(default_factory=dict)
    offers: dict[str, str] = field(default_factory=dict)

    def names(self, product_ids: list[str]) -> list[str]:
        by_id = {v: k for k, v in self.products.items()}
        return [by_id[p] for p in product_ids]


async def build_shop(c: CatalogUnderTest) -> Shop:
    shop = Shop()
    await c.add_category("games", "游戏娱乐")
    await c.add_category("genshin", "原神", "games")
    await c.add_category("honor-of-kings", "王者荣耀", "games")
    await c.add_category("life", "生活服务")
    await c.add_category("mobile-topup", "话费充值", "life")
    await c.add_category("video-vip", "视频会员", "life")

    manual: dict[str, Any] = {"delivery_mode": "manual", **ACCOUNT}
    products: list[tuple[str, str, str, int, dict[str, Any]]] = [
        ("G1", "原神 空月祝福 月卡", "genshin", 3000, {**manual, "aliases": ["Genshin Welkin"]}),
        ("G2", "原神 创世结晶 6480", "genshin", 64800, manual),
        ("G3", "空月祝福 月卡 国际服", "genshin", 3000, manual),
        ("H1", "王者荣耀 点券 100", "honor-of-kings", 1000, {"aliases": ["王者点券"]}),
        ("H2", "王者荣耀 月卡", "honor-of-kings", 3000, {}),
        ("M1", "中国移动 话费充值卡 100元", "mobile-topup", 10000, {"kind": "phone_topup"}),
        ("M2", "中国联通 话费充值卡 100元", "mobile-topup", 10000, {"kind": "phone_topup"}),
        ("M3", "中国电信 话费充值卡 100元", "mobile-topup", 10000, {"kind": "phone_topup"}),
        ("M4", "中国移动 话费充值卡 50元", "mobile-topup", 5000, {"kind": "phone_topup"}),
        (
            "V1",
            "腾讯视频 VIP会员 月卡",
            "video-vip",
            2500,
            {"kind": "membership", "aliases": ["Tencent Video VIP"]},
        ),
    ]
    for key, name, category, face, extra in products:
        shop.products[key] = await c.publish(name, category, face_value=face, **extra)

    sla = {"delivery_mode": DeliveryMode.MANUAL.value, "manual_delivery_sla_minutes": 30}
    for key, seller, product, price, terms in [
        ("a:G1", "s-a", "G1", 2800, sla),
        ("a:M1", "s-a", "M1", 9800, {}),
        ("a:M2", "s-a", "M2", 9700, {}),
        ("a:H1", "s-a", "H1", 950, {}),
        ("a:V1", "s-a", "V1", 2300, {}),
        ("b:M1", "s-b", "M1", 9600, {}),
        ("b:M3", "s-b", "M3", 9750, {}),
        ("b:M4", "s-b", "M4", 4900, {}),
        ("b:H2", "s-b", "H2", 2900, {}),
        ("c:G3", "s-c", "G3", 2700, sla),
    ]:
        shop.offers[key] = await c.list_offer(seller, shop.products[product], price, **terms)

    for key, available in [
        ("a:M1", 10),
        ("a:M2", 5),
        ("b:M1", 0),
        ("b:M3", 7),
        ("b:M4", 3),
        ("a:H1", 20),
        ("a:V1", 0),
    ]:
        await c.feed(
            StockChanged(offer_id=shop.offers[key], available=available, reserved=0),
            producer="inventory",
        )

    # Completed orders: M2 sells 3 keys, M3 2, M1 1.
    for key, buyer, quantity in [
        ("a:M2", "b-1", 3),
        ("b:M3", "b-2", 1),
        ("b:M3", "b-3", 1),
        ("a:M1", "b-1", 1),
    ]:
        await complete_order(c, shop, key, buyer, quantity)
    # Reviews: M1 five stars, M3 three.
    await c.ok(
        "POST",
        f"/offers/{shop.offers['a:M1']}/reviews",
        c.as_user("b-1", Role.BUYER),
        json={"rating": 5, "comment": "秒到账"},
    )
    await c.ok(
        "POST",
        f"/offers/{shop.offers['b:M3']}/reviews",
        c.as_user("b-2", Role.BUYER),
        json={"rating": 3},
    )
    return shop


async def complete_order(
    c: CatalogUnderTest,
    shop: Shop,
    offer_key: str,
    buyer: str,
    quantity: int,
    *,
    days_ago: int = 0,
) -> str:
    """An order placed and completed by ordering, `days_ago` days ago."""
    offer = await c.ok("GET", f"/offers/{shop.offers[offer_key]}")
    order_id = str(uuid4())
    common = {
        "order_id": order_id,
        "buyer_id": buyer,
        "seller_id": offer["seller_id"],
        "offer_id": offer["offer_id"],
    }
    at = c.clock() - timedelta(days=days_ago)
    await c.feed(
        OrderPlaced(
            **common,
            product_id=offer["product_id"],
            quantity=quantity,
            unit_price=offer["unit_price"],
            total=offer["unit_price"] * quantity,
            delivery_mode=offer["delivery_mode"],
            payment_deadline=at + timedelta(minutes=15),
        ),
        producer="ordering",
        occurred_at=at - timedelta(minutes=20),
    )
    await c.feed(
        OrderCompleted(
            **common,
            completed_by=CompletedBy.BUYER_CONFIRMED,
            total=offer["unit_price"] * quantity,
        ),
        producer="ordering",
        occurred_at=at,
    )
    return order_id
