"""Delivery's own collections, beside the event store (database `kami_delivery`):

| collection | `_id` | what |
|---|---|---|
| `vault` | key id | a delivered key, AES-256-GCM sealed, with its owner and order |
| `delivery_queue` | delivery id | the priority lane of automatic deliveries |
| `delivery_claims` | `<delivery id>#<n>` | which worker owns attempt n (`MongoDeliveryQueue`) |
| `manual_tasks` | delivery id | a manual delivery awaiting its seller, with its SLA deadline |
| `orders` | order id | read model of ordering's events |
| `buyers` | user id | read model of identity's events: delivery priority, masked phone |
| `offers` | offer id | read model of catalog's `OfferListed`: the manual-delivery SLA |
| `messages` | message id | site messages (the in-app inbox) |
| `audit_reveals` | audit id | every reveal and export of plaintext keys (never the keys) |

Each change is one single-document write or an update that is correct
document by document (FerretDB 1.24: no transactions). Where concurrent
writers must not both win, the arbiter is an insert under a unique `_id`
(the event store's stream version, a lane claim, a vault key id): FerretDB
does not isolate concurrent updates of one document. The vault's `_id` is
the key id, so one key can never sit in two buyers' vaults.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from bson import Binary
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_delivery.adapters.ports import (
    BuyerProfile,
    MessageKind,
    OrderRecord,
    OrderState,
    RevealRecord,
    SiteMessage,
    VaultEntry,
)
from kami_delivery.domain.delivery import OrderFacts
from kami_delivery.domain.manual import ManualTask, TaskStatus
from kami_delivery.domain.queue import QueuedDelivery
from kami_events.catalogue.common import DeliveryMode
from kami_events.mongo import Document
from kami_events.trusted import TrustedReads

# -- orders as sub-documents -------------------------------------------------


def _order_doc(order: OrderFacts) -> Document:
    return {
        "order_id": order.order_id,
        "buyer_id": order.buyer_id,
        "seller_id": order.seller_id,
        "offer_id": order.offer_id,
        "product_id": order.product_id,
        "quantity": order.quantity,
        "mode": order.mode.value,
        "key_ids": list(order.key_ids),
        "buyer_fields": dict(order.buyer_fields),
    }


def _order_of(doc: Document) -> OrderFacts:
    return OrderFacts(
        order_id=doc["order_id"],
        buyer_id=doc["buyer_id"],
        seller_id=doc["seller_id"],
        offer_id=doc["offer_id"],
        product_id=doc["product_id"],
        quantity=int(doc["quantity"]),
        mode=DeliveryMode(doc["mode"]),
        key_ids=tuple(doc.get("key_ids", ())),
        buyer_fields=dict(doc.get("buyer_fields", {})),
    )


# -- the vault ---------------------------------------------------------------


class MongoVault:
    # Deliveries whose keys a process remembers having made visible.
    REMEMBERED_PUBLISHED = 10_000

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._c = collection
        # delivery id -> the keys this process made visible: nothing hides a
        # key again, so publishing them again (`KeyDelivered` coming back
        # from Kafka after this process's worker delivered) needs no write.
        self._published: OrderedDict[str, frozenset[str]] = OrderedDict()

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("owner_id", ASCENDING), ("stored_at", DESCENDING)])
        await self._c.create_index("delivery_id")
        await self._c.create_index("order_id")

    async def stash(self, entries: Sequence[VaultEntry]) -> list[str]:
        taken: list[str] = []
        for entry in entries:
            # The insert under the key id decides who holds the key; only a
            # key held already (a retry, or another order) is read back.
            try:
                await self._c.insert_one({"_id": entry.key_id, **self._doc(entry)})
            except DuplicateKeyError:
                held = await self._c.find_one({"_id": entry.key_id}, {"delivery_id": 1})
                if held is not None and held["delivery_id"] != entry.delivery_id:
                    taken.append(entry.key_id)
        return taken

    async def publish(self, delivery_id: str, key_ids: Sequence[str]) -> None:
        published = self._published.get(delivery_id, frozenset())
        if published.issuperset(key_ids):
            return
        await self._c.update_many(
            {"delivery_id": delivery_id, "_id": {"$in": list(key_ids)}, "visible": False},
            {"$set": {"visible": True}},
        )
        self._published.pop(delivery_id, None)
        self._published[delivery_id] = published.union(key_ids)
        while len(self._published) > self.REMEMBERED_PUBLISHED:
            self._published.popitem(last=False)

    async def discard_hidden(
        self,
        delivery_id: str,
        *,
        keep: Sequence[str] = (),
        among: Sequence[str] | None = None,
    ) -> int:
        ids: Document = {"$nin": list(keep)}
        if among is not None:
            ids["$in"] = list(among)
        result = await self._c.delete_many(
            {"delivery_id": delivery_id, "visible": False, "_id": ids}
        )
        return result.deleted_count

    async def void(self, order_id: str, key_ids: Sequence[str]) -> int:
        result = await self._c.update_many(
            {"order_id": order_id, "_id": {"$in": list(key_ids)}, "voided": False},
            # Crypto-shredding: a voided key's ciphertext is of no use to anyone.
            {"$set": {"voided": True, "sealed": None}},
        )
        return result.modified_count

    async def get(self, key_id: str) -> VaultEntry | None:
        doc = await self._c.find_one({"_id": key_id})
        return self._entry(doc) if doc else None

    async def list_for(
        self, owner_id: str, *, order_id: str | None = None, limit: int = 100
    ) -> list[VaultEntry]:
        query: Document = {"owner_id": owner_id, "visible": True, "voided": False}
        if order_id is not None:
            query["order_id"] = order_id
        cursor = self._c.find(query).sort([("stored_at", DESCENDING), ("_id", ASCENDING)])
        return [self._entry(doc) async for doc in cursor.limit(limit)]

    @staticmethod
    def _doc(entry: VaultEntry) -> Document:
        return {
            "owner_id": entry.owner_id,
            "order_id": entry.order_id,
            "delivery_id": entry.delivery_id,
            "offer_id": entry.offer_id,
            "product_id": entry.product_id,
            "seller_id": entry.seller_id,
            "mode": entry.mode.value,
            "sealed": Binary(entry.sealed),
            "masked": entry.masked,
            "expires_at": entry.expires_at,
            "stored_at": entry.stored_at,
            "visible": entry.visible,
            "voided": entry.voided,
        }

    @staticmethod
    def _entry(doc: Document) -> VaultEntry:
        return VaultEntry(
            key_id=doc["_id"],
            owner_id=doc["owner_id"],
            order_id=doc["order_id"],
            delivery_id=doc["delivery_id"],
            offer_id=doc["offer_id"],
            product_id=doc["product_id"],
            seller_id=doc["seller_id"],
            mode=DeliveryMode(doc["mode"]),
            sealed=bytes(doc["sealed"] or b""),
            masked=doc["masked"],
            expires_at=doc.get("expires_at"),
            stored_at=doc["stored_at"],
            visible=bool(doc["visible"]),
            voided=bool(doc["voided"]),
        )


# -- the priority lane ---------------------------------------------------------


class MongoDeliveryQueue:
    """The lane: one document per delivery, and one *claim* document per attempt.

    A worker owns attempt `n` of a job when it inserts the claim
    `<delivery id>#<n>`: an insert under a unique `_id` is the one write that
    lets exactly one of several racing workers win on MongoDB and FerretDB
    alike. (FerretDB 1.24 does not isolate concurrent `find_one_and_update`
    or conditional `update_one` calls on one document: several callers can
    all "win" the same state change, so they cannot hand out work.)
    """

    # How many due jobs a claim looks at before reading the lane again.
    SCAN = 16
    # How often it reads the lane again when every candidate was taken, before
    # it gives up until the next call (which brings a fresh `now`).
    RESCANS = 20

    def __init__(
        self, collection: AsyncCollection[Document], claims: AsyncCollection[Document]
    ) -> None:
        self._c = collection
        self._claims = claims

    async def ensure_indexes(self) -> None:
        await self._c.create_index(
            [("status", ASCENDING), ("priority", DESCENDING), ("enqueued_at", ASCENDING)],
            name="lane",
        )

    async def enqueue(self, job: QueuedDelivery, *, now: datetime) -> bool:
        try:
            await self._c.insert_one(
                {
                    "_id": job.delivery_id,
                    "order": _order_doc(job.order),
                    "priority": job.priority,
                    "enqueued_at": job.enqueued_at,
                    "causation_id": job.causation_id,
                    "traceparent": job.traceparent,
                    "status": "queued",
                    "available_at": now,
                    "lease_until": None,
                    "attempts": 0,
                    "buyer_has_phone": job.buyer_has_phone,
                    "delivery_deadline": job.delivery_deadline,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def claim(self, now: datetime, lease_until: datetime) -> QueuedDelivery | None:
        due = {
            "$or": [
                {"status": "queued", "available_at": {"$lte": now}},
                {"status": "working", "lease_until": {"$lte": now}},
            ]
        }
        for _ in range(self.RESCANS):
            cursor = self._c.find(due).sort([("priority", DESCENDING), ("enqueued_at", ASCENDING)])
            candidates = await cursor.limit(self.SCAN).to_list()
            if not candidates:
                return None
            for doc in candidates:
                attempt = int(doc["attempts"]) + 1
                if await self._take(doc["_id"], attempt, now, lease_until):
                    await self._c.update_one(
                        {"_id": doc["_id"]},
                        {
                            "$set": {
                                "status": "working",
                                "lease_until": lease_until,
                                "attempts": attempt,
                            }
                        },
                    )
                    return QueuedDelivery(
                        delivery_id=doc["_id"],
                        order=_order_of(doc["order"]),
                        priority=int(doc["priority"]),
                        enqueued_at=doc["enqueued_at"],
                        causation_id=doc["causation_id"],
                        traceparent=doc.get("traceparent"),
                        attempts=attempt,
                        buyer_has_phone=doc.get("buyer_has_phone"),
                        delivery_deadline=doc.get("delivery_deadline"),
                    )
            # Every candidate went to another worker, whose update is landing; or
            # a worker died between its claim and its update, and that claim
            # holds the job until its lease passes, which only a later `now` sees.
            await asyncio.sleep(0.01)
        return None

    async def _take(
        self, delivery_id: str, attempt: int, now: datetime, lease_until: datetime
    ) -> bool:
        try:
            await self._claims.insert_one(
                {"_id": f"{delivery_id}#{attempt}", "claimed_at": now, "lease_until": lease_until}
            )
        except DuplicateKeyError:
            taken = await self._claims.find_one({"_id": f"{delivery_id}#{attempt}"})
            if taken is not None and taken["lease_until"] <= now:
                # Its worker died between claiming and marking the job: skip the attempt.
                await self._c.update_one(
                    {"_id": delivery_id, "attempts": attempt - 1}, {"$set": {"attempts": attempt}}
                )
            return False
        return True

    async def complete(
        self, delivery_id: str, outcome: str, now: datetime, *, attempts: int | None = None
    ) -> None:
        """The job leaves the lane (its outcome is in the delivery's stream), so
        the lane holds only open work: every claim reads it whole on FerretDB.
        A redelivered `OrderPaid` may queue it again; its worker then finds
        the delivery concluded and completes it at once. `attempts`: the
        attempt the caller claimed, so the job need not be read for it (a
        later claim of a stalled job completes with its own, higher one)."""
        if attempts is None:
            job = await self._c.find_one({"_id": delivery_id}, {"attempts": 1})
            attempts = int(job["attempts"]) if job else 0
        await self._c.delete_one({"_id": delivery_id})
        for attempt in range(1, attempts + 1):
            await self._claims.delete_one({"_id": f"{delivery_id}#{attempt}"})

    async def retry_at(self, delivery_id: str, at: datetime, error: str) -> None:
        await self._c.update_one(
            {"_id": delivery_id},
            {"$set": {"status": "queued", "available_at": at, "lease_until": None, "error": error}},
        )

    async def park(self, delivery_id: str, error: str, now: datetime) -> None:
        await self._c.update_one(
            {"_id": delivery_id},
            {"$set": {"status": "parked", "error": error, "parked_at": now, "lease_until": None}},
        )

    async def counts(self) -> dict[str, int]:
        return {
            status: await self._c.count_documents({"status": status})
            for status in ("queued", "working", "parked")
        }


# -- manual deliveries -----------------------------------------------------------


class MongoManualTasks:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index(
            [("order.seller_id", ASCENDING), ("status", ASCENDING), ("deadline", ASCENDING)]
        )
        await self._c.create_index([("status", ASCENDING), ("deadline", ASCENDING)])

    async def open(self, task: ManualTask) -> bool:
        try:
            await self._c.insert_one(
                {
                    "_id": task.delivery_id,
                    "order": _order_doc(task.order),
                    "paid_at": task.paid_at,
                    "deadline": task.deadline,
                    "status": task.status.value,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def get(self, delivery_id: str) -> ManualTask | None:
        doc = await self._c.find_one({"_id": delivery_id})
        return self._task(doc) if doc else None

    async def for_seller(
        self, seller_id: str, status: TaskStatus, *, limit: int = 100
    ) -> list[ManualTask]:
        cursor = self._c.find({"order.seller_id": seller_id, "status": status.value}).sort(
            [("deadline", ASCENDING), ("_id", ASCENDING)]
        )
        return [self._task(doc) async for doc in cursor.limit(limit)]

    async def overdue(self, now: datetime, *, limit: int = 100) -> list[ManualTask]:
        cursor = self._c.find({"status": TaskStatus.OPEN.value, "deadline": {"$lte": now}}).sort(
            "deadline", ASCENDING
        )
        return [self._task(doc) async for doc in cursor.limit(limit)]

    async def close(self, delivery_id: str, status: TaskStatus, now: datetime) -> None:
        await self._c.update_one(
            {"_id": delivery_id, "status": TaskStatus.OPEN.value},
            {"$set": {"status": status.value, "closed_at": now}},
        )

    @staticmethod
    def _task(doc: Document) -> ManualTask:
        return ManualTask(
            delivery_id=doc["_id"],
            order=_order_of(doc["order"]),
            paid_at=doc["paid_at"],
            deadline=doc["deadline"],
            status=TaskStatus(doc["status"]),
        )


# -- read models ------------------------------------------------------------------


class MongoOrders:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._c = collection

    async def record_placed(self, order: OrderRecord) -> None:
        await self._c.update_one(
            {"_id": order.order_id},
            {
                "$setOnInsert": {
                    "buyer_id": order.buyer_id,
                    "seller_id": order.seller_id,
                    "offer_id": order.offer_id,
                    "product_id": order.product_id,
                    "quantity": order.quantity,
                    "mode": order.mode.value,
                    "buyer_fields": dict(order.buyer_fields),
                    "state": order.state.value,
                    "refunds": [],
                }
            },
            upsert=True,
        )

    async def get(self, order_id: str) -> OrderRecord | None:
        doc = await self._c.find_one({"_id": order_id})
        if doc is None:
            return None
        return OrderRecord(
            order_id=doc["_id"],
            buyer_id=doc["buyer_id"],
            seller_id=doc["seller_id"],
            offer_id=doc["offer_id"],
            product_id=doc["product_id"],
            quantity=int(doc["quantity"]),
            mode=DeliveryMode(doc["mode"]),
            buyer_fields=dict(doc.get("buyer_fields", {})),
            state=OrderState(doc["state"]),
        )

    async def set_state(self, order_id: str, state: OrderState) -> None:
        await self._c.update_one(
            {"_id": order_id, "state": {"$in": [s.value for s in state.replaces()]}},
            {"$set": {"state": state.value}},
        )

    async def record_refund_request(
        self, order_id: str, refund_id: str, void_key_ids: Sequence[str]
    ) -> None:
        # Conditional on the refund not being recorded yet: a replay adds nothing.
        await self._c.update_one(
            {"_id": order_id, "refunds.refund_id": {"$ne": refund_id}},
            {"$push": {"refunds": {"refund_id": refund_id, "void_key_ids": list(void_key_ids)}}},
        )

    async def void_key_ids(self, order_id: str, refund_id: str) -> list[str]:
        doc = await self._c.find_one({"_id": order_id}, {"refunds": 1})
        for refund in (doc or {}).get("refunds", []):
            if refund["refund_id"] == refund_id:
                return list(refund["void_key_ids"])
        return []


class MongoBuyers:
    """A buyer's priority and phone; a delivery reads them twice (to queue it,
    and to text the buyer), so a read is trusted for a moment
    (`kami_events.trusted`)."""

    def __init__(
        self, collection: AsyncCollection[Document], *, trust_seconds: float = 0.0
    ) -> None:
        self._c = collection
        self._trusted = TrustedReads(trust_seconds)

    async def record_priority(self, user_id: str, priority: int, tier: str, version: int) -> None:
        # The filter misses a document holding a later version, so the upsert
        # collides on `_id`: the stored tier is newer, keep it.
        try:
            with contextlib.suppress(DuplicateKeyError):
                await self._c.update_one(
                    {
                        "_id": user_id,
                        "$or": [{"tier_version": {"$lt": version}}, {"tier_version": None}],
                    },
                    {
                        "$set": {
                            "delivery_priority": priority,
                            "tier": tier,
                            "tier_version": version,
                        }
                    },
                    upsert=True,
                )
        finally:
            self._trusted.written(user_id)

    async def record_phone(self, user_id: str, phone_masked: str) -> None:
        try:
            await self._c.update_one(
                {"_id": user_id}, {"$set": {"phone_masked": phone_masked}}, upsert=True
            )
        finally:
            self._trusted.written(user_id)

    async def get(self, user_id: str) -> BuyerProfile | None:
        return await self._trusted.get(user_id, lambda: self._read(user_id))

    async def _read(self, user_id: str) -> BuyerProfile | None:
        doc = await self._c.find_one({"_id": user_id})
        if doc is None:
            return None
        return BuyerProfile(
            user_id=user_id,
            delivery_priority=int(doc.get("delivery_priority", 0)),
            phone_masked=doc.get("phone_masked"),
        )


class MongoOffers:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._c = collection

    async def record_sla(self, offer_id: str, sla_minutes: int | None) -> None:
        await self._c.update_one(
            {"_id": offer_id}, {"$set": {"manual_sla_minutes": sla_minutes}}, upsert=True
        )

    async def sla_minutes(self, offer_id: str) -> int | None:
        doc = await self._c.find_one({"_id": offer_id})
        value = (doc or {}).get("manual_sla_minutes")
        return int(value) if value is not None else None

    async def record_seller(self, offer_id: str, seller_id: str) -> None:
        await self._c.update_one({"_id": offer_id}, {"$set": {"seller_id": seller_id}}, upsert=True)

    async def seller_of(self, offer_id: str) -> str | None:
        doc = await self._c.find_one({"_id": offer_id}, {"seller_id": 1})
        value = (doc or {}).get("seller_id")
        return str(value) if value else None


# -- site messages and the reveal audit ----------------------------------------------


class MongoSiteMessages:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])

    async def post(self, message: SiteMessage) -> None:
        await self._c.update_one(
            {"_id": message.message_id},
            {
                "$setOnInsert": {
                    "user_id": message.user_id,
                    "kind": message.kind.value,
                    "title": message.title,
                    "body": message.body,
                    "order_id": message.order_id,
                    "created_at": message.created_at,
                    "read_at": None,
                }
            },
            upsert=True,
        )

    async def list_for(self, user_id: str, *, unread_only: bool, limit: int) -> list[SiteMessage]:
        query: Document = {"user_id": user_id}
        if unread_only:
            query["read_at"] = None
        cursor = self._c.find(query).sort([("created_at", DESCENDING), ("_id", ASCENDING)])
        return [self._message(doc) async for doc in cursor.limit(limit)]

    async def mark_read(self, user_id: str, message_id: str, now: datetime) -> bool:
        doc = await self._c.find_one_and_update(
            {"_id": message_id, "user_id": user_id},
            {"$set": {"read_at": now}},
            return_document=ReturnDocument.BEFORE,
        )
        return doc is not None

    @staticmethod
    def _message(doc: Document) -> SiteMessage:
        return SiteMessage(
            message_id=doc["_id"],
            user_id=doc["user_id"],
            kind=MessageKind(doc["kind"]),
            title=doc["title"],
            body=doc["body"],
            order_id=doc["order_id"],
            created_at=doc["created_at"],
            read_at=doc.get("read_at"),
        )


class MongoRevealAudit:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("user_id", ASCENDING), ("at", DESCENDING)])
        await self._c.create_index("key_ids")

    async def record(self, entry: RevealRecord) -> None:
        await self._c.insert_one(
            {
                "_id": entry.audit_id,
                "user_id": entry.user_id,
                "action": entry.action,
                "key_ids": list(entry.key_ids),
                "order_ids": list(entry.order_ids),
                "at": entry.at,
                "export_format": entry.export_format,
                "client": entry.client,
            }
        )


class DeliveryStores:
    """Every collection of the delivery database, with their indexes."""

    def __init__(self, db: AsyncDatabase[Document], *, trust_seconds: float = 0.0) -> None:
        self.vault = MongoVault(db["vault"])
        self.queue = MongoDeliveryQueue(db["delivery_queue"], db["delivery_claims"])
        self.manual_tasks = MongoManualTasks(db["manual_tasks"])
        self.orders = MongoOrders(db["orders"])
        self.buyers = MongoBuyers(db["buyers"], trust_seconds=trust_seconds)
        self.offers = MongoOffers(db["offers"])
        self.messages = MongoSiteMessages(db["messages"])
        self.audit = MongoRevealAudit(db["audit_reveals"])

    async def ensure_indexes(self) -> None:
        for store in (self.vault, self.queue, self.manual_tasks, self.messages, self.audit):
            await store.ensure_indexes()
