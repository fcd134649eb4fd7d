"""The reseller service's documents in MongoDB besides its event store.

| collection | `_id` | written by | holds |
|---|---|---|---|
| `credentials` | key id | issuing (insert once), revoking | reseller, sealed secret, active |
| `resellers` | reseller id | the reseller's events | user, markups, webhook URL |
| `reseller_users` | user id | approval (insert once) | one reseller per user |
| `users` | user id | identity's `UserRegistered`, `UserSuspended` | who may be approved |
| `nonces` | `<key id>:<nonce>` | every signed request (insert once) | until when it is kept |
| `offers` | offer id | catalog's offer events (newest version wins) | price, mode, listed |
| `orders` | order id | the order's events | the reseller's view of its order |
| `webhooks` | webhook id | the order's end (insert once), the sender | body, status, next attempt |
| `webhook_attempts` | `<webhook id>:<n>` | the sender (insert: the claim) | an attempt's outcome |

A nonce is used once because its insert under a unique `_id` succeeds once;
it is kept until its timestamp falls out of the ±5 min window, then swept
(FerretDB has no TTL index).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.mongo import Document, write_newer


class Stores:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.credentials: AsyncCollection[Document] = db["credentials"]
        self.resellers: AsyncCollection[Document] = db["resellers"]
        self.reseller_users: AsyncCollection[Document] = db["reseller_users"]
        self.nonces: AsyncCollection[Document] = db["nonces"]
        self.offers: AsyncCollection[Document] = db["offers"]
        self.orders: AsyncCollection[Document] = db["orders"]
        self.webhooks: AsyncCollection[Document] = db["webhooks"]
        self.users: AsyncCollection[Document] = db["users"]
        self.webhook_attempts: AsyncCollection[Document] = db["webhook_attempts"]

    async def ensure_indexes(self) -> None:
        await self.nonces.create_index([("kept_until", ASCENDING)], name="nonce_expiry")
        await self.webhooks.create_index(
            [("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="webhooks_due"
        )
        await self.webhooks.create_index(
            [("reseller_id", ASCENDING), ("created_at", ASCENDING)], name="reseller_webhooks"
        )
        await self.orders.create_index(
            [("reseller_id", ASCENDING), ("requested_at", ASCENDING)], name="reseller_orders"
        )

    # -- nonces -----------------------------------------------------------------------

    async def use_nonce(self, key_id: str, nonce: str, kept_until: datetime) -> bool:
        """True the first time; False if this key already signed with this nonce."""
        try:
            await self.nonces.insert_one({"_id": f"{key_id}:{nonce}", "kept_until": kept_until})
        except DuplicateKeyError:
            return False
        return True

    async def sweep_nonces(self, now: datetime) -> int:
        result = await self.nonces.delete_many({"kept_until": {"$lt": now}})
        return int(result.deleted_count)

    # -- credentials ------------------------------------------------------------------

    async def add_credential(
        self, key_id: str, reseller_id: str, sealed: bytes, now: datetime
    ) -> None:
        await self.credentials.insert_one(
            {
                "_id": key_id,
                "reseller_id": reseller_id,
                "sealed_secret": sealed,
                "active": True,
                "issued_at": now,
            }
        )

    async def revoke_credential(self, key_id: str) -> None:
        await self.credentials.update_one({"_id": key_id}, {"$set": {"active": False}})

    async def credential(self, key_id: str) -> Document | None:
        return await self.credentials.find_one({"_id": key_id})

    async def credentials_of(self, reseller_id: str) -> list[Document]:
        cursor = self.credentials.find({"reseller_id": reseller_id}, {"sealed_secret": 0}).sort(
            "issued_at", ASCENDING
        )
        return [doc async for doc in cursor]

    async def latest_active_credential(self, reseller_id: str) -> Document | None:
        found = [
            doc async for doc in self.credentials.find({"reseller_id": reseller_id, "active": True})
        ]
        return max(found, key=lambda doc: doc["issued_at"]) if found else None

    # -- identity's users -------------------------------------------------------------

    async def record_user(self, user_id: str, fields: Document) -> None:
        await self.users.update_one({"_id": user_id}, {"$set": fields}, upsert=True)

    async def user(self, user_id: str) -> Document | None:
        return await self.users.find_one({"_id": user_id})

    # -- resellers --------------------------------------------------------------------

    async def claim_user(self, user_id: str, reseller_id: str) -> str:
        """The reseller id of this user: the given one if it is the first approval."""
        try:
            await self.reseller_users.insert_one({"_id": user_id, "reseller_id": reseller_id})
        except DuplicateKeyError:
            existing = await self.reseller_users.find_one({"_id": user_id})
            assert existing is not None
            return str(existing["reseller_id"])
        return reseller_id

    async def reseller_of_user(self, user_id: str) -> str | None:
        found = await self.reseller_users.find_one({"_id": user_id})
        return None if found is None else str(found["reseller_id"])

    async def record_reseller(self, reseller_id: str, fields: Document) -> None:
        await self.resellers.update_one({"_id": reseller_id}, {"$set": fields}, upsert=True)

    async def resellers_list(self) -> list[Document]:
        return [doc async for doc in self.resellers.find({}).sort("approved_at", ASCENDING)]

    # -- offers (catalog's events) ----------------------------------------------------

    async def record_offer(self, offer_id: str, version: int, fields: Document) -> None:
        """Newest version wins, so a redelivered older event changes nothing."""
        await write_newer(self.offers, offer_id, version, fields)

    async def offer(self, offer_id: str) -> Document | None:
        return await self.offers.find_one({"_id": offer_id})

    async def resellable_offers(self, limit: int, after: str | None) -> list[Document]:
        query: dict[str, Any] = {"listed": True, "delivery_mode": "auto"}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.offers.find(query).sort("_id", ASCENDING).limit(limit)
        return [doc async for doc in cursor]

    # -- orders -----------------------------------------------------------------------

    async def record_order(self, order_id: str, fields: Document) -> None:
        await self.orders.update_one({"_id": order_id}, {"$set": fields}, upsert=True)

    async def order(self, order_id: str) -> Document | None:
        return await self.orders.find_one({"_id": order_id})

    async def orders_of(self, reseller_id: str, limit: int) -> list[Document]:
        cursor = self.orders.find({"reseller_id": reseller_id}).sort("requested_at", -1)
        return [doc async for doc in cursor.limit(limit)]

    # -- webhooks ---------------------------------------------------------------------

    async def add_webhook(self, document: Document) -> bool:
        try:
            await self.webhooks.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def webhook(self, webhook_id: str) -> Document | None:
        return await self.webhooks.find_one({"_id": webhook_id})

    async def webhooks_of(self, reseller_id: str, limit: int) -> list[Document]:
        cursor = self.webhooks.find({"reseller_id": reseller_id}).sort("created_at", -1)
        return [doc async for doc in cursor.limit(limit)]

    async def due_webhooks(self, now: datetime, limit: int) -> list[Document]:
        cursor = self.webhooks.find({"status": "pending", "next_attempt_at": {"$lte": now}})
        return [doc async for doc in cursor.sort("next_attempt_at", ASCENDING).limit(limit)]

    async def claim_attempt(self, webhook_id: str, number: int, now: datetime) -> bool:
        """Take attempt `number` of a webhook: one sender per attempt, even with
        replicas, because the attempt is an insert under a unique id (conditional
        updates are not atomic on FerretDB, see docs/storage.md)."""
        try:
            await self.webhook_attempts.insert_one(
                {
                    "_id": f"{webhook_id}:{number}",
                    "webhook_id": webhook_id,
                    "number": number,
                    "started_at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def record_attempt(
        self,
        webhook_id: str,
        number: int,
        outcome: Document,
        status: str,
        next_attempt_at: datetime | None,
    ) -> None:
        await self.webhook_attempts.update_one({"_id": f"{webhook_id}:{number}"}, {"$set": outcome})
        await self.webhooks.update_one(
            {"_id": webhook_id},
            {
                "$set": {
                    "status": status,
                    "next_attempt_at": next_attempt_at,
                    "attempt_count": number,
                }
            },
        )

    async def attempts_of(self, webhook_id: str) -> list[Document]:
        cursor = self.webhook_attempts.find({"webhook_id": webhook_id}).sort("number", ASCENDING)
        return [doc async for doc in cursor]

    async def resend_webhook(self, webhook_id: str, now: datetime, attempt_limit: int) -> None:
        await self.webhooks.update_one(
            {"_id": webhook_id},
            {"$set": {"status": "pending", "next_attempt_at": now, "attempt_limit": attempt_limit}},
        )
