"""The in-memory search index: postings kept in step with the read model."""

from __future__ import annotations

from typing import Any

from kami_catalog.adapters.search_index import Entry, ProductIndex, _key_function
from kami_catalog.domain.search import (
    NO_PRICE_ASC,
    SearchableText,
    SortOrder,
    parse_query,
    sort_key,
)


def doc(product_id: str, name: str, **fields: Any) -> dict[str, Any]:
    names = fields.pop("category_names", ["生活服务", "话费充值"])
    return {
        "_id": product_id,
        "name": name,
        "kind": "phone_topup",
        "category_id": "mobile-topup",
        "category_path": ["life", "mobile-topup"],
        "category_names": names,
        "terms": sorted(SearchableText(name=name, category_names=names).terms()),
        "face_value": 10_000,
        "min_price": None,
        "sort_price": NO_PRICE_ASC,
        "sort_price_desc": -1,
        "in_stock": False,
        "delivery_modes": [],
        "sales": 0,
        "rating_milli": 0,
        **fields,
    }


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["_id"] for row in rows]


def search(index: ProductIndex, q: str | None, order: SortOrder, **filters: Any) -> list[str]:
    return ids(index.search(parse_query(q), filters, order, None, 100))


def test_a_query_finds_products_having_every_term() -> None:
    index = ProductIndex()
    index.put(doc("m", "中国移动 话费充值卡 100元", sales=1))
    index.put(doc("u", "中国联通 话费充值卡 100元", sales=3))
    index.put(doc("m50", "中国移动 话费充值卡 50元", sales=9))
    assert search(index, "话费 100", SortOrder.RELEVANCE) == ["u", "m"]
    assert search(index, "移动 话费", SortOrder.SALES) == ["m50", "m"]
    assert search(index, "电信", SortOrder.RELEVANCE) == []
    assert search(index, None, SortOrder.SALES) == ["m50", "u", "m"]


def test_republishing_moves_a_product_to_its_new_terms() -> None:
    index = ProductIndex()
    index.put(doc("p", "中国移动 话费充值卡 100元"))
    index.put(doc("p", "中国电信 话费充值卡 100元"))
    assert search(index, "移动", SortOrder.RELEVANCE) == []
    assert search(index, "电信", SortOrder.RELEVANCE) == ["p"]
    index.remove("p")
    assert search(index, "话费", SortOrder.RELEVANCE) == [] and len(index) == 0


def test_filters_and_keyset_pages() -> None:
    index = ProductIndex()
    for n, price in enumerate([900, 500, 700, None]):
        priced = (
            {
                "min_price": price,
                "sort_price": price,
                "sort_price_desc": price,
                "in_stock": True,
                "delivery_modes": ["auto"],
            }
            if price
            else {}
        )
        index.put(doc(f"p{n}", f"中国移动 话费 {n}", face_value=1_000 * (n + 1), **priced))
    assert search(index, None, SortOrder.PRICE_ASC) == ["p1", "p2", "p0", "p3"]
    assert search(index, None, SortOrder.PRICE_ASC, in_stock=True, price=(600, None)) == [
        "p2",
        "p0",
    ]
    assert search(index, None, SortOrder.PRICE_ASC, face_value=(2_000, 3_000)) == ["p1", "p2"]
    assert search(index, None, SortOrder.PRICE_ASC, delivery_mode="manual") == []
    assert search(index, None, SortOrder.PRICE_ASC, category="games") == []
    first = index.search(parse_query(None), {}, SortOrder.PRICE_ASC, None, 2)
    after = sort_key(SortOrder.PRICE_ASC, first[-1])
    rest = index.search(parse_query(None), {}, SortOrder.PRICE_ASC, after, 10)
    assert ids(first) + ids(rest) == ["p1", "p2", "p0", "p3"]
    # A price change moves the product in the browsing order; removal drops it.
    index.put(doc("p1", "中国移动 话费 1", min_price=950, sort_price=950, in_stock=True))
    assert search(index, None, SortOrder.PRICE_ASC) == ["p2", "p0", "p1", "p3"]
    index.remove("p2")
    assert search(index, None, SortOrder.PRICE_ASC) == ["p0", "p1", "p3"]


def test_category_names_match_through_the_products_path() -> None:
    index = ProductIndex()
    index.put(doc("p", "中国移动 100元", category_names=["生活服务", "话费充值"]))
    index.put(doc("q", "腾讯视频 月卡", category_names=["生活服务", "话费充值"]))
    assert sorted(search(index, "话费", SortOrder.RELEVANCE)) == ["p", "q"]
    (row,) = index.search(parse_query("移动 话费"), {}, SortOrder.RELEVANCE, None, 10)
    assert row["_id"] == "p" and row["relevance"] > 0
    # The category is renamed: its products are re-put with the new names.
    index.put(doc("p", "中国移动 100元", category_names=["生活缴费", "手机充值"]))
    index.put(doc("q", "腾讯视频 月卡", category_names=["生活缴费", "手机充值"]))
    assert search(index, "话费", SortOrder.RELEVANCE) == []
    assert sorted(search(index, "手机 充值", SortOrder.RELEVANCE)) == ["p", "q"]
    assert search(index, "手机 充值", SortOrder.RELEVANCE, category="mobile-topup") != []


def test_the_index_orders_exactly_as_the_cursor_keys_do() -> None:
    entry = Entry.of(doc("p", "中国移动 话费 100元", sales=7, rating_milli=4_500, sort_price=990))
    for order in SortOrder:
        as_document = {**entry.as_document(relevance=42)}
        assert _key_function(order)(entry, 42) == sort_key(order, as_document), order
