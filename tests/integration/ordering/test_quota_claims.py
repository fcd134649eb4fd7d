"""Ordering's quota claims on the real FerretDB: the limits hold under a race,
and the short "exhausted" memo answers losers without the database yet never
outlives a slot given back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.clock import ManualClock, ManualMonotonic
from kami_events.mongo import Document
from kami_ordering.adapters.quotas import ClaimResult, MongoQuotaClaims, flash_sale_quota

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


async def test_a_race_takes_no_more_slots_than_the_cap_or_a_buyer_may(
    mongo_db: AsyncDatabase[Document],
) -> None:
    claims = MongoQuotaClaims(mongo_db, ManualClock(T0))
    await claims.ensure_indexes()
    quota = flash_sale_quota("sale-1", stock_cap=3, per_buyer_limit=1)

    results = await asyncio.gather(
        *(claims.claim(quota, f"buyer-{n % 4}", f"order-{n}", 1) for n in range(12))
    )

    assert results.count(ClaimResult.CLAIMED) == 3
    slots = await claims.slots(quota.quota_id)
    totals = [slot for slot in slots if slot["slot"] == "total"]
    buyers = [slot for slot in slots if slot["slot"] == "buyer"]
    assert len(totals) == 3
    assert len({slot["buyer_id"] for slot in buyers}) == len(buyers) == 3
    assert {slot["order_id"] for slot in totals} == {slot["order_id"] for slot in buyers}


async def test_the_exhausted_memo_lapses_and_a_release_here_ends_it_at_once(
    mongo_db: AsyncDatabase[Document],
) -> None:
    monotonic = ManualMonotonic()
    claims = MongoQuotaClaims(mongo_db, ManualClock(T0), monotonic=monotonic)
    await claims.ensure_indexes()
    quota = flash_sale_quota("sale-2", stock_cap=1, per_buyer_limit=1)
    assert await claims.claim(quota, "buyer-a", "order-a", 1) is ClaimResult.CLAIMED
    assert await claims.claim(quota, "buyer-b", "order-b", 1) is ClaimResult.EXHAUSTED

    # Another process gives the slot back: this one still says exhausted
    # until its memo lapses, and leaves no slot of the refused order behind.
    await mongo_db["quota_claims"].delete_many({"order_id": "order-a"})
    assert await claims.claim(quota, "buyer-b", "order-b", 1) is ClaimResult.EXHAUSTED
    assert await claims.slots(quota.quota_id) == []
    monotonic.now += MongoQuotaClaims.EXHAUSTED_MEMO_SECONDS
    assert await claims.claim(quota, "buyer-b", "order-b", 1) is ClaimResult.CLAIMED

    # Sold out again; this process's own release ends the memo at once.
    assert await claims.claim(quota, "buyer-c", "order-c", 1) is ClaimResult.EXHAUSTED
    assert await claims.release(quota.quota_id, "order-b") == 2
    assert await claims.claim(quota, "buyer-c", "order-c", 1) is ClaimResult.CLAIMED


async def test_too_few_free_slots_refuse_a_larger_order_but_not_a_smaller_one(
    mongo_db: AsyncDatabase[Document],
) -> None:
    claims = MongoQuotaClaims(mongo_db, ManualClock(T0))
    await claims.ensure_indexes()
    quota = flash_sale_quota("sale-3", stock_cap=3, per_buyer_limit=3)
    assert await claims.claim(quota, "buyer-a", "order-a", 2) is ClaimResult.CLAIMED
    assert await claims.claim(quota, "buyer-b", "order-b", 2) is ClaimResult.EXHAUSTED
    assert not claims.known_exhausted(quota.quota_id)
    assert await claims.claim(quota, "buyer-b", "order-c", 1) is ClaimResult.CLAIMED
    assert {slot["order_id"] for slot in await claims.slots(quota.quota_id)} == {
        "order-a",
        "order-c",
    }
