"""Keyword search over the real read models: Chinese and Latin queries,
ranking, filters, sorting and cursor pagination."""

from __future__ import annotations

from typing import Any

from kami_events.catalogue.inventory import StockChanged
from tests.integration.catalog.conftest import CatalogUnderTest
from tests.integration.catalog.shop import Shop, build_shop


async def search(c: CatalogUnderTest, **params: Any) -> dict[str, Any]:
    response = await c.client.get("/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def found(c: CatalogUnderTest, shop: Shop, **params: Any) -> list[str]:
    page = await search(c, limit=100, **params)
    return shop.names([item["product_id"] for item in page["items"]])


async def test_chinese_queries_find_the_right_products_in_the_right_order(
    catalog: CatalogUnderTest,
) -> None:
    shop = await build_shop(catalog)
    # Both words in the name first; 原神 only through its category next; products
    # with just one of the words (创世结晶, 王者荣耀 月卡) do not match.
    assert await found(catalog, shop, q="原神 月卡") == ["G1", "G3"]
    # Equally relevant: the best sellers first (3, 2 and 1 keys sold); 50元 is not 100.
    assert await found(catalog, shop, q="话费 100") == ["M2", "M3", "M1"]
    # Typed without spaces, across the space in the name.
    assert await found(catalog, shop, q="王者荣耀点券") == ["H1"]
    assert await found(catalog, shop, q="王者点券") == ["H1"]  # an alias
    # A category name finds everything filed under it.
    assert set(await found(catalog, shop, q="生活服务")) == {"M1", "M2", "M3", "M4", "V1"}
    # Full-width digits are the same digits.
    assert await found(catalog, shop, q="话费 １００") == ["M2", "M3", "M1"]

    page = await search(catalog, q="原神 月卡")
    assert page["sort"] == "relevance"
    first, second = page["items"]
    assert first["relevance"] > second["relevance"] > 0
    assert first["category_names"] == ["游戏娱乐", "原神"]
    assert first["min_price"] == 2800 and first["delivery_mode"] == "manual"


async def test_latin_queries_are_case_insensitive_words(catalog: CatalogUnderTest) -> None:
    shop = await build_shop(catalog)
    assert await found(catalog, shop, q="Tencent VIP") == ["V1"]
    assert await found(catalog, shop, q="vip 月卡") == ["V1"]
    assert await found(catalog, shop, q="genshin") == ["G1"]
    assert await found(catalog, shop, q="steam") == []


async def test_filters(catalog: CatalogUnderTest) -> None:
    shop = await build_shop(catalog)
    assert set(await found(catalog, shop, category="games")) == {"G1", "G2", "G3", "H1", "H2"}
    assert set(await found(catalog, shop, category="genshin")) == {"G1", "G2", "G3"}
    assert set(await found(catalog, shop, face_value_min=5000, face_value_max=10000)) == {
        "M1",
        "M2",
        "M3",
        "M4",
    }
    # Live manual offers: account top-ups. Out-of-stock or stockless auto offers
    # are hidden (V1, H2), and a product with no offer has no stock (G2).
    assert set(await found(catalog, shop, delivery_mode="manual")) == {"G1", "G3"}
    assert set(await found(catalog, shop, in_stock="true")) == {
        "G1",
        "G3",
        "H1",
        "M1",
        "M2",
        "M3",
        "M4",
    }
    assert set(await found(catalog, shop, price_min=2000, price_max=3000)) == {"G1", "G3"}
    # M1's cheapest offer (9600) is out of stock: its live price is 9800.
    assert set(await found(catalog, shop, q="话费", in_stock="true", price_max=9700)) == {
        "M2",
        "M4",
    }
    unknown = await catalog.client.get("/search", params={"category": "nowhere"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "category_not_found"
    inverted = await catalog.client.get("/search", params={"price_min": 5, "price_max": 1})
    assert inverted.status_code == 422
    assert inverted.json()["error"]["code"] == "invalid_price_range"


async def test_sorts(catalog: CatalogUnderTest) -> None:
    shop = await build_shop(catalog)
    tail = sorted(["M4", "V1"], key=lambda k: shop.products[k])
    assert await found(catalog, shop, category="life", sort="price_asc") == [
        "M4",
        "M2",
        "M3",
        "M1",
        "V1",  # no live offer: last
    ]
    assert await found(catalog, shop, category="life", sort="price_desc") == [
        "M1",
        "M3",
        "M2",
        "M4",
        "V1",
    ]
    assert await found(catalog, shop, category="life", sort="sales") == ["M2", "M3", "M1", *tail]
    assert await found(catalog, shop, category="life") == ["M2", "M3", "M1", *tail]
    assert await found(catalog, shop, category="life", sort="rating") == [
        "M1",
        "M3",
        "M2",
        *tail,
    ]
    # A keyword search sorted by price.
    assert await found(catalog, shop, q="话费 100", sort="price_asc") == ["M2", "M3", "M1"]


async def test_cursor_pagination_is_stable_and_complete(catalog: CatalogUnderTest) -> None:
    shop = await build_shop(catalog)
    for params in (
        {"category": "life", "sort": "price_asc"},
        {"category": "games", "sort": "sales"},
        {"q": "话费", "sort": "relevance"},
        {"q": "月卡", "sort": "price_desc"},
    ):
        everything = await found(catalog, shop, **params)
        pages: list[list[str]] = []
        cursor = None
        while True:
            page = await search(
                catalog, limit=2, **params, **({"cursor": cursor} if cursor else {})
            )
            pages.append(shop.names([i["product_id"] for i in page["items"]]))
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [name for page in pages for name in page] == everything, params
        assert all(len(page) == 2 for page in pages[:-1])

    first = await search(catalog, limit=2, category="life", sort="price_asc")
    assert shop.names([i["product_id"] for i in first["items"]]) == ["M4", "M2"]
    # A cheaper product arriving between pages lands on the first page, and
    # does not shift the second one (as an offset would).
    cheap = await catalog.publish("中国移动 话费充值卡 30元", "mobile-topup", face_value=3000)
    offer = await catalog.list_offer("s-a", cheap, 2900)
    await catalog.feed(StockChanged(offer_id=offer, available=9, reserved=0), producer="inventory")
    assert (await search(catalog, limit=1, category="life", sort="price_asc"))["items"][0][
        "product_id"
    ] == cheap
    second = await search(
        catalog, limit=2, category="life", sort="price_asc", cursor=first["next_cursor"]
    )
    assert shop.names([i["product_id"] for i in second["items"]]) == ["M3", "M1"]
    # A cursor belongs to its query, filters and order.
    for other in (
        {"category": "games", "sort": "price_asc"},
        {"category": "life", "sort": "sales"},
    ):
        response = await catalog.client.get(
            "/search", params={**other, "cursor": first["next_cursor"]}
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_cursor"
