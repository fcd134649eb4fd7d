"""Inventory's other MongoDB collections: the offer and product read model,
the import log, the reservation and replacement decisions, the work journal,
the pools' data keys, the reveal audit and the pools' latest stock counts.

Every record that decides something is written with one insert under a
unique `_id` (first writer wins, on MongoDB and FerretDB alike); a loser
reads back the winner's record.
"""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.inventory import ReplacementFailure, ReservationFailure
from kami_events.clock import Clock
from kami_events.mongo import Document, write_newer
from kami_events.trusted import TrustedReads
from kami_inventory.domain.imports import FileFormat, ImportReport, RejectedLine, Rejection
from kami_inventory.domain.offers import Offer, Product
from kami_inventory.domain.replacements import Replacement
from kami_inventory.domain.reservations import Reservation
from kami_inventory.domain.stock import BookedStock, LiveStock, StockLevels
from kami_inventory.ports import (
    ImportRecord,
    PendingWork,
    RevealRecord,
    WorkKind,
    WrappedKey,
)


class MongoOfferDirectory:
    """Offers and products as catalog announced them; an event older than the
    one last applied (by its stream version) is ignored, so a replay or a
    redelivery never rolls an offer back. Every reservation reads its offer,
    so an offer read is trusted for a moment (`kami_events.trusted`)."""

    def __init__(self, db: AsyncDatabase[Document], *, trust_seconds: float = 0.0) -> None:
        self.offers: AsyncCollection[Document] = db["offers"]
        self.products: AsyncCollection[Document] = db["products"]
        self._trusted = TrustedReads(trust_seconds)

    async def ensure_indexes(self) -> None:
        await self.offers.create_index("seller_id", name="by_seller")

    async def get(self, offer_id: str) -> Offer | None:
        return await self._trusted.get(offer_id, lambda: self._read(offer_id))

    async def _read(self, offer_id: str) -> Offer | None:
        doc = await self.offers.find_one({"_id": offer_id})
        return _offer(doc) if doc else None

    async def of_seller(self, seller_id: str) -> list[Offer]:
        cursor = self.offers.find({"seller_id": seller_id}).sort("_id", ASCENDING)
        return [_offer(doc) async for doc in cursor]

    async def record_offer(
        self,
        *,
        offer_id: str,
        seller_id: str,
        product_id: str,
        version: int,
        delivery_mode: DeliveryMode | None = None,
        listed: bool | None = None,
    ) -> None:
        fields: Document = {"seller_id": seller_id, "product_id": product_id, "version": version}
        on_insert: Document = {}
        if delivery_mode is None:
            on_insert["delivery_mode"] = None
        else:
            fields["delivery_mode"] = delivery_mode.value
        if listed is None:
            on_insert["listed"] = False
        else:
            fields["listed"] = listed
        try:
            await write_newer(self.offers, offer_id, version, fields, on_insert)
        finally:
            self._trusted.written(offer_id)

    async def product(self, product_id: str) -> Product | None:
        doc = await self.products.find_one({"_id": product_id})
        if doc is None:
            return None
        days = doc.get("validity_days")
        return Product(product_id, timedelta(days=days) if days else None)

    async def record_product(self, product: Product, version: int) -> None:
        days = product.validity.days if product.validity else None
        await write_newer(
            self.products, product.product_id, version, {"validity_days": days, "version": version}
        )


def _offer(doc: Document) -> Offer:
    mode = doc.get("delivery_mode")
    return Offer(
        offer_id=doc["_id"],
        seller_id=doc["seller_id"],
        product_id=doc["product_id"],
        delivery_mode=DeliveryMode(mode) if mode else None,
        listed=bool(doc.get("listed")),
    )


class MongoImportLog:
    def __init__(self, db: AsyncDatabase[Document], *, clock: Clock) -> None:
        self.imports: AsyncCollection[Document] = db["imports"]
        self._clock = clock

    async def find(self, offer_id: str, import_id: str) -> ImportRecord | None:
        doc = await self.imports.find_one({"_id": _import_key(offer_id, import_id)})
        return _import_record(doc) if doc else None

    async def begin(self, record: ImportRecord) -> ImportRecord:
        try:
            await self.imports.insert_one(
                {
                    "_id": _import_key(record.offer_id, record.import_id),
                    "offer_id": record.offer_id,
                    "import_id": record.import_id,
                    "seller_id": record.seller_id,
                    "digest": record.digest,
                    "started_at": record.started_at,
                    "report": None,
                }
            )
        except DuplicateKeyError:
            stored = await self.find(record.offer_id, record.import_id)
            assert stored is not None
            return stored
        return record

    async def complete(self, offer_id: str, import_id: str, report: ImportReport) -> None:
        await self.imports.update_one(
            {"_id": _import_key(offer_id, import_id)},
            {"$set": {"report": _report_document(report), "completed_at": self._clock()}},
        )


def _import_key(offer_id: str, import_id: str) -> str:
    return f"{offer_id}/{import_id}"


def _report_document(report: ImportReport) -> Document:
    return {
        "file_format": report.file_format.value,
        "imported": report.imported,
        "earliest_expires_at": report.earliest_expires_at,
        "rejected_lines": [
            {"line": r.line, "reason": r.reason.value, "message": r.message}
            for r in report.rejected_lines
        ],
    }


def _import_record(doc: Document) -> ImportRecord:
    raw = doc.get("report")
    report = None
    if raw is not None:
        report = ImportReport(
            import_id=doc["import_id"],
            offer_id=doc["offer_id"],
            file_format=FileFormat(raw["file_format"]),
            imported=int(raw["imported"]),
            rejected_lines=tuple(
                RejectedLine(int(r["line"]), Rejection(r["reason"]), r["message"])
                for r in raw["rejected_lines"]
            ),
            earliest_expires_at=raw.get("earliest_expires_at"),
        )
    return ImportRecord(
        offer_id=doc["offer_id"],
        import_id=doc["import_id"],
        seller_id=doc["seller_id"],
        digest=doc["digest"],
        started_at=doc["started_at"],
        report=report,
    )


class MongoReservationBook:
    def __init__(self, db: AsyncDatabase[Document], *, clock: Clock) -> None:
        self.reservations: AsyncCollection[Document] = db["reservations"]
        self.attempts: AsyncCollection[Document] = db["reservation_attempts"]
        self._clock = clock

    async def begin_attempt(self, order_id: str) -> bool:
        try:
            await self.attempts.insert_one({"_id": order_id, "started_at": self._clock()})
        except DuplicateKeyError:
            return False
        return True

    async def find(self, order_id: str) -> Reservation | None:
        doc = await self.reservations.find_one({"_id": order_id})
        return _reservation(doc) if doc else None

    async def decide(self, reservation: Reservation) -> Reservation:
        try:
            await self.reservations.insert_one(
                {
                    "_id": reservation.order_id,
                    "offer_id": reservation.offer_id,
                    "requested": reservation.requested,
                    "key_ids": list(reservation.key_ids),
                    "expires_at": reservation.expires_at,
                    "failure": reservation.failure.value if reservation.failure else None,
                    "available": reservation.available,
                    "decided_at": self._clock(),
                }
            )
        except DuplicateKeyError:
            stored = await self.find(reservation.order_id)
            assert stored is not None
            return stored
        return reservation


def _reservation(doc: Document) -> Reservation:
    failure = doc.get("failure")
    return Reservation(
        order_id=doc["_id"],
        offer_id=doc["offer_id"],
        requested=int(doc["requested"]),
        key_ids=tuple(doc.get("key_ids", [])),
        expires_at=doc.get("expires_at"),
        failure=ReservationFailure(failure) if failure else None,
        available=int(doc.get("available", 0)),
    )


class MongoReplacementBook:
    """`replacements`: one decision per ticket (`_id` = ticket id, first insert
    wins). `replaced_keys`: `_id` = a faulty key's id → the key that replaced
    it, read by `_id` when a refund voids the order's keys."""

    def __init__(self, db: AsyncDatabase[Document], *, clock: Clock) -> None:
        self.replacements: AsyncCollection[Document] = db["replacements"]
        self.replaced_keys: AsyncCollection[Document] = db["replaced_keys"]
        self._clock = clock

    async def find(self, ticket_id: str) -> Replacement | None:
        doc = await self.replacements.find_one({"_id": ticket_id})
        return _replacement(doc) if doc else None

    async def decide(self, replacement: Replacement) -> Replacement:
        try:
            await self.replacements.insert_one(
                {
                    "_id": replacement.ticket_id,
                    "order_id": replacement.order_id,
                    "offer_id": replacement.offer_id,
                    "replaced_key_ids": list(replacement.replaced_key_ids),
                    "key_ids": list(replacement.key_ids),
                    "failure": replacement.failure.value if replacement.failure else None,
                    "available": replacement.available,
                    "decided_at": self._clock(),
                }
            )
        except DuplicateKeyError:
            stored = await self.find(replacement.ticket_id)
            assert stored is not None
            return stored
        return replacement

    async def link(self, replacement: Replacement) -> None:
        for faulty, new in replacement.pairs().items():
            with contextlib.suppress(DuplicateKeyError):
                await self.replaced_keys.insert_one(
                    {
                        "_id": faulty,
                        "key_id": new,
                        "ticket_id": replacement.ticket_id,
                        "order_id": replacement.order_id,
                    }
                )

    async def replacing(self, key_id: str) -> str | None:
        doc = await self.replaced_keys.find_one({"_id": key_id}, {"key_id": 1})
        return str(doc["key_id"]) if doc else None


def _replacement(doc: Document) -> Replacement:
    failure = doc.get("failure")
    return Replacement(
        ticket_id=doc["_id"],
        order_id=doc["order_id"],
        offer_id=doc["offer_id"],
        replaced_key_ids=tuple(doc["replaced_key_ids"]),
        key_ids=tuple(doc.get("key_ids", [])),
        failure=ReplacementFailure(failure) if failure else None,
        available=int(doc.get("available", 0)),
    )


class MongoWorkJournal:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.work: AsyncCollection[Document] = db["work"]

    async def ensure_indexes(self) -> None:
        await self.work.create_index(
            [("done", ASCENDING), ("started_at", ASCENDING)], name="unfinished"
        )

    async def begin(self, work: PendingWork) -> PendingWork:
        try:
            await self.work.insert_one(
                {
                    "_id": work.op,
                    "kind": work.kind.value,
                    "offer_id": work.offer_id,
                    "key_ids": list(work.key_ids),
                    "reason": work.reason,
                    "started_at": work.started_at,
                    "done": False,
                }
            )
        except DuplicateKeyError:
            doc = await self.work.find_one({"_id": work.op})
            assert doc is not None
            return _work(doc)
        return work

    async def finish(self, op: str) -> None:
        await self.work.update_one({"_id": op}, {"$set": {"done": True}})

    async def stale(self, started_before: datetime, limit: int) -> list[PendingWork]:
        cursor = self.work.find({"done": False, "started_at": {"$lte": started_before}})
        return [_work(doc) async for doc in cursor.sort("started_at", ASCENDING).limit(limit)]


def _work(doc: dict[str, Any]) -> PendingWork:
    return PendingWork(
        op=doc["_id"],
        kind=WorkKind(doc["kind"]),
        offer_id=doc["offer_id"],
        key_ids=tuple(doc["key_ids"]),
        reason=doc["reason"],
        started_at=doc["started_at"],
    )


class MongoDataKeyStore:
    def __init__(self, db: AsyncDatabase[Document], *, clock: Clock) -> None:
        self.pool_keys: AsyncCollection[Document] = db["pool_keys"]
        self._clock = clock

    async def get(self, offer_id: str) -> WrappedKey | None:
        doc = await self.pool_keys.find_one({"_id": offer_id})
        return WrappedKey(bytes(doc["wrapped"]), doc["master_key_id"]) if doc else None

    async def put_if_absent(self, offer_id: str, wrapped: WrappedKey) -> WrappedKey:
        try:
            await self.pool_keys.insert_one(
                {
                    "_id": offer_id,
                    "wrapped": wrapped.blob,
                    "master_key_id": wrapped.master_key_id,
                    "created_at": self._clock(),
                }
            )
        except DuplicateKeyError:
            stored = await self.get(offer_id)
            assert stored is not None
            return stored
        return wrapped


class MongoRevealAudit:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.reveals: AsyncCollection[Document] = db["audit_reveals"]

    async def ensure_indexes(self) -> None:
        await self.reveals.create_index(
            [("order_id", ASCENDING), ("at", ASCENDING)], name="by_order"
        )

    async def record(self, entry: RevealRecord) -> None:
        await self.reveals.insert_one(
            {
                "_id": entry.reveal_id,
                "order_id": entry.order_id,
                "service": entry.service,
                "revealed_key_ids": list(entry.revealed),
                "withheld_key_ids": list(entry.refused),
                "at": entry.at,
            }
        )


# The states a pool's keys are counted in (`expired` overlaps available and blocked).
STOCK_STATES = tuple(f.name for f in dataclasses.fields(StockLevels))
# What every commit counts, and what the gauge counts again when a pool moved.
LIVE_STATES = tuple(f.name for f in dataclasses.fields(LiveStock))
SETTLED_STATES = ("sold", "blocked", "voided")


class MongoStockBook:
    """`pool_stock`: one document per offer (`_id` = offer id) with the live
    counts of its last commit (`version`), and its sold, blocked and voided
    keys as the gauge last counted them (`settled_version`). Small and bounded
    by the number of offers, so the metrics job may read all of it."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.pools: AsyncCollection[Document] = db["pool_stock"]

    async def record(self, offer_id: str, version: int, stock: LiveStock) -> None:
        counts = {state: getattr(stock, state) for state in LIVE_STATES}
        await write_newer(self.pools, offer_id, version, counts)

    async def record_settled(self, offer_id: str, version: int, stock: StockLevels) -> None:
        counts = {state: getattr(stock, state) for state in SETTLED_STATES}
        await write_newer(self.pools, offer_id, version, counts, guard="settled_version")

    async def all(self) -> dict[str, BookedStock]:
        return {
            doc["_id"]: BookedStock(
                version=int(doc.get("version", 0)),
                levels=StockLevels(
                    **{state: int(doc.get(state, 0)) for state in LIVE_STATES + SETTLED_STATES}
                ),
                settled_version=doc.get("settled_version"),
            )
            async for doc in self.pools.find({})
        }
