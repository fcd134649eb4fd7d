"""Idempotency records of `POST /orders`: one document per (buyer, key).

The unique index on `(buyer_id, idempotency_key)` decides, in one
single-document insert, which of two concurrent requests under the same key
places the order; the other reads the winner's record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.clock import Clock
from kami_events.event import EVENT_REGISTRY, Event
from kami_events.mongo import Document
from kami_ordering.adapters.ports import OrderRequest


class MongoOrderRequests:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock) -> None:
        self._requests: AsyncCollection[Document] = db["order_requests"]
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self._requests.create_index(
            [("buyer_id", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            name="buyer_idempotency_key_unique",
        )

    async def find(self, buyer_id: str, idempotency_key: str) -> OrderRequest | None:
        doc = await self._requests.find_one(
            {"buyer_id": buyer_id, "idempotency_key": idempotency_key}
        )
        return _request(doc) if doc else None

    async def claim(self, request: OrderRequest) -> OrderRequest:
        try:
            await self._requests.insert_one(_document(request, self._clock()))
        except DuplicateKeyError:
            existing = await self.find(request.buyer_id, request.idempotency_key)
            if existing is None:  # the unique index fired on something else
                raise
            return existing
        return request


def _document(request: OrderRequest, now: datetime) -> Document:
    return {
        "_id": request.order_id,
        "buyer_id": request.buyer_id,
        "idempotency_key": request.idempotency_key,
        "fingerprint": request.fingerprint,
        "created_at": now,
        "events": [
            {
                "event_type": event.event_type,
                "schema_version": event.schema_version,
                "payload": event.model_dump(mode="json"),
            }
            for event in request.events
        ],
    }


def _request(doc: Document) -> OrderRequest:
    return OrderRequest(
        buyer_id=doc["buyer_id"],
        idempotency_key=doc["idempotency_key"],
        fingerprint=doc["fingerprint"],
        order_id=str(doc["_id"]),
        events=tuple(_event(raw) for raw in doc["events"]),
    )


def _event(raw: dict[str, Any]) -> Event:
    model = EVENT_REGISTRY.lookup(raw["event_type"], int(raw["schema_version"]))
    return model.model_validate(raw["payload"])
