"""Search rules: tokenizing Chinese and Latin text, relevance, cursors."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.search import (
    SearchableText,
    SortOrder,
    decode_cursor,
    effective_order,
    encode_cursor,
    index_terms,
    parse_query,
    relevance,
    sort_key,
)


def test_chinese_text_is_indexed_as_bigrams_and_characters() -> None:
    terms = index_terms("原神 空月祝福 月卡")
    assert {"原神", "空月", "月祝", "祝福", "月卡"} <= terms
    assert {"原", "神", "卡"} <= terms
    # Across the space between two Chinese runs, for queries typed without spaces.
    assert {"神空", "福月"} <= terms
    assert "原神空" not in terms


def test_latin_words_and_numbers_are_lowercase_tokens() -> None:
    terms = index_terms("Steam 钱包充值卡 100元")
    assert {"steam", "100", "钱包", "充值", "元"} <= terms
    assert "Steam" not in terms


def test_full_width_characters_fold_to_half_width() -> None:
    assert index_terms("ＳＴＥＡＭ １００") == {"steam", "100"}
    assert parse_query("Ｓｔｅａｍ").terms == ("steam",)


def test_a_query_needs_every_bigram_and_word() -> None:
    query = parse_query("原神 月卡")
    assert query.segments == ("原神", "月卡")
    assert query.terms == ("原神", "月卡")
    assert parse_query("话费 100").terms == ("话费", "100")
    assert parse_query("王者荣耀点券").terms == ("王者", "者荣", "荣耀", "耀点", "点券")
    assert parse_query("卡").terms == ("卡",)
    assert parse_query("  ").empty
    assert parse_query("!!!").empty


def test_an_overlong_query_is_refused() -> None:
    with pytest.raises(Rejected) as caught:
        parse_query("原" * 101)
    assert caught.value.code == "query_too_long"


def test_a_match_in_the_name_outranks_one_in_the_category() -> None:
    query = parse_query("原神 月卡")
    in_name = SearchableText(name="原神 空月祝福 月卡", category_names=["游戏娱乐", "原神"])
    via_category = SearchableText(name="空月祝福 月卡 国际服", category_names=["游戏娱乐", "原神"])
    via_alias = SearchableText(name="空月祝福 三十天", aliases=["原神月卡"])
    scores = [relevance(query, p) for p in (in_name, via_category, via_alias)]
    assert scores[0] > scores[1] > 0
    assert scores[0] > scores[2] > 0
    # Every product the query matches has all its terms somewhere.
    for product in (in_name, via_category, via_alias):
        assert set(query.terms) <= product.terms()


def test_equal_names_but_for_the_brand_score_the_same() -> None:
    query = parse_query("话费 100")
    mobile = SearchableText(name="中国移动 话费充值卡 100元")
    unicom = SearchableText(name="中国联通 话费充值卡 100元")
    assert relevance(query, mobile) == relevance(query, unicom) > 0


def test_the_exact_name_wins() -> None:
    query = parse_query("王者荣耀 点券 100")
    exact = SearchableText(name="王者荣耀 点券 100")
    longer = SearchableText(name="王者荣耀 点券 100 礼包")
    assert relevance(query, exact) > relevance(query, longer)


def test_relevance_without_a_query_means_best_sellers() -> None:
    empty = parse_query(None)
    assert effective_order(None, empty) is SortOrder.SALES
    assert effective_order(SortOrder.RELEVANCE, empty) is SortOrder.SALES
    assert effective_order(None, parse_query("原神")) is SortOrder.RELEVANCE
    assert effective_order(SortOrder.PRICE_ASC, parse_query("原神")) is SortOrder.PRICE_ASC


def test_sort_keys_order_ascending_in_the_requested_sequence() -> None:
    rows = [
        {"_id": "b", "sales": 5, "relevance": 90, "sort_price": 100, "rating_milli": 4000},
        {"_id": "a", "sales": 5, "relevance": 90, "sort_price": 100, "rating_milli": 4000},
        {"_id": "c", "sales": 9, "relevance": 60, "sort_price": 50, "rating_milli": 5000},
    ]
    by: dict[SortOrder, list[dict[str, Any]]] = {}
    for order in (SortOrder.RELEVANCE, SortOrder.SALES, SortOrder.PRICE_ASC, SortOrder.RATING):
        by[order] = sorted(rows, key=partial(sort_key, order))
    assert [r["_id"] for r in by[SortOrder.RELEVANCE]] == ["a", "b", "c"]
    assert [r["_id"] for r in by[SortOrder.SALES]] == ["c", "a", "b"]
    assert [r["_id"] for r in by[SortOrder.PRICE_ASC]] == ["c", "a", "b"]
    assert [r["_id"] for r in by[SortOrder.RATING]] == ["c", "a", "b"]


def test_cursors_round_trip_and_refuse_tampering() -> None:
    cursor = encode_cursor(SortOrder.SALES, "f1", [12, "p-1"])
    assert decode_cursor(cursor, SortOrder.SALES, "f1") == [12, "p-1"]
    for bad_order, bad_print, bad_cursor in [
        (SortOrder.PRICE_ASC, "f1", cursor),  # another order
        (SortOrder.SALES, "f2", cursor),  # another query or filters
        (SortOrder.SALES, "f1", "not-a-cursor"),
        (SortOrder.SALES, "f1", encode_cursor(SortOrder.SALES, "f1", ["12", "p-1"])),
        (SortOrder.SALES, "f1", encode_cursor(SortOrder.SALES, "f1", [12])),
    ]:
        with pytest.raises(Rejected) as caught:
            decode_cursor(bad_cursor, bad_order, bad_print)
        assert caught.value.code == "invalid_cursor"
