"""Identity's own collections, beside the event store (one database, `kami_identity`):

| collection | key | what |
|---|---|---|
| `accounts` | phone | user id and argon2id password hash; the phone's uniqueness |
| `otp_challenges` | phone | the pending code's keyed hash, expiry, attempts, lock |
| `refresh_families` | family id | one login session: current generation, expiry, revocation |
| `id_claims` | HMAC of the ID number | the user it verified; encrypted number and name |
| `advanced_verifications` | user id | the L2 request and its provider attempts |
| `rate_limits` | `<limit>:<subject>#<window>` | one document per hit |
| `seller_applications` | user id | the application to sell, waiting for an operator |
| `suspensions` | user id | who was ever suspended (the stream says whether it holds) |

Every decision that two requests could race for is taken by inserting a
document with a unique `_id`: of two such inserts exactly one succeeds. That
is the one primitive that is atomic on MongoDB and on FerretDB 1.24 alike:
FerretDB (SQLite backend) does not apply an update's filter atomically, so
two concurrent `update_one({"rev": 1}, ...)` or `$inc`s can both "win" or lose
a count. Hence compare-and-set by inserting revisions, and rate limits that
count inserted hits rather than `$inc` one counter.

There are no TTL indexes (FerretDB lacks them): documents carry
`discard_after`/`expires_at`, and `purge_expired` deletes them periodically.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.clock import Clock, utc_now
from kami_events.mongo import Document
from kami_identity.adapters.ports import Account, IdClaim, Versioned
from kami_identity.domain.advanced import AdvancedVerification
from kami_identity.domain.otp import OtpChallenge
from kami_identity.domain.seller_application import SellerApplication
from kami_identity.domain.sessions import RefreshFamily

T = TypeVar("T", bound=BaseModel)

# A superseded revision is deleted only after this long: by then no request
# can still hold it as "the latest" and try to write on top of it.
SUPERSEDED_RETENTION = timedelta(minutes=10)
_MAX_RACES = 5


class MongoVersionedStore(Generic[T]):
    """Compare-and-set by inserting revisions.

    Each state of a record is its own document, `_id = "<key>#<rev>"`. `put`
    inserts revision `expected_rev + 1`, so of two writers that read the same
    revision exactly one insert succeeds; `get` reads the highest revision.
    Older revisions are flagged `superseded` and purged later.
    """

    def __init__(
        self, collection: AsyncCollection[Document], model: type[T], *, clock: Clock = utc_now
    ) -> None:
        self.collection = collection
        self._model = model
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("key", ASCENDING), ("rev", DESCENDING)])
        await self.collection.create_index([("superseded", ASCENDING), ("written_at", ASCENDING)])
        if "discard_after" in self._model.model_fields:
            await self.collection.create_index("discard_after")

    async def get(self, key: str) -> Versioned[T] | None:
        doc = await self.collection.find_one({"key": key}, sort=[("rev", DESCENDING)])
        return None if doc is None else self._versioned(doc)

    async def put(self, key: str, value: T, expected_rev: int | None) -> bool:
        rev = (expected_rev or 0) + 1
        try:
            await self.collection.insert_one(
                {
                    "_id": f"{key}#{rev}",
                    "key": key,
                    "rev": rev,
                    "superseded": False,
                    "written_at": self._clock(),
                    **value.model_dump(),
                }
            )
        except DuplicateKeyError:
            return False
        if rev > 1:
            await self.collection.update_many(
                {"key": key, "rev": {"$lt": rev}, "superseded": False},
                {"$set": {"superseded": True}},
            )
        return True

    async def latest_where(self, query: Document, limit: int = 1000) -> list[Versioned[T]]:
        """The latest revision of every record that has a current revision
        matching `query`; the caller re-checks the values it needs."""
        cursor = self.collection.find({**query, "superseded": False}, {"key": 1}).limit(limit)
        keys = {doc["key"] async for doc in cursor}
        found = [await self.get(key) for key in sorted(keys)]
        return [stored for stored in found if stored is not None]

    async def purge_expired(self, now: datetime) -> int:
        removed = await self.collection.delete_many(
            {"superseded": True, "written_at": {"$lt": now - SUPERSEDED_RETENTION}}
        )
        count = removed.deleted_count
        if "discard_after" in self._model.model_fields:
            expired = await self.collection.delete_many({"discard_after": {"$lt": now}})
            count += expired.deleted_count
        return count

    def _versioned(self, doc: Document) -> Versioned[T]:
        fields: dict[str, Any] = {
            name: value
            for name, value in doc.items()
            if name not in {"_id", "key", "rev", "superseded", "written_at"}
        }
        return Versioned(self._model.model_validate(fields), int(doc["rev"]))


class MongoRefreshFamilies(MongoVersionedStore[RefreshFamily]):
    def __init__(self, collection: AsyncCollection[Document], *, clock: Clock = utc_now) -> None:
        super().__init__(collection, RefreshFamily, clock=clock)

    async def ensure_indexes(self) -> None:
        await super().ensure_indexes()
        await self.collection.create_index("user_id")

    async def revoke_all_for(self, user_id: str, reason: str, now: datetime) -> int:
        revoked = 0
        for stored in await self.latest_where({"user_id": user_id, "revoked_at": None}):
            revoked += await self._revoke(stored, reason, now)
        return revoked

    async def _revoke(
        self, stored: Versioned[RefreshFamily] | None, reason: str, now: datetime
    ) -> bool:
        for _ in range(_MAX_RACES):
            if stored is None or stored.value.revoked_at is not None:
                return False
            family = stored.value
            if await self.put(family.family_id, family.revoke(reason, now), stored.rev):
                return True
            stored = await self.get(family.family_id)  # rotated meanwhile: revoke that
        return False


class MongoAdvancedRequests(MongoVersionedStore[AdvancedVerification]):
    def __init__(self, collection: AsyncCollection[Document], *, clock: Clock = utc_now) -> None:
        super().__init__(collection, AdvancedVerification, clock=clock)

    async def ensure_indexes(self) -> None:
        await super().ensure_indexes()
        await self.collection.create_index(
            [("status", ASCENDING), ("superseded", ASCENDING), ("next_attempt_at", ASCENDING)]
        )

    async def due(self, now: datetime, limit: int) -> list[AdvancedVerification]:
        candidates = await self.latest_where(
            {"status": "pending", "next_attempt_at": {"$lte": now}}, limit
        )
        due = [stored.value for stored in candidates if stored.value.is_due(now)]
        return sorted(due, key=lambda request: request.next_attempt_at)

    async def pending(self, limit: int) -> list[AdvancedVerification]:
        found = await self.latest_where({"status": "pending"}, limit)
        pending = [stored.value for stored in found if stored.value.status == "pending"]
        return sorted(pending, key=lambda request: request.submitted_at)


class MongoSellerApplications(MongoVersionedStore[SellerApplication]):
    def __init__(self, collection: AsyncCollection[Document], *, clock: Clock = utc_now) -> None:
        super().__init__(collection, SellerApplication, clock=clock)

    async def ensure_indexes(self) -> None:
        await super().ensure_indexes()
        await self.collection.create_index([("status", ASCENDING), ("superseded", ASCENDING)])

    async def pending(self, limit: int) -> list[SellerApplication]:
        found = await self.latest_where({"status": "pending"}, limit)
        pending = [stored.value for stored in found if stored.value.status == "pending"]
        return sorted(pending, key=lambda application: application.submitted_at)


class MongoSuspensions:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("suspended_at", DESCENDING)])

    async def remember(self, user_id: str, at: datetime) -> None:
        # Two racing upserts on FerretDB: the loser's E11000 means the other wrote it.
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.update_one(
                {"_id": user_id}, {"$set": {"suspended_at": at}}, upsert=True
            )

    async def user_ids(self, limit: int) -> list[str]:
        cursor = self.collection.find({}).sort("suspended_at", DESCENDING).limit(limit)
        return [str(doc["_id"]) async for doc in cursor]


class MongoAccounts:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("user_id", unique=True)

    async def add(self, account: Account) -> bool:
        fields = account.model_dump(exclude={"phone"})
        try:
            await self.collection.insert_one({"_id": account.phone, **fields})
        except DuplicateKeyError:
            return False
        return True

    async def by_phone(self, phone: str) -> Account | None:
        doc = await self.collection.find_one({"_id": phone})
        if doc is None:
            return None
        return Account(phone=doc.pop("_id"), **doc)

    async def set_password_hash(self, phone: str, password_hash: str) -> None:
        await self.collection.update_one({"_id": phone}, {"$set": {"password_hash": password_hash}})


class MongoIdClaims:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("user_id")

    @staticmethod
    def _fields(claim: IdClaim) -> Document:
        return claim.model_dump(exclude={"fingerprint"})

    @staticmethod
    def _claim(doc: Document) -> IdClaim:
        return IdClaim(fingerprint=doc.pop("_id"), **doc)

    async def claim(self, claim: IdClaim) -> IdClaim:
        while True:
            try:
                await self.collection.insert_one({"_id": claim.fingerprint, **self._fields(claim)})
            except DuplicateKeyError:
                pass
            else:
                return claim
            mine = await self.collection.find_one_and_update(
                {"_id": claim.fingerprint, "user_id": claim.user_id, "confirmed": False},
                {"$set": self._fields(claim)},
                return_document=ReturnDocument.AFTER,
            )
            holder = mine or await self.collection.find_one({"_id": claim.fingerprint})
            if holder is not None:  # else it was released meanwhile: insert again
                return self._claim(holder)

    async def take_over(self, abandoned: IdClaim, claim: IdClaim) -> bool:
        # Delete, then insert: if two requests take over at once, only one
        # insert succeeds.
        await self.collection.delete_one(
            {
                "_id": abandoned.fingerprint,
                "user_id": abandoned.user_id,
                "claimed_at": abandoned.claimed_at,
                "confirmed": False,
            }
        )
        try:
            await self.collection.insert_one({"_id": claim.fingerprint, **self._fields(claim)})
        except DuplicateKeyError:
            return False
        return True

    async def confirm(self, fingerprint: str, user_id: str) -> None:
        await self.collection.update_one(
            {"_id": fingerprint, "user_id": user_id}, {"$set": {"confirmed": True}}
        )

    async def release(self, fingerprint: str, user_id: str) -> None:
        await self.collection.delete_one(
            {"_id": fingerprint, "user_id": user_id, "confirmed": False}
        )

    async def confirmed_for(self, user_id: str) -> IdClaim | None:
        doc = await self.collection.find_one({"user_id": user_id, "confirmed": True})
        return None if doc is None else self._claim(doc)


class MongoRateCounter:
    """One inserted document per hit, counted per window: no hit is lost to a
    racing update (see the module docstring)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("bucket")
        await self.collection.create_index("expires_at")

    async def hit(self, key: str, window: int, expires_at: datetime) -> tuple[int, int]:
        bucket = f"{key}#{window}"
        await self.collection.insert_one({"bucket": bucket, "expires_at": expires_at})
        current = await self.collection.count_documents({"bucket": bucket})
        previous = await self.collection.count_documents({"bucket": f"{key}#{window - 1}"})
        return current, previous

    async def purge_expired(self, now: datetime) -> int:
        result = await self.collection.delete_many({"expires_at": {"$lt": now}})
        return result.deleted_count


class IdentityStores:
    """Every identity collection in `database`, with their indexes."""

    def __init__(self, database: AsyncDatabase[Document], *, clock: Clock = utc_now) -> None:
        self.accounts = MongoAccounts(database["accounts"])
        self.otps = MongoVersionedStore(database["otp_challenges"], OtpChallenge, clock=clock)
        self.sessions = MongoRefreshFamilies(database["refresh_families"], clock=clock)
        self.id_claims = MongoIdClaims(database["id_claims"])
        self.advanced = MongoAdvancedRequests(database["advanced_verifications"], clock=clock)
        self.rate_counter = MongoRateCounter(database["rate_limits"])
        self.seller_applications = MongoSellerApplications(
            database["seller_applications"], clock=clock
        )
        self.suspensions = MongoSuspensions(database["suspensions"])

    async def ensure_indexes(self) -> None:
        await self.accounts.ensure_indexes()
        await self.otps.ensure_indexes()
        await self.sessions.ensure_indexes()
        await self.id_claims.ensure_indexes()
        await self.advanced.ensure_indexes()
        await self.rate_counter.ensure_indexes()
        await self.seller_applications.ensure_indexes()
        await self.suspensions.ensure_indexes()

    async def purge_expired(self, now: datetime) -> int:
        return (
            await self.otps.purge_expired(now)
            + await self.sessions.purge_expired(now)
            + await self.advanced.purge_expired(now)
            + await self.seller_applications.purge_expired(now)
            + await self.rate_counter.purge_expired(now)
        )
