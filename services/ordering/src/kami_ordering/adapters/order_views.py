"""Read models derived from the orders' streams, in MongoDB.

- `orders`: the order's summary (`_id` = order id), for a buyer's order list
  and the saga gauges;
- `deadlines`: the order's next due time (`_id` = order id), only while it has
  one, which the deadline poller reads;
- `claims`: open after-sales claims, which hold an order's guarantee deadline;
- `settlements`: orders whose money was settled to the seller (`FundsSettled`),
  which decides where a refund is drawn from.

Every write is by `_id` (on FerretDB 1.24 any other filter reads the whole
collection), and the deadlines hold only open deadlines, so what the poller
reads each second stays small. A sync does not overwrite a later version of
the order that has landed; two syncs that overlap may still land out of
order (FerretDB decides no update race), so `kami_ordering.handlers` checks
the order's stream after each sync and writes again when it moved on. A
deadline deleted by a newer state may come back from an older sync landing
after it; the poller then fires it, the order finds nothing due, and its
sync deletes it again.
Everything here can be rebuilt from the event store.
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

from kami_events.mongo import Document, write_newer
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


class MongoOrderViews:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._orders: AsyncCollection[Document] = db["orders"]
        self._deadlines: AsyncCollection[Document] = db["deadlines"]
        self._claims: AsyncCollection[Document] = db["claims"]

    async def ensure_indexes(self) -> None:
        await self._orders.create_index(
            [("buyer_id", ASCENDING), ("placed_at", DESCENDING), ("order_id", DESCENDING)],
            name="buyer_newest_first",
        )
        await self._deadlines.create_index("due_at", name="due_at")
        await self._claims.create_index("order_id", name="order_id")

    async def sync(self, loaded: LoadedOrder, deadline: Deadline | None) -> None:
        """Write the order's summary and deadline, unless they already show
        this version of the order or a later one."""
        order = loaded.order
        assert order.state is not None
        await write_newer(
            self._orders,
            order.id,
            order.version,
            {
                "order_id": order.id,
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
            },
        )
        if deadline is None:
            await self._deadlines.delete_one({"_id": order.id, "version": {"$lt": order.version}})
            return
        await write_newer(
            self._deadlines,
            order.id,
            order.version,
            {
                "order_id": order.id,
                "state": order.state.value,
                "kind": deadline.kind.value,
                "due_at": deadline.due_at,
            },
        )

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Orders with a due deadline and no open claim, soonest first."""
        held = await self._held_orders()
        query: dict[str, Any] = {"due_at": {"$lte": now}}
        if held:
            query["order_id"] = {"$nin": sorted(held)}
        cursor = self._deadlines.find(query, {"order_id": 1}).sort("due_at", ASCENDING).limit(limit)
        return [str(doc["order_id"]) async for doc in cursor]

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
        most overdue first."""
        held = await self._held_orders()
        query: dict[str, Any] = {"due_at": {"$lt": before}}
        if held:
            query["order_id"] = {"$nin": sorted(held)}
        newest = {str(doc["order_id"]): doc async for doc in self._deadlines.find(query)}
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
        query: dict[str, Any] = {"buyer_id": buyer_id}
        if cursor:
            placed_at, order_id = _decode_cursor(cursor)
            query["$or"] = [
                {"placed_at": {"$lt": placed_at}},
                {"placed_at": placed_at, "order_id": {"$lt": order_id}},
            ]
        found = self._orders.find(query).sort([("placed_at", DESCENDING), ("order_id", DESCENDING)])
        docs = [doc async for doc in found.limit(limit + 1)]
        orders = [_summary(doc) for doc in docs[:limit]]
        more = len(docs) > limit
        next_cursor = None
        if more:
            last = orders[-1]
            next_cursor = _encode_cursor(last.placed_at, last.order_id)
        return OrderPage(orders, next_cursor)

    async def _held_orders(self) -> set[str]:
        return {str(doc["order_id"]) async for doc in self._claims.find({}, {"order_id": 1})}


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
