"""Racing upserts of one missing document (FerretDB on PostgreSQL answers the
loser with E11000 where MongoDB retries it itself)."""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.mongo import Document, upsert_one, write_newer


async def test_forty_writers_upserting_one_new_document_all_succeed(
    mongo_db: AsyncDatabase[Document],
) -> None:
    docs = mongo_db["upsert_race"]
    for round_ in range(5):
        doc_id = f"bucket-{round_}"
        await asyncio.gather(
            *(upsert_one(docs, {"_id": doc_id}, {"$max": {"rev": n}}) for n in range(40))
        )
        # None raised; which `$max` wins a read-modify-write race is the
        # engine's business (FerretDB decides no update race, docs/storage.md).
        assert await docs.count_documents({"_id": doc_id}) == 1


async def test_write_newer_keeps_the_newest_version_whatever_order_writers_land_in(
    mongo_db: AsyncDatabase[Document],
) -> None:
    docs = mongo_db["newer_wins"]
    assert await write_newer(docs, "order-1", 2, {"state": "RESERVED"})
    assert not await write_newer(docs, "order-1", 1, {"state": "PLACED"})  # late and older
    assert not await write_newer(docs, "order-1", 2, {"state": "RESERVED"})  # the same again
    assert await write_newer(docs, "order-1", 3, {"state": "PAID"})
    assert await docs.find_one({"_id": "order-1"}) == {
        "_id": "order-1",
        "state": "PAID",
        "version": 3,
    }
    # Another writer made the document without the guard: any version is newer.
    await docs.insert_one({"_id": "order-2", "refunds": {"r1": 5}})
    assert await write_newer(docs, "order-2", 1, {"stage": "placed"}, guard="stage_version")
    assert await docs.find_one({"_id": "order-2"}) == {
        "_id": "order-2",
        "refunds": {"r1": 5},
        "stage": "placed",
        "stage_version": 1,
    }
