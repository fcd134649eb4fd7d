"""Seeding the catalogue from a starter file, through the operator commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kami_catalog.seed import (
    SeedError,
    load_catalogue,
    parse_catalogue,
    seed_catalogue,
    seeded_product_id,
)
from kami_events.catalogue.catalog import ProductKind, ProductPublished
from kami_events.catalogue.common import DeliveryMode
from tests.unit.catalog.fakes import make_catalog

STARTER: dict[str, Any] = {
    "categories": {
        "games": {"name": "游戏娱乐", "children": {"genshin": "原神", "steam": "Steam"}},
        "life": {"name": "生活服务", "children": {"mobile-topup": "话费充值"}},
    },
    "products": [
        {
            "category": "genshin",
            "name": "原神 空月祝福 月卡",
            "aliases": ["原神月卡"],
            "face_value_fen": 3000,
            "validity_days": 365,
            "scope": "中国大陆官服",
            "usage_rules": "兑换后30天内每日登录领取",
            "binds_to_account": True,
            "delivery_mode": "manual",
            "buyer_fields": [
                {"name": "uid", "label": "游戏UID", "pattern": "^[1-9][0-9]{8}$"},
                {"name": "server", "label": "服务器", "choices": ["天空岛", "世界树"]},
            ],
        },
        {
            "category": "mobile-topup",
            "name": "中国移动 话费充值卡 100元",
            "aliases": ["移动话费"],
            "face_value_fen": 10000,
            "validity_days": 365,
            "scope": "全国通用",
            "usage_rules": "拨打10086充值",
            "binds_to_account": False,
            "delivery_mode": "auto",
            "buyer_fields": [],
        },
    ],
}


def test_the_starter_format_becomes_categories_and_product_specs() -> None:
    seed = parse_catalogue(STARTER)
    assert [(c.slug, c.parent_id) for c in seed.categories] == [
        ("games", None),
        ("genshin", "games"),
        ("steam", "games"),
        ("life", None),
        ("mobile-topup", "life"),
    ]
    genshin, topup = seed.products
    assert genshin.spec.kind is ProductKind.GAME_POINTS  # from its root category
    assert topup.spec.kind is ProductKind.PHONE_TOPUP
    assert genshin.spec.delivery_mode is DeliveryMode.MANUAL
    assert [f.name for f in genshin.spec.buyer_fields] == ["uid", "server"]
    assert genshin.product_id == seeded_product_id("原神  空月祝福 月卡")


def test_a_broken_file_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="categories"):
        parse_catalogue({"products": []})
    broken = {**STARTER, "products": [{"category": "genshin"}]}
    with pytest.raises(SeedError, match="product #1"):
        parse_catalogue(broken)
    path = tmp_path / "catalogue.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(SeedError, match="cannot read"):
        load_catalogue(path)
    path.write_text(json.dumps(STARTER, ensure_ascii=False), encoding="utf-8")
    assert len(load_catalogue(path).products) == 2


async def test_seeding_publishes_each_product_once() -> None:
    catalog = make_catalog()
    seed = parse_catalogue(STARTER)
    first = await seed_catalogue(catalog.handlers, seed)
    assert (first.categories_added, first.products_published) == (5, 2)
    again = await seed_catalogue(catalog.handlers, seed)
    assert (again.categories_added, again.categories_changed) == (0, 0)
    assert (again.products_published, again.products_unchanged) == (0, 2)
    published = [e.payload for e in catalog.store.committed]
    assert [type(e) for e in published] == [ProductPublished, ProductPublished]

    renamed = json.loads(json.dumps(STARTER))
    renamed["categories"]["life"]["name"] = "生活缴费"
    renamed["categories"]["games"]["children"].pop("steam")
    renamed["categories"]["life"]["children"]["steam"] = "Steam"
    report = await seed_catalogue(catalog.handlers, parse_catalogue(renamed))
    assert report.categories_changed == 2
    steam = await catalog.handlers.categories.get("steam")
    assert steam is not None and steam.parent_id == "life"
