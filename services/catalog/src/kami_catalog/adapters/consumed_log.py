"""Every event the catalog consumed from other services, kept in arrival order.

Read models built from other services' events (stock, sales, seller standing
and reliability) are rebuilt by replaying this log: the producers' own
stores belong to them, and topics may be compacted or expire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.serialization import decode_document


class ConsumedLog:
    MAX_ATTEMPTS = 50

    def __init__(self, database: AsyncDatabase[Document], *, clock: Clock = utc_now) -> None:
        self.events = database["consumed_events"]
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self.events.create_index("seq", unique=True, name="seq_unique")

    async def record(self, envelope: Envelope[Any]) -> bool:
        """Keep `envelope` once (by event id); False if it was already kept.

        Its `seq` is the highest + 1, taken under a unique index and retried on
        a collision: on FerretDB only a unique insert decides a race."""
        event_id = str(envelope.event_id)
        for _ in range(self.MAX_ATTEMPTS):
            if await self.events.find_one({"_id": event_id}, {"_id": 1}) is not None:
                return False
            last = await self.events.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
            try:
                await self.events.insert_one(
                    {
                        "_id": event_id,
                        "seq": (int(last["seq"]) if last else 0) + 1,
                        "received_at": self._clock(),
                        "envelope": envelope.to_document(),
                    }
                )
            except DuplicateKeyError:
                continue  # kept meanwhile (checked above), or the seq was taken
            return True
        raise RuntimeError(f"no free seq for {event_id} after {self.MAX_ATTEMPTS} attempts")

    async def replay(self, batch_size: int = 500) -> AsyncIterator[Envelope[Any]]:
        """Every kept event, in arrival order."""
        after = 0
        while True:
            batch = [
                doc
                async for doc in self.events.find({"seq": {"$gt": after}})
                .sort("seq", ASCENDING)
                .limit(batch_size)
            ]
            if not batch:
                return
            for doc in batch:
                yield decode_document(doc["envelope"])
            after = int(batch[-1]["seq"])
