"""Read models derived from the orders' streams, in MongoDB.

- `orders`: the order's summary, for a buyer's order list and the saga gauges;
- `deadlines`: the order's next due time (indexed), which the deadline poller
  scans;
- `claims`: open after-sales claims, which hold an order's guarantee deadline;
- `settlements`: orders whose money was settled to the seller (`FundsSettled`),
  which decides where a refund is drawn from.

Two writers may sync one order at once (the consumer and the deadline poller,
or two replicas), and FerretDB 1.24's conditional updates are not atomic
(docs/storage.md): an older state could overwrite a newer one. So `orders`
and `deadlines` are written by inserts only, one document per order and
stream version (`<order id>:<version>`); the older versions are deleted
afterwards, and readers keep the newest version of an order when a stale one
is still there. Everything here can be rebuilt from the event store.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.mongo import Document
from kami_ordering.adapters.repository import LoadedOrder
from kami_ordering.domain.order import Deadline


@dataclass(frozen=True)
class OrderSummary:
    order_id: str
    state: str
    offer_id: str
    product_id: str
    seller_id: str
    quantity: int
    total: int
    currency: str
    delivery_mode: str
    placed_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OverdueSaga:
    order_id: str
    state: str
    deadline: str  # payment | delivery | guarantee
    due_at: datetime
    version: int


@dataclass(frozen=True)
class OrderPage:
    orders: list[OrderSummary]
    next_cursor: str | None


class InvalidCursor(ValueError):
    pass


def _version_id(order_id: str, version: int) -> str:
    return f"{order_id}:{version:09d}"


class MongoOrderViews:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._orders: AsyncCollection[Document] = db["orders"]
        self._deadlines: AsyncCollection[Document] = db["deadlines"]
        self._claims: AsyncCollection[Document] = db["claims"]

    async def ensure_indexes(self) -> None:
        await self._orders.create_index(
            [
                ("buyer_id", ASCENDING),
                ("placed_at", DESCENDING),
                ("order_id", DESCENDING),
                ("version", DESCENDING),
            ],
            name="buyer_newest_first",
        )
        await self._orders.create_index([("order_id", ASCENDING), ("version", ASCENDING)])
        await self._deadlines.create_index("due_at", name="due_at")
        await self._deadlines.create_index([("order_id", ASCENDING), ("version", ASCENDING)])
        await self._claims.create_index("order_id", name="order_id")

    async def sync(self, loaded: LoadedOrder, deadline: Deadline | None) -> None:
        order = loaded.order
        assert order.state is not None
        summary = {
            "order_id": order.id,
            "version": order.version,
            "buyer_id": order.buyer_id,
            "seller_id": order.seller_id,
            "offer_id": order.offer_id,
            "product_id": order.product_id,
            "state": order.state.value,
            "quantity": order.quantity,
            "total": order.total.amount,
            "currency": order.total.currency,
            "delivery_mode": order.delivery_mode.value,
            "placed_at": loaded.placed_at,
            "updated_at": loaded.updated_at,
        }
        due = {
            "order_id": order.id,
            "version": order.version,
            "state": order.state.value,
            "kind": deadline.kind.value if deadline else None,
            "due_at": deadline.due_at if deadline else None,
        }
        for collection, document in ((self._orders, summary), (self._deadlines, due)):
            await _supersede(collection, order.id, order.version, document)

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Orders with a due deadline and no open claim, soonest first. May name
        an order whose newer version has a later deadline (its stale row is
        removed when the poller syncs it)."""
        held = await self._held_orders()
        query: dict[str, Any] = {"due_at": {"$lte": now}}
        if held:
            query["order_id"] = {"$nin": sorted(held)}
        cursor = self._deadlines.find(query, {"order_id": 1}).sort("due_at", ASCENDING).limit(limit)
        return list(dict.fromkeys([str(doc["order_id"]) async for doc in cursor]))

    async def hold(self, order_id: str, ticket_id: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self._claims.insert_one({"_id": f"{order_id}:{ticket_id}", "order_id": order_id})

    async def release(self, order_id: str, ticket_id: str) -> None:
        await self._claims.delete_one({"_id": f"{order_id}:{ticket_id}"})

    async def count_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        async for row in await self._orders.aggregate(
            [{"$group": {"_id": "$state", "count": {"$sum": 1}}}]
        ):
            counts[str(row["_id"])] = int(row["count"])
        return counts

    async def count_past_deadline(self, before: datetime) -> int:
        return len(await self.past_deadline(before))

    async def past_deadline(self, before: datetime) -> list[OverdueSaga]:
        """Orders whose deadline passed before `before` (none held by a claim),
        most overdue first; an order's stale rows yield to its newest version."""
        held = await self._held_orders()
        query: dict[str, Any] = {"due_at": {"$lt": before}}
        if held:
            query["order_id"] = {"$nin": sorted(held)}
        newest: dict[str, Document] = {}
        async for doc in self._deadlines.find(query):
            order_id = str(doc["order_id"])
            if order_id not in newest or doc["version"] > newest[order_id]["version"]:
                newest[order_id] = doc
        for order_id, doc in list(newest.items()):
            # A stale row whose newer version is not overdue (it is deleted soon).
            newer = {"order_id": order_id, "version": {"$gt": doc["version"]}}
            if await self._deadlines.find_one(newer, {"_id": 1}):
                del newest[order_id]
        overdue = [
            OverdueSaga(
                order_id=order_id,
                state=str(doc["state"]),
                deadline=str(doc["kind"]),
                due_at=doc["due_at"],
                version=int(doc["version"]),
            )
            for order_id, doc in newest.items()
        ]
        return sorted(overdue, key=lambda saga: (saga.due_at, saga.order_id))

    async def list_for_buyer(self, buyer_id: str, limit: int, cursor: str | None) -> OrderPage:
        """The buyer's orders, newest first; `cursor` continues after the previous page."""
        after: tuple[datetime, str] | None = _decode_cursor(cursor) if cursor else None
        orders: list[OrderSummary] = []
        more = False
        while not more:
            query: dict[str, Any] = {"buyer_id": buyer_id}
            if after is not None:
                placed_at, order_id = after
                query["$or"] = [
                    {"placed_at": {"$lt": placed_at}},
                    {"placed_at": placed_at, "order_id": {"$lt": order_id}},
                ]
            found = self._orders.find(query).sort(
                [("placed_at", DESCENDING), ("order_id", DESCENDING), ("version", DESCENDING)]
            )
            docs = [doc async for doc in found.limit(2 * (limit + 1))]
            for doc in docs:
                if orders and orders[-1].order_id == doc["order_id"]:
                    continue  # an older version not yet deleted: the newest came first
                if len(orders) == limit:
                    more = True
                    break
                orders.append(_summary(doc))
            if len(docs) < 2 * (limit + 1) or not orders:
                break
            after = (orders[-1].placed_at, orders[-1].order_id)
        next_cursor = None
        if more:
            last = orders[-1]
            next_cursor = _encode_cursor(last.placed_at, last.order_id)
        return OrderPage(orders, next_cursor)

    async def _held_orders(self) -> set[str]:
        return {str(doc["order_id"]) async for doc in self._claims.find({}, {"order_id": 1})}


async def _supersede(
    collection: AsyncCollection[Document], order_id: str, version: int, document: Document
) -> None:
    """Insert the order's row at `version`, then delete its older rows; a writer
    that finds a newer row already there deletes its own instead. Whichever
    order the two writers' steps interleave in, the older row goes."""
    row_id = _version_id(order_id, version)
    # The same version twice is the same state: the first insert stands.
    with contextlib.suppress(DuplicateKeyError):
        await collection.insert_one({"_id": row_id, **document})
    await collection.delete_many({"order_id": order_id, "version": {"$lt": version}})
    if await collection.find_one({"order_id": order_id, "version": {"$gt": version}}, {"_id": 1}):
        await collection.delete_one({"_id": row_id})


class MongoSettlements:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._settlements: AsyncCollection[Document] = db["settlements"]

    async def record(self, order_id: str, payment_id: str, at: datetime) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self._settlements.insert_one(
                {"_id": order_id, "payment_id": payment_id, "settled_at": at}
            )

    async def is_settled(self, order_id: str) -> bool:
        return await self._settlements.find_one({"_id": order_id}, {"_id": 1}) is not None


def _summary(doc: Document) -> OrderSummary:
    return OrderSummary(
        order_id=str(doc["order_id"]),
        state=doc["state"],
        offer_id=doc["offer_id"],
        product_id=doc["product_id"],
        seller_id=doc["seller_id"],
        quantity=int(doc["quantity"]),
        total=int(doc["total"]),
        currency=doc["currency"],
        delivery_mode=doc["delivery_mode"],
        placed_at=doc["placed_at"],
        updated_at=doc["updated_at"],
    )


def _encode_cursor(placed_at: datetime, order_id: str) -> str:
    raw = json.dumps([placed_at.isoformat(), order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        placed_at, order_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(placed_at), str(order_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor(cursor) from exc
