"""The order timeline's record of other services' events (by correlation id).

Ordering's own events are read from its event store; what inventory, payment,
delivery and aftersales said about an order is recorded here as ordering
consumes it: one row per event (`_id` = event id, so a redelivery is a no-op),
holding only a short summary, never the payload.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.envelope import Envelope
from kami_events.mongo import Document, InsertGroup
from kami_ordering.domain.timeline import summarize


@dataclass(frozen=True)
class TimelineEntry:
    event_id: str
    event_type: str
    producer: str
    occurred_at: datetime
    summary: str


def entry_of(envelope: Envelope[Any]) -> TimelineEntry:
    return TimelineEntry(
        event_id=str(envelope.event_id),
        event_type=envelope.event_type,
        producer=envelope.producer,
        occurred_at=envelope.occurred_at,
        summary=summarize(envelope.payload),
    )


class MongoTimeline:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._entries: AsyncCollection[Document] = db["timeline"]
        # Entries of a consumed batch's events go in one write.
        self._inserts = InsertGroup(self._entries)

    async def ensure_indexes(self) -> None:
        await self._entries.create_index(
            [("order_id", ASCENDING), ("occurred_at", ASCENDING)], name="order_time"
        )

    async def record(self, order_id: str, envelope: Envelope[Any]) -> None:
        entry = entry_of(envelope)
        # A DuplicateKeyError: recorded when this message was first delivered.
        with contextlib.suppress(DuplicateKeyError):
            await self._inserts.insert(
                {
                    "_id": entry.event_id,
                    "order_id": order_id,
                    "event_type": entry.event_type,
                    "producer": entry.producer,
                    "occurred_at": entry.occurred_at,
                    "summary": entry.summary,
                }
            )

    async def entries(self, order_id: str) -> list[TimelineEntry]:
        cursor = self._entries.find({"order_id": order_id}).sort("occurred_at", ASCENDING)
        return [
            TimelineEntry(
                event_id=str(doc["_id"]),
                event_type=doc["event_type"],
                producer=doc["producer"],
                occurred_at=doc["occurred_at"],
                summary=doc["summary"],
            )
            async for doc in cursor
        ]
