"""Payment's read models of other services' facts, and its small stores.

- `orders`: each order's saga state as ordering announced it (what may be paid,
  for how much, until when). Later states win: an older event replayed after a
  newer one changes nothing. One order's events come in order from one
  partition, so no two writers compete for an order.
- `buyers` / `sellers`: tiers, daily limits and suspensions, approved sellers
  (identity's events).
- `daily_spend`: what each buyer committed to pay per Asia/Shanghai day;
  `password_free_spend`, the same for payments made without the password.
- `password_free_settings`: each buyer's password-free small payments
  setting (小额免密), written only by the buyer's own requests.
- `deposit_standings`: each seller's deposit balance against the minimum (for
  the `kami_payment_deposits_below_minimum` gauge).
- `wallet_credentials` and `wallet_password_attempts`: the argon2id hash of
  each buyer's payment password, and the attempts made with it.

Races are decided the way `docs/storage.md` requires on FerretDB, where a
conditional update or an `$inc` does not decide a race: by inserting under a
unique key. The daily spend is a journal per buyer and day, each entry with
the next `seq` (unique per day) and the running total, so two racing
payments cannot both fit under the limit. Password attempts take numbered
slots (unique per password generation) before the password is checked, so
however many guesses race, at most `max_attempts` are ever checked.

All are rebuildable from events except the credentials (a secret, never in
an event).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from uuid import uuid4

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.catalogue.identity import KycTier
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.mongo import Document, write_newer
from kami_payment.domain.parties import BuyerStanding, OrderStatus, OrderView, SellerAccount
from kami_payment.domain.wallet import PasswordFree

# -- ports ---------------------------------------------------------------------


class OrderBook(Protocol):
    async def advance(self, order_id: str, status: OrderStatus, fields: dict[str, Any]) -> None:
        """Move the order to `status` with `fields`, unless it is already as far."""

    async def get(self, order_id: str) -> OrderView | None: ...


class Parties(Protocol):
    async def record_tier(self, user_id: str, tier: KycTier, daily_payment_limit: int) -> None: ...

    async def record_suspension(self, user_id: str, until: datetime | None) -> None: ...

    async def record_seller(
        self, user_id: str, shop_name: str, approved_at: datetime, category: str | None
    ) -> None: ...

    async def buyer(self, user_id: str, default_daily_limit: int) -> BuyerStanding: ...

    async def seller(self, user_id: str) -> SellerAccount | None: ...


class DailySpend(Protocol):
    async def reserve(
        self, buyer_id: str, day: date, payment_id: str, amount: int, limit: int
    ) -> bool:
        """Count `amount` against the day's limit once per payment; False if it
        would exceed it."""

    async def release(self, buyer_id: str, day: date, payment_id: str, amount: int) -> None: ...

    async def spent(self, buyer_id: str, day: date) -> int: ...


class PasswordFreeSettings(Protocol):
    async def get(self, buyer_id: str) -> PasswordFree: ...

    async def put(self, buyer_id: str, setting: PasswordFree, at: datetime) -> None: ...


class DepositStandings(Protocol):
    async def record(self, seller_id: str, version: int, balance: int, minimum: int) -> None:
        """Keep a deposit's balance as of its stream `version`; an older
        version than the kept one changes nothing."""

    async def count_below_minimum(self) -> int: ...


@dataclass(frozen=True)
class WalletCredential:
    """A payment password's hash. `generation` names the current run of
    attempts: a new one starts when the password is set, after a success and
    when a lock is imposed."""

    buyer_id: str
    password_hash: str
    generation: str
    locked_until: datetime | None = None
    # Each new password, and each rehash of one, is the next revision.
    revision: int = 0

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


class Credentials(Protocol):
    async def get(self, buyer_id: str) -> WalletCredential | None: ...

    async def set_hash(self, buyer_id: str, password_hash: str) -> None:
        """Store a new password (a new generation, no lock), after whatever
        revision is current."""

    async def rehash(self, credential: WalletCredential, password_hash: str) -> bool:
        """Store the same password hashed anew, only as the revision right
        after `credential`'s; False (nothing stored) if that was taken."""

    async def claim_attempt(self, credential: WalletCredential, max_attempts: int) -> int | None:
        """Take the next attempt slot (1..max) of the credential's generation,
        before checking a password; None when every slot is taken."""

    async def new_generation(
        self, credential: WalletCredential, locked_until: datetime | None
    ) -> None:
        """Start counting attempts afresh (after a success), or lock until then."""


# -- MongoDB ---------------------------------------------------------------------


@dataclass(frozen=True)
class ResellerTerms:
    """What a reseller's order costs the reseller (`ResellerOrderRequested`)."""

    order_id: str
    reseller_id: str
    user_id: str
    total: int
    reseller_total: int


class ResellerOrders(Protocol):
    async def record(self, terms: ResellerTerms) -> None:
        """Insert once: a redelivered event changes nothing."""

    async def get(self, order_id: str) -> ResellerTerms | None: ...


class MongoResellerOrders:
    """`reseller_orders`: one document per reseller order, inserted once."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._orders: AsyncCollection[Document] = database["reseller_orders"]

    async def record(self, terms: ResellerTerms) -> None:
        await self._orders.update_one(
            {"_id": terms.order_id},
            {
                "$setOnInsert": {
                    "reseller_id": terms.reseller_id,
                    "user_id": terms.user_id,
                    "total": terms.total,
                    "reseller_total": terms.reseller_total,
                }
            },
            upsert=True,
        )

    async def get(self, order_id: str) -> ResellerTerms | None:
        doc = await self._orders.find_one({"_id": order_id})
        if doc is None:
            return None
        return ResellerTerms(
            order_id=order_id,
            reseller_id=doc["reseller_id"],
            user_id=doc["user_id"],
            total=int(doc["total"]),
            reseller_total=int(doc["reseller_total"]),
        )


class MongoOrderBook:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._orders: AsyncCollection[Document] = database["orders"]

    async def advance(self, order_id: str, status: OrderStatus, fields: dict[str, Any]) -> None:
        # A replayed or late older event finds the order already as far or
        # further, and changes nothing.
        await write_newer(
            self._orders, order_id, status.rank, {**fields, "status": status.value}, guard="rank"
        )

    async def get(self, order_id: str) -> OrderView | None:
        doc = await self._orders.find_one({"_id": order_id})
        if doc is None or "total" not in doc or "payment_deadline" not in doc:
            return None
        return OrderView(
            order_id=order_id,
            buyer_id=doc["buyer_id"],
            seller_id=doc["seller_id"],
            total=int(doc["total"]),
            status=OrderStatus(doc["status"]),
            payment_deadline=doc["payment_deadline"],
            reservation_expires_at=doc.get("reservation_expires_at"),
            traceparent=doc.get("traceparent"),
            discount=int(doc.get("discount") or 0),
            discount_funded_by=_funder(doc.get("discount_funded_by")),
        )


class MongoDepositStandings:
    """`deposit_standings`: one document per seller (`_id` = seller id) with
    its deposit's last balance, for the below-minimum gauge. One document per
    seller keeps the periodic count small."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._standings: AsyncCollection[Document] = database["deposit_standings"]

    async def record(self, seller_id: str, version: int, balance: int, minimum: int) -> None:
        await write_newer(
            self._standings,
            seller_id,
            version,
            {"balance": balance, "minimum": minimum, "below_minimum": balance < minimum},
        )

    async def count_below_minimum(self) -> int:
        return await self._standings.count_documents({"below_minimum": True})


class MongoPasswordFreeSettings:
    """`password_free_settings`: one document per buyer. Only that buyer's
    own requests write it, and each write is a whole `$set`: two racing
    changes leave one of them, both of which the buyer asked for."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._settings: AsyncCollection[Document] = database["password_free_settings"]

    async def get(self, buyer_id: str) -> PasswordFree:
        doc = await self._settings.find_one({"_id": buyer_id})
        if doc is None:
            return PasswordFree()
        return PasswordFree(
            enabled=bool(doc["enabled"]),
            per_payment_limit=int(doc["per_payment_limit"]),
            daily_cap=int(doc["daily_cap"]),
        )

    async def put(self, buyer_id: str, setting: PasswordFree, at: datetime) -> None:
        await self._settings.update_one(
            {"_id": buyer_id},
            {
                "$set": {
                    "enabled": setting.enabled,
                    "per_payment_limit": setting.per_payment_limit,
                    "daily_cap": setting.daily_cap,
                    "changed_at": at,
                }
            },
            upsert=True,
        )


class MongoParties:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._buyers: AsyncCollection[Document] = database["buyers"]
        self._sellers: AsyncCollection[Document] = database["sellers"]

    async def record_tier(self, user_id: str, tier: KycTier, daily_payment_limit: int) -> None:
        await self._buyers.update_one(
            {"_id": user_id},
            {"$set": {"tier": tier.value, "daily_payment_limit": daily_payment_limit}},
            upsert=True,
        )

    async def record_suspension(self, user_id: str, until: datetime | None) -> None:
        await self._buyers.update_one(
            {"_id": user_id},
            {"$set": {"suspended": True, "suspended_until": until}},
            upsert=True,
        )

    async def record_seller(
        self, user_id: str, shop_name: str, approved_at: datetime, category: str | None
    ) -> None:
        await self._sellers.update_one(
            {"_id": user_id},
            # `$set` only: FerretDB drops `$setOnInsert` beside `$set` (docs/storage.md).
            {"$set": {"shop_name": shop_name, "approved_at": approved_at, "category": category}},
            upsert=True,
        )

    async def buyer(self, user_id: str, default_daily_limit: int) -> BuyerStanding:
        doc = await self._buyers.find_one({"_id": user_id}) or {}
        tier = doc.get("tier")
        return BuyerStanding(
            buyer_id=user_id,
            tier=KycTier(tier) if tier else None,
            daily_payment_limit=int(doc.get("daily_payment_limit", default_daily_limit)),
            suspended=bool(doc.get("suspended", False)),
            suspended_until=doc.get("suspended_until"),
        )

    async def seller(self, user_id: str) -> SellerAccount | None:
        doc = await self._sellers.find_one({"_id": user_id})
        if doc is None:
            return None
        return SellerAccount(user_id, doc["shop_name"], doc["approved_at"], doc.get("category"))


class MongoDailySpend:
    """Per buyer and day, a journal: `count` and `release` entries for each
    payment (numbered, so a payment released and counted again is counted
    once more), each carrying the day's running total."""

    MAX_ATTEMPTS = 200

    def __init__(self, database: AsyncDatabase[Document], collection: str = "daily_spend") -> None:
        # `password_free_spend` is the same journal for the password-free cap.
        self._entries: AsyncCollection[Document] = database[collection]

    async def ensure_indexes(self) -> None:
        await self._entries.create_index(
            [("day_key", ASCENDING), ("seq", ASCENDING)], unique=True, name="day_seq_unique"
        )
        await self._entries.create_index(
            [("day_key", ASCENDING), ("payment_id", ASCENDING)], name="day_payment"
        )

    async def reserve(
        self, buyer_id: str, day: date, payment_id: str, amount: int, limit: int
    ) -> bool:
        if amount > limit:
            return False
        key = _day_key(buyer_id, day)
        for attempt in range(self.MAX_ATTEMPTS):
            # The first try guesses the payment was never counted (it nearly
            # always is new): its entry's `_id` refuses the guess otherwise.
            guessed = attempt == 0
            counted, round_ = (False, 0) if guessed else await self._state(key, payment_id)
            if counted:
                return True
            last = await self._last(key)
            total = int(last["total"]) if last else 0
            if total + amount > limit:
                # Over the limit only if a racing twin of this request did not
                # count this very payment in the meantime.
                counted, _ = await self._state(key, payment_id)
                return counted
            outcome = await self._insert(
                key, f"{key}|{payment_id}|count|{round_ + 1}", payment_id, last, amount
            )
            if outcome == "inserted" or (outcome == "exists" and not guessed):
                return True  # counted, by this request or by a racing twin of it
            # The seq was taken, or the guess was wrong (counted before, maybe
            # released since): ask what stands.
        raise RuntimeError(f"daily spend of {key} stayed contended")

    async def release(self, buyer_id: str, day: date, payment_id: str, amount: int) -> None:
        key = _day_key(buyer_id, day)
        for _ in range(self.MAX_ATTEMPTS):
            counted, round_ = await self._state(key, payment_id)
            if not counted:
                return
            last = await self._last(key)
            outcome = await self._insert(
                key, f"{key}|{payment_id}|release|{round_}", payment_id, last, -amount
            )
            if outcome != "seq_taken":
                return
        raise RuntimeError(f"daily spend of {key} stayed contended")

    async def spent(self, buyer_id: str, day: date) -> int:
        last = await self._last(_day_key(buyer_id, day))
        return int(last["total"]) if last else 0

    async def _state(self, key: str, payment_id: str) -> tuple[bool, int]:
        """Whether the payment counts now, and how many times it was counted."""
        entries = await self._entries.find(
            {"day_key": key, "payment_id": payment_id}, {"kind": 1}
        ).to_list()
        counts = sum(1 for e in entries if e["kind"] == "count")
        releases = sum(1 for e in entries if e["kind"] == "release")
        return counts > releases, counts

    async def _last(self, key: str) -> Document | None:
        return await self._entries.find_one({"day_key": key}, sort=[("seq", DESCENDING)])

    async def _insert(
        self, key: str, entry_id: str, payment_id: str, last: Document | None, amount: int
    ) -> str:
        try:
            await self._entries.insert_one(
                {
                    "_id": entry_id,
                    "day_key": key,
                    "payment_id": payment_id,
                    "kind": "count" if amount > 0 else "release",
                    "seq": (int(last["seq"]) if last else 0) + 1,
                    "amount": amount,
                    "total": (int(last["total"]) if last else 0) + amount,
                }
            )
        except DuplicateKeyError:
            if await self._entries.find_one({"_id": entry_id}, {"_id": 1}) is not None:
                return "exists"
            return "seq_taken"
        return "inserted"


def _day_key(buyer_id: str, day: date) -> str:
    return f"{buyer_id}|{day.isoformat()}"


class MongoCredentials:
    """`wallet_credentials`: numbered revisions of each buyer's payment
    password. Revision 0 is `_id` = the buyer, revision n `<buyer>|<n>`. A new
    password or a rehash *inserts* the next revision, so the unique `_id`
    decides races (docs/storage.md) and no write overwrites a hash: a rehash
    takes only the revision right after the one it checked, so it can never
    land over a password changed meanwhile. Revision 0 keeps `latest`, a hint
    written after each insert; reads continue past it by `_id` until a
    revision is missing, so a hint that lags (or was lowered by a racing
    writer) costs one more read, never a stale password."""

    MAX_ATTEMPTS = 50

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._credentials: AsyncCollection[Document] = database["wallet_credentials"]
        self._attempts: AsyncCollection[Document] = database["wallet_password_attempts"]

    async def ensure_indexes(self) -> None:
        await self._attempts.create_index(
            [("buyer_id", ASCENDING), ("generation", ASCENDING)], name="buyer_generation"
        )

    async def get(self, buyer_id: str) -> WalletCredential | None:
        head = await self._credentials.find_one({"_id": buyer_id})
        if head is None:
            return None
        revision, doc = 0, head
        hinted = int(head.get("latest", 0))
        if hinted > 0:
            hinted_doc = await self._credentials.find_one({"_id": _revision_id(buyer_id, hinted)})
            if hinted_doc is not None:
                revision, doc = hinted, hinted_doc
        while True:
            newer = await self._credentials.find_one({"_id": _revision_id(buyer_id, revision + 1)})
            if newer is None:
                return _credential(buyer_id, revision, doc)
            revision, doc = revision + 1, newer

    async def set_hash(self, buyer_id: str, password_hash: str) -> None:
        for _ in range(self.MAX_ATTEMPTS):
            current = await self.get(buyer_id)
            revision = current.revision + 1 if current is not None else 0
            if await self._insert_revision(buyer_id, revision, password_hash):
                return
            # Another password (or a rehash of the old one) took that revision:
            # this one, also authorised, goes after it.
        raise RuntimeError(f"the payment password of {buyer_id} stayed contended")

    async def rehash(self, credential: WalletCredential, password_hash: str) -> bool:
        return await self._insert_revision(
            credential.buyer_id, credential.revision + 1, password_hash
        )

    async def _insert_revision(self, buyer_id: str, revision: int, password_hash: str) -> bool:
        try:
            await self._credentials.insert_one(
                {
                    "_id": _revision_id(buyer_id, revision),
                    "password_hash": password_hash,
                    "generation": uuid4().hex,
                    "locked_until": None,
                }
            )
        except DuplicateKeyError:
            return False
        if revision > 0:
            await self._credentials.update_one({"_id": buyer_id}, {"$set": {"latest": revision}})
        return True

    async def claim_attempt(self, credential: WalletCredential, max_attempts: int) -> int | None:
        # Slot by slot from 1 by `_id`, rather than counting the taken ones: a
        # count filters on two fields, which FerretDB answers by scanning the
        # whole (ever growing) collection. A fresh generation takes slot 1 at once.
        for slot in range(1, max_attempts + 1):
            try:
                await self._attempts.insert_one(
                    {
                        "_id": f"{credential.buyer_id}|{credential.generation}|{slot}",
                        "buyer_id": credential.buyer_id,
                        "generation": credential.generation,
                        "slot": slot,
                    }
                )
            except DuplicateKeyError:
                continue  # a racing attempt took it: try the next
            return slot
        return None

    async def new_generation(
        self, credential: WalletCredential, locked_until: datetime | None
    ) -> None:
        # On the revision the attempts were counted on; a newer revision has
        # its own fresh generation and no lock.
        await self._credentials.update_one(
            {"_id": _revision_id(credential.buyer_id, credential.revision)},
            {"$set": {"generation": uuid4().hex, "locked_until": locked_until}},
        )


def _revision_id(buyer_id: str, revision: int) -> str:
    return buyer_id if revision == 0 else f"{buyer_id}|{revision}"


def _credential(buyer_id: str, revision: int, doc: Document) -> WalletCredential:
    return WalletCredential(
        buyer_id=buyer_id,
        password_hash=doc["password_hash"],
        generation=doc["generation"],
        locked_until=doc.get("locked_until"),
        revision=revision,
    )


def _funder(value: object) -> DiscountFunder | None:
    return DiscountFunder(value) if isinstance(value, str) else None
