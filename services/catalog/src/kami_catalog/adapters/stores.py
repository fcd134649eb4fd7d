"""The catalog's two event stores.

`runtime.store` (collection `events`) holds products and offers: the outbox
relay publishes them to Kafka. The private store (collection
`private_events`) holds categories and reviews, which no other service
consumes: no relay reads it, so they never leave the catalog.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.clock import Clock, utc_now
from kami_events.mongo import Document
from kami_events.store import MongoEventStore

PRIVATE_COLLECTION = "private_events"


class PrivateEventStore(MongoEventStore):
    def __init__(
        self, database: AsyncDatabase[Document], *, producer: str, clock: Clock = utc_now
    ) -> None:
        super().__init__(database, producer=producer, clock=clock, collection=PRIVATE_COLLECTION)
