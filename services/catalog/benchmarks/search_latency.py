"""Search latency over a large catalogue: prints p50/p99 per query.

    uv run python services/catalog/benchmarks/search_latency.py --products 100000

Fills a scratch database (dropped afterwards unless --keep) with synthetic
products whose read-model documents have the fields the projection writes
(terms from the same tokenizer, category paths and names, offer summaries),
inserted in bulk: the benchmark measures search, not the projection's
throughput. Loads the in-memory search index from it as the service does at
start, then runs each query `--rounds` times through `CatalogQueries.search`,
the code behind `GET /search`, against the server named by KAMI_MONGODB_URI.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

from kami_catalog.adapters.projections import CatalogReadModels
from kami_catalog.adapters.queries import CatalogQueries, SearchRequest
from kami_catalog.adapters.search_index import ProductIndex
from kami_catalog.domain.search import NO_PRICE_ASC, NO_PRICE_DESC, SearchableText, SortOrder
from kami_events.catalogue.common import DeliveryMode
from kami_events.mongo import Document, connect
from kami_events.settings import ServiceSettings

ROOTS = {"games": "游戏娱乐", "life": "生活服务", "education": "教育课程"}
BRANDS = {
    "games": [
        "原神",
        "王者荣耀",
        "和平精英",
        "Steam",
        "网易一卡通",
        "英雄联盟",
        "崩坏星穹铁道",
        "梦幻西游",
    ],
    "life": [
        "中国移动",
        "中国联通",
        "中国电信",
        "腾讯视频",
        "爱奇艺",
        "优酷",
        "QQ音乐",
        "瑞幸咖啡",
    ],
    "education": ["新东方", "有道精品课", "学而思", "粉笔教育", "中公教育"],
}
KINDS = {
    "games": ["点券", "月卡", "钻石", "充值卡", "礼包", "通行证"],
    "life": ["话费充值卡", "VIP会员 月卡", "VIP会员 年卡", "饮品券", "绿钻豪华版"],
    "education": ["网课 兑换码", "课程 兑换码", "题库 会员"],
}
DENOMINATIONS = [10, 30, 50, 100, 200, 300, 500, 648, 1000]
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("原神 月卡", {}),
    ("话费 100", {}),
    ("王者荣耀点券", {}),
    ("会员 年卡", {}),
    ("steam", {}),
    ("兑换码", {"in_stock": True}),
    ("中国移动 话费", {"sort": SortOrder.PRICE_ASC}),
    ("", {"category": "games", "sort": SortOrder.SALES}),
    ("", {"category": "life", "sort": SortOrder.PRICE_ASC, "in_stock": True}),
    ("", {"face_value_min": 5_000, "face_value_max": 10_000, "sort": SortOrder.RATING}),
]


def categories() -> Iterator[Document]:
    for root, name in ROOTS.items():
        yield {"_id": root, "name": name, "parent_id": None, "path": [root], "depth": 0}
        for index, brand in enumerate(BRANDS[root]):
            slug = f"{root}-{index}"
            yield {"_id": slug, "name": brand, "parent_id": root, "path": [root, slug], "depth": 1}


def product(rng: random.Random) -> Document:
    root = rng.choice(list(ROOTS))
    index = rng.randrange(len(BRANDS[root]))
    brand, kind = BRANDS[root][index], rng.choice(KINDS[root])
    amount = rng.choice(DENOMINATIONS)
    name = f"{brand} {kind} {amount}元 {rng.choice(['', '官方', '秒发', '全国'])}".strip()
    category = f"{root}-{index}"
    names = [ROOTS[root], brand]
    aliases = [f"{brand}{kind}"]
    offers = rng.choice([0, 0, 1, 2, 3, 5])
    price = amount * 100 - rng.randrange(0, max(1, amount * 5))
    rating_count = rng.choice([0, 0, 3, 10, 40])
    rating_sum = rating_count * rng.choice([3, 4, 5])
    return {
        "_id": str(uuid4()),
        "name": name,
        "kind": "game_points" if root == "games" else "other",
        "category_id": category,
        "category_path": [root, category],
        "category_names": names,
        "aliases": aliases,
        "brand": brand,
        "face_value": amount * 100,
        "delivery_mode": DeliveryMode.AUTO.value,
        "terms": sorted(
            SearchableText(name=name, aliases=aliases, brand=brand, category_names=names).terms()
        ),
        "live_offers": offers,
        "in_stock": offers > 0,
        "min_price": price if offers else None,
        "sort_price": price if offers else NO_PRICE_ASC,
        "sort_price_desc": price if offers else NO_PRICE_DESC,
        "stock": offers * rng.randrange(1, 50),
        "delivery_modes": [DeliveryMode.AUTO.value] if offers else [],
        "sales": int(rng.paretovariate(1.2)) - 1,
        "rating_sum": rating_sum,
        "rating_count": rating_count,
        "rating_milli": rating_sum * 1000 // rating_count if rating_count else 0,
    }


async def main(count: int, rounds: int, keep: bool) -> None:
    settings = ServiceSettings(service_name="catalog-bench")
    client = connect(settings.mongodb_uri, app_name="kami-catalog-bench")
    database = f"kami_bench_catalog_{uuid4().hex[:8]}"
    read_models = CatalogReadModels(client[database])
    try:
        await read_models.ensure_indexes()
        await read_models.categories.insert_many(list(categories()))
        rng = random.Random(20261124)  # noqa: S311 - synthetic data, not security
        started = time.perf_counter()
        for offset in range(0, count, 1_000):
            batch = [product(rng) for _ in range(min(1_000, count - offset))]
            await read_models.products.insert_many(batch)
        print(f"{count} products inserted in {time.perf_counter() - started:.0f}s ({database})")

        index = ProductIndex()
        rss_before = _rss_mb()
        started = time.perf_counter()
        await index.load(read_models.products)
        print(
            f"search index of {len(index)} products loaded in "
            f"{time.perf_counter() - started:.1f}s, ~{_rss_mb() - rss_before:.0f} MB"
        )
        queries = CatalogQueries(read_models, index)
        every: list[float] = []
        print(f"{'query':<44} {'hits':>5} {'p50 ms':>8} {'p99 ms':>8}")
        for text, filters in QUERIES:
            request = SearchRequest(q=text or None, limit=20, **filters)
            page = await queries.search(request)  # warm up
            samples = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                await queries.search(request)
                samples.append((time.perf_counter() - t0) * 1000)
            every.extend(samples)
            label = f"{text!r} {filters}" if filters else repr(text)
            print(
                f"{label[:44]:<44} {len(page.items):>5} "
                f"{statistics.median(samples):>8.1f} {_p99(samples):>8.1f}"
            )
        print(f"{'all queries':<44} {'':>5} {statistics.median(every):>8.1f} {_p99(every):>8.1f}")
    finally:
        if not keep:
            await client.drop_database(database)
        await client.close()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    asyncio.run(main(args.products, args.rounds, args.keep))
