"""The keys of every pool in MongoDB, and their transitions.

Collection `keys`: one document per key, holding its sealed secret, its HMAC
fingerprint (unique per offer), its expiry and its current state. Collection
`key_claims`: one document per transition, `_id = "<key_id>@<gen>"`.

Why claims, and not a conditional `find_one_and_update`: on MongoDB a
conditional update is atomic, but FerretDB 1.24 evaluates the filter and
writes the document in two steps, so two concurrent
`update_one({status: "available"}, ...)` can both succeed (observed: 40
racers on one key, several winners). An insert under a unique index is
atomic on both. So a transition is decided by inserting the claim `key@gen`
for the generation it was read at: exactly one caller wins it, and a caller
holding a stale copy of the key aims at a generation that is already claimed.
Only the winner then writes the key document (`gen + 1`), so no write is lost.

The claim also records the operation (`op`) that made it and the state it
leads to, so a retry of the same operation recognises its own move, a crash
between claim and write is finished by the next attempt or by the
maintenance job, and the claims together are each key's full history.

A move can also be claimed `held` (`move(..., write=False)`): it is written
onto the key only by its own operation's `resume`, after that operation has
committed the move's event, and never by the maintenance job. Until then the
key document keeps its old state, so queries on it (`available`) do not
offer the key to anyone else.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kami_events.clock import Clock
from kami_events.mongo import Document
from kami_inventory.domain.keys import KeyStatus, PoolKey, Transition
from kami_inventory.domain.stock import LiveStock, StockLevels
from kami_inventory.ports import NewKey, SealedKey

DUPLICATE_KEY = 11000
# A reservation asks for a few keys, soonest expiry first. FerretDB sorts in
# its own process, after reading every available key of the pool, so each
# read of candidates asks for this many and the rest are handed out from
# memory to the next reservations (of this process, for the pools it served
# last: at most `CANDIDATE_POOLS`).
CANDIDATES_PREFETCHED = 64
CANDIDATE_POOLS = 1000
# A key cannot have changed state more often than this between two reads.
MAX_CLAIM_CHAIN = 16


class MongoKeyStore:
    def __init__(self, db: AsyncDatabase[Document], *, clock: Clock) -> None:
        self.keys: AsyncCollection[Document] = db["keys"]
        self.claims: AsyncCollection[Document] = db["key_claims"]
        self._clock = clock
        # Pool → keys read as available and not handed out yet, soonest expiry first.
        self._candidates: OrderedDict[str, list[PoolKey]] = OrderedDict()

    async def ensure_indexes(self) -> None:
        await self.keys.create_index(
            [("offer_id", ASCENDING), ("fingerprint", ASCENDING)],
            unique=True,
            name="offer_fingerprint_unique",
        )
        await self.keys.create_index(
            [("offer_id", ASCENDING), ("status", ASCENDING), ("expires_at", ASCENDING)],
            name="reservable",
        )
        await self.keys.create_index(
            [("order_id", ASCENDING), ("status", ASCENDING)], name="by_order"
        )
        await self.keys.create_index(
            [("status", ASCENDING), ("expires_at", ASCENDING)], name="expiring"
        )
        await self.claims.create_index("op", name="by_op")
        await self.claims.create_index(
            [("applied", ASCENDING), ("at", ASCENDING)], name="unapplied"
        )

    async def add(self, keys: Sequence[NewKey]) -> None:
        if not keys:
            return
        documents = [
            {
                "_id": key.key_id,
                "offer_id": key.offer_id,
                "seller_id": key.seller_id,
                "import_id": key.import_id,
                "line": key.line,
                "fingerprint": key.fingerprint,
                "sealed": key.sealed,
                "expires_at": key.expires_at,
                "imported_at": key.imported_at,
                "changed_at": key.imported_at,
                "status": KeyStatus.AVAILABLE.value,
                "gen": 0,
                "order_id": None,
                "reserved_until": None,
                "reason": None,
            }
            for key in keys
        ]
        for offer_id in {key.offer_id for key in keys}:
            self._candidates.pop(offer_id, None)  # new keys may expire sooner
        try:
            await self.keys.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            # Duplicates are expected: a retried import finds its own keys, a
            # concurrent import may have inserted the same key first.
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise

    async def present(self, key_ids: Collection[str]) -> set[str]:
        if len(key_ids) > BY_ID_UP_TO:
            cursor = self.keys.find({"_id": {"$in": list(key_ids)}}, {"_id": 1})
            return {doc["_id"] async for doc in cursor}
        found = [await self.keys.find_one({"_id": key_id}, {"_id": 1}) for key_id in key_ids]
        return {doc["_id"] for doc in found if doc is not None}

    async def holders(self, offer_id: str, fingerprints: Collection[str]) -> dict[str, str]:
        if not fingerprints:
            return {}
        cursor = self.keys.find(
            {"offer_id": offer_id, "fingerprint": {"$in": list(fingerprints)}},
            {"fingerprint": 1},
        )
        return {doc["fingerprint"]: doc["_id"] async for doc in cursor}

    async def available(
        self, offer_id: str, expiring_after: datetime, exclude: Collection[str], limit: int
    ) -> list[PoolKey]:
        """Candidates, handed out from the pool's prefetched ones while they
        last (`CANDIDATES_PREFETCHED`): a candidate moved since it was read
        loses its claim, and the caller asks again."""
        kept = self._candidates.pop(offer_id, [])
        picked: list[PoolKey] = []
        left: list[PoolKey] = []
        for key in kept:
            wanted = len(picked) < limit and key.key_id not in exclude
            if wanted and key.expires_at > expiring_after:
                picked.append(key)
            else:
                left.append(key)
        if len(picked) < limit:
            skip = {*exclude, *(key.key_id for key in picked)}
            read = await self._available(
                offer_id, expiring_after, skip, max(limit - len(picked), CANDIDATES_PREFETCHED)
            )
            needed = limit - len(picked)
            picked += read[:needed]
            left = read[needed:]  # sooner-expiring keys first, as read now
        if left:
            self._candidates[offer_id] = left
            while len(self._candidates) > CANDIDATE_POOLS:
                self._candidates.popitem(last=False)
        return picked

    async def _available(
        self, offer_id: str, expiring_after: datetime, exclude: Collection[str], limit: int
    ) -> list[PoolKey]:
        query: Document = {
            "offer_id": offer_id,
            "status": KeyStatus.AVAILABLE.value,
            "expires_at": {"$gt": expiring_after},
        }
        if exclude:
            query["_id"] = {"$nin": list(exclude)}
        cursor = (
            self.keys.find(query, _STATE)
            .sort([("expires_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [_key(doc) async for doc in cursor]

    async def of_order(self, order_id: str, status: KeyStatus) -> list[PoolKey]:
        cursor = self.keys.find({"order_id": order_id, "status": status.value}, _STATE)
        return [_key(doc) async for doc in cursor.sort("expires_at", ASCENDING)]

    async def get(self, key_ids: Collection[str], *, settle: str | None = None) -> list[PoolKey]:
        """Current states: a key document may trail its claims (a move decided
        but not yet written), so the claims after its generation are followed;
        those of operation `settle` are written on the way, as `resume` would."""
        if not key_ids:
            return []
        docs = await _by_ids(self.keys, key_ids, _STATE)
        return await self._current(key_ids, docs, settle)

    async def get_sealed(self, key_ids: Collection[str]) -> list[tuple[PoolKey, SealedKey]]:
        if not key_ids:
            return []
        docs = await _by_ids(self.keys, key_ids, {**_STATE, "sealed": 1})
        sealed = {doc["_id"]: _sealed(doc) for doc in docs}
        return [(key, sealed[key.key_id]) for key in await self._current(key_ids, docs, None)]

    async def _current(
        self, key_ids: Collection[str], docs: list[Document], settle: str | None
    ) -> list[PoolKey]:
        current = {doc["_id"]: _key(doc) for doc in docs}
        unwritten: list[Document] = []
        for _ in range(MAX_CLAIM_CHAIN):
            ahead = await _by_ids(self.claims, [_claim_id(k) for k in current.values()])
            if not ahead:
                break
            for claim in ahead:
                current[claim["key_id"]] = _after(current[claim["key_id"]], claim)
                if claim["op"] == settle and not (claim["applied"] or claim.get("held")):
                    unwritten.append(claim)
        for claim in unwritten:  # in generation order, key by key
            await self._apply(claim)
        return [current[key_id] for key_id in key_ids if key_id in current]

    async def move(
        self, key: PoolKey, transition: Transition, op: str, *, write: bool = True
    ) -> bool:
        if not transition.allows(key):
            return False
        target = transition.apply(key)
        claim: Document = {
            "_id": _claim_id(key),
            "key_id": key.key_id,
            "offer_id": key.offer_id,
            "gen": key.gen,
            "op": op,
            "transition": transition.name,
            "to": _state_fields(target),
            "at": self._clock(),
            "applied": False,
        }
        if not write:
            claim["held"] = True
        try:
            await self.claims.insert_one(claim)
        except DuplicateKeyError:
            existing = await self.claims.find_one({"_id": claim["_id"]})
            if existing is None or existing["op"] != op:
                return False  # another operation took this generation of the key
            claim = existing  # this operation's own earlier attempt
        if write:
            await self._apply(claim)
        return True

    async def moved_by(self, op: str) -> list[str]:
        cursor = self.claims.find({"op": op}, {"key_id": 1}).sort("key_id", ASCENDING)
        return list(dict.fromkeys([doc["key_id"] async for doc in cursor]))

    async def resume(self, op: str) -> None:
        async for claim in self.claims.find({"op": op, "applied": False}):
            await self._apply(claim)

    async def finish_stale_moves(self, older_than: timedelta) -> int:
        cutoff = self._clock() - older_than
        finished = 0
        # Held moves wait for their operation's event; only it writes them.
        cursor = self.claims.find(
            {"applied": False, "at": {"$lte": cutoff}, "held": {"$ne": True}}
        ).limit(500)
        async for claim in cursor:
            await self._apply(claim)
            finished += 1
        return finished

    async def sealed(self, key_ids: Collection[str]) -> list[SealedKey]:
        if not key_ids:
            return []
        docs = await _by_ids(self.keys, key_ids, {"offer_id": 1, "sealed": 1})
        return [_sealed(doc) for doc in docs]

    async def stock(self, offer_id: str, now: datetime) -> StockLevels:
        counts = await self.counts(offer_id)
        expired = await self.keys.count_documents(
            {"offer_id": offer_id, "status": {"$in": _UNSOLD}, "expires_at": {"$lte": now}}
        )
        return dataclasses.replace(counts, expired=expired)

    async def counts(self, offer_id: str) -> StockLevels:
        counts: dict[str, int] = {}
        pipeline: list[Document] = [
            {"$match": {"offer_id": offer_id}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        async for row in await self.keys.aggregate(pipeline):
            counts[row["_id"]] = int(row["n"])
        return StockLevels(
            available=counts.get(KeyStatus.AVAILABLE.value, 0),
            reserved=counts.get(KeyStatus.RESERVED.value, 0),
            sold=counts.get(KeyStatus.SOLD.value, 0),
            blocked=counts.get(KeyStatus.BLOCKED.value, 0),
            voided=counts.get(KeyStatus.VOIDED.value, 0),
        )

    async def live(self, offer_id: str) -> LiveStock:
        # One equality match per state: FerretDB reads only the keys it names
        # (an `$in` or `$group` over the pool would read the sold ones too).
        counts: dict[str, int] = {}
        for status in (KeyStatus.AVAILABLE, KeyStatus.RESERVED):
            pipeline: list[Document] = [
                {"$match": {"offer_id": offer_id, "status": status.value}},
                {"$count": "n"},
            ]
            counts[status.value] = sum(
                [int(row["n"]) async for row in await self.keys.aggregate(pipeline)]
            )
        return LiveStock(
            available=counts[KeyStatus.AVAILABLE.value], reserved=counts[KeyStatus.RESERVED.value]
        )

    async def expired(self, now: datetime) -> dict[str, int]:
        pipeline: list[Document] = [
            {"$match": {"status": {"$in": _UNSOLD}, "expires_at": {"$lte": now}}},
            {"$group": {"_id": "$offer_id", "n": {"$sum": 1}}},
        ]
        return {row["_id"]: int(row["n"]) async for row in await self.keys.aggregate(pipeline)}

    async def page(
        self, offer_id: str, status: KeyStatus | None, after: str | None, limit: int
    ) -> list[PoolKey]:
        query: Document = {"offer_id": offer_id}
        if status is not None:
            query["status"] = status.value
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.keys.find(query, _STATE).sort("_id", ASCENDING).limit(limit)
        return [_key(doc) async for doc in cursor]

    async def expiring(self, before: datetime, limit: int) -> list[PoolKey]:
        cursor = (
            self.keys.find(
                {"status": KeyStatus.AVAILABLE.value, "expires_at": {"$lte": before}}, _STATE
            )
            .sort("expires_at", ASCENDING)
            .limit(limit)
        )
        return [_key(doc) async for doc in cursor]

    async def _apply(self, claim: Document) -> None:
        """Write a claimed move onto its key. Only the claim's winner (or a retry
        of its operation, writing the same values) ever writes this generation."""
        await self.keys.update_one(
            {"_id": claim["key_id"], "gen": claim["gen"]},
            {"$set": {**claim["to"], "gen": claim["gen"] + 1, "changed_at": claim["at"]}},
        )
        await self.claims.update_one({"_id": claim["_id"]}, {"$set": {"applied": True}})


# Up to this many documents are read one `_id` at a time: on FerretDB 1.24 a
# `$in` reads the whole collection, a single `_id` lets SQLite do the scan.
BY_ID_UP_TO = 16


async def _by_ids(
    collection: AsyncCollection[Document],
    ids: Collection[str],
    projection: Document | None = None,
) -> list[Document]:
    if not ids:
        return []
    if len(ids) > BY_ID_UP_TO:
        return [doc async for doc in collection.find({"_id": {"$in": list(ids)}}, projection)]
    found = [await collection.find_one({"_id": one}, projection) for one in ids]
    return [doc for doc in found if doc is not None]


# The states a key past its expiry counts as `expired` in.
_UNSOLD = [KeyStatus.AVAILABLE.value, KeyStatus.BLOCKED.value]

_STATE: Document = {
    "offer_id": 1,
    "status": 1,
    "gen": 1,
    "expires_at": 1,
    "order_id": 1,
    "reserved_until": 1,
    "reason": 1,
}


def _claim_id(key: PoolKey) -> str:
    return f"{key.key_id}@{key.gen}"


def _state_fields(key: PoolKey) -> Document:
    return {
        "status": key.status.value,
        "order_id": key.order_id,
        "reserved_until": key.reserved_until,
        "reason": key.reason,
    }


def _key(doc: Document) -> PoolKey:
    return PoolKey(
        key_id=doc["_id"],
        offer_id=doc["offer_id"],
        status=KeyStatus(doc["status"]),
        gen=int(doc["gen"]),
        expires_at=doc["expires_at"],
        order_id=doc.get("order_id"),
        reserved_until=doc.get("reserved_until"),
        reason=doc.get("reason"),
    )


def _sealed(doc: Document) -> SealedKey:
    return SealedKey(doc["_id"], doc["offer_id"], bytes(doc["sealed"]))


def _after(key: PoolKey, claim: dict[str, Any]) -> PoolKey:
    to = claim["to"]
    return PoolKey(
        key_id=key.key_id,
        offer_id=key.offer_id,
        status=KeyStatus(to["status"]),
        gen=int(claim["gen"]) + 1,
        expires_at=key.expires_at,
        order_id=to.get("order_id"),
        reserved_until=to.get("reserved_until"),
        reason=to.get("reason"),
    )
