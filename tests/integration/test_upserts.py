"""Racing upserts of one missing document (FerretDB on PostgreSQL answers the
loser with E11000 where MongoDB retries it itself)."""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.mongo import Document, upsert_one


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
