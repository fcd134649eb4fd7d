"""The catalog's HTTP API: who may do what, and clear 4xx answers."""

from __future__ import annotations

from kami_events.catalogue.identity import Role
from tests.integration.catalog.conftest import CatalogUnderTest


def code(response: object) -> tuple[int, str]:
    status = response.status_code  # type: ignore[attr-defined]
    return status, response.json()["error"]["code"]  # type: ignore[attr-defined]


async def test_operators_manage_the_category_tree(catalog: CatalogUnderTest) -> None:
    c = catalog
    operator = c.as_user(c.OPERATOR, Role.OPERATOR)
    await c.add_category("games", "游戏娱乐")
    await c.add_category("genshin", "原神", "games")
    await c.add_category("life", "生活服务")
    tree = await c.ok("GET", "/categories")
    assert [(n["category_id"], [k["category_id"] for k in n["children"]]) for n in tree] == [
        ("games", ["genshin"]),
        ("life", []),
    ]
    moved = await c.ok("PATCH", "/categories/genshin", operator, json={"parent_id": "life"})
    assert (moved["parent_id"], moved["version"]) == ("life", 2)
    await c.ok("PATCH", "/categories/genshin", operator, json={"parent_id": None})
    genshin = await c.ok("GET", "/categories/genshin")
    assert (genshin["parent_id"], genshin["path"]) == (None, ["genshin"])

    post = c.client.post
    assert code(await post("/categories", json={"slug": "x", "name": "X"})) == (
        401,
        "unauthenticated",
    )
    buyer = c.as_user("b-1", Role.BUYER)
    assert code(await post("/categories", headers=buyer, json={"slug": "x", "name": "X"})) == (
        403,
        "forbidden",
    )
    bad_slug = await post("/categories", headers=operator, json={"slug": "Bad Slug", "name": "X"})
    assert code(bad_slug) == (422, "invalid_request")
    exists = await post("/categories", headers=operator, json={"slug": "games", "name": "游戏"})
    assert code(exists) == (409, "category_exists")
    cycle = await c.client.patch("/categories/games", headers=operator, json={"parent_id": "games"})
    assert code(cycle) == (422, "category_cycle")
    empty = await c.client.patch("/categories/games", headers=operator, json={})
    assert code(empty) == (422, "nothing_to_change")
    assert code(await c.client.get("/categories/nowhere")) == (404, "category_not_found")


async def test_products_are_published_by_operators_only(catalog: CatalogUnderTest) -> None:
    c = catalog
    await c.add_category("steam", "Steam")
    body = {
        "name": "Steam 钱包充值卡 100元",
        "category_id": "steam",
        "kind": "gift_card",
        "delivery_mode": "auto",
        "face_value": 10_000,
    }
    seller = c.as_user("s-1", Role.SELLER)
    assert code(await c.client.post("/products", headers=seller, json=body)) == (403, "forbidden")
    operator = c.as_user(c.OPERATOR, Role.OPERATOR)
    created = await c.client.post(
        "/products", headers=operator, json={**body, "product_id": "steam-100"}
    )
    assert created.status_code == 201
    assert created.json() == {"product_id": "steam-100", "version": 1, "changed": True}
    same = await c.client.post(
        "/products", headers=operator, json={**body, "product_id": "steam-100"}
    )
    assert (same.status_code, same.json()["changed"]) == (200, False)
    updated = await c.ok(
        "PUT", "/products/steam-100", operator, json={**body, "usage_rules": "在Steam客户端兑换"}
    )
    assert updated == {"product_id": "steam-100", "version": 2, "changed": True}
    assert (await c.ok("GET", "/products/steam-100"))["usage_rules"] == "在Steam客户端兑换"

    nowhere = await c.client.post("/products", headers=operator, json={**body, "category_id": "x"})
    assert code(nowhere) == (404, "category_not_found")
    floats = await c.client.post("/products", headers=operator, json={**body, "face_value": 99.5})
    assert code(floats) == (422, "invalid_request")
    unbound = await c.client.post(
        "/products",
        headers=operator,
        json={**body, "buyer_fields": [{"name": "uid", "label": "UID"}]},
    )
    assert code(unbound) == (422, "invalid_request")
    assert code(await c.client.get("/products/nothing")) == (404, "product_not_found")


async def test_sellers_manage_their_own_offers(catalog: CatalogUnderTest) -> None:
    c = catalog
    await c.add_category("steam", "Steam")
    product_id = await c.publish("Steam 钱包充值卡 50元", "steam", face_value=5_000)
    offer_id = await c.list_offer("s-1", product_id, 4_900)
    buyer = c.as_user("b-1", Role.BUYER)
    terms = {"product_id": product_id, "unit_price": 4_800, "delivery_mode": "auto"}
    listing = await c.client.post(
        "/offers", headers=buyer, json={**terms, "max_quantity_per_order": 1}
    )
    assert code(listing) == (403, "forbidden")
    again = await c.client.post(
        "/offers",
        headers=c.as_user("s-1", Role.SELLER),
        json={**terms, "max_quantity_per_order": 1},
    )
    assert code(again) == (409, "offer_already_listed")
    other = c.as_user("s-2", Role.SELLER)
    stolen = await c.client.put(f"/offers/{offer_id}/price", headers=other, json={"unit_price": 1})
    assert code(stolen) == (403, "not_your_offer")
    zero = await c.client.put(
        f"/offers/{offer_id}/price", headers=c.as_user("s-1", Role.SELLER), json={"unit_price": 0}
    )
    assert code(zero) == (422, "invalid_request")
    mine = await c.ok("GET", "/sellers/me/offers", c.as_user("s-1", Role.SELLER))
    assert [(o["offer_id"], o["unit_price"], o["status"]) for o in mine] == [
        (offer_id, 4_900, "listed")
    ]

    operator = c.as_user(c.OPERATOR, Role.OPERATOR)
    delisted = await c.ok(
        "POST", f"/offers/{offer_id}/operator-delist", operator, json={"detail": "counterfeit"}
    )
    assert (delisted["status"], delisted["delist_reason"]) == ("delisted", "operator")
    relist = await c.client.post(
        "/offers",
        headers=c.as_user("s-1", Role.SELLER),
        json={**terms, "max_quantity_per_order": 1},
    )
    assert code(relist) == (403, "offer_delisted_by_operator")
    assert code(await c.client.get("/offers/nothing")) == (404, "offer_not_found")
