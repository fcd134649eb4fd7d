"""Every event the catalog consumed from other services, kept in arrival order.

Read models built from other services' events (stock, sales, seller standing
and reliability) are rebuilt by replaying this log: the producers' own
stores belong to them, and topics may be compacted or expire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.serialization import decode_document
from kami_events.store import duplicate_indexes


class ConsumedLog:
    MAX_ATTEMPTS = 50

    def __init__(self, database: AsyncDatabase[Document], *, clock: Clock = utc_now) -> None:
        self.events = database["consumed_events"]
        self._clock = clock
        # The last seq this process took: the next one is tried without reading
        # the highest, which on FerretDB 1.24 reads the whole log.
        self._last_seq: int | None = None
        # Concurrent handlers of one batch take seqs one after another, not
        # all the same one.
        self._seq_lock = asyncio.Lock()

    async def ensure_indexes(self) -> None:
        await self.events.create_index("seq", unique=True, name="seq_unique")

    async def record(self, envelope: Envelope[Any]) -> bool:
        """Keep `envelope` once (by event id); False if it was already kept.

        Its `seq` follows the last one this process took (the highest, read
        once), under a unique index: a collision with another process's seq
        reads the highest again. On FerretDB only a unique insert decides a race."""
        async with self._seq_lock:
            return await self._record(envelope)

    async def record_all(self, envelopes: Sequence[Envelope[Any]]) -> None:
        """Keep each of `envelopes` once, in their order: one `insert_many`
        when the seqs after this process's last are free, else one by one
        from the first refused (a redelivered event, or another process's seq)."""
        if not envelopes:
            return
        async with self._seq_lock:
            if self._last_seq is not None:
                first = self._last_seq + 1
                now = self._clock()
                try:
                    await self.events.insert_many(
                        [
                            self._row(envelope, first + offset, now)
                            for offset, envelope in enumerate(envelopes)
                        ],
                        ordered=True,
                    )
                    self._last_seq = first + len(envelopes) - 1
                    return
                except BulkWriteError as exc:
                    # Ordered: the rows before the first refused one are kept.
                    kept = min(duplicate_indexes(exc), default=0)
                    self._last_seq = first + kept - 1
                    envelopes = envelopes[kept:]
            for envelope in envelopes:
                await self._record(envelope)

    def _row(self, envelope: Envelope[Any], seq: int, received_at: datetime) -> Document:
        return {
            "_id": str(envelope.event_id),
            "seq": seq,
            "received_at": received_at,
            "envelope": envelope.to_document(),
        }

    async def _record(self, envelope: Envelope[Any]) -> bool:
        event_id = str(envelope.event_id)
        for _ in range(self.MAX_ATTEMPTS):
            if self._last_seq is None:
                last = await self.events.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
                self._last_seq = int(last["seq"]) if last else 0
            seq = self._last_seq + 1
            try:
                await self.events.insert_one(self._row(envelope, seq, self._clock()))
            except DuplicateKeyError:
                if await self.events.find_one({"_id": event_id}, {"_id": 1}) is not None:
                    return False  # kept before (a redelivery)
                self._last_seq = None  # another process took the seq
                continue
            self._last_seq = seq
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
