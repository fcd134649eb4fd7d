"""Usage limits decided by unique inserts (docs/storage.md, docs/commerce.md).

A quota is a coupon's uses (`coupon:<code>`) or a flash sale's keys
(`flash:<flash_sale_id>`), with a total limit and a per-buyer limit. Each
unit an order takes is two claim documents, inserted before the order is
committed:

- a buyer slot `<quota>|<buyer_id>#<m>`, m < per-buyer limit;
- a total slot `<quota>#<n>`, n < total limit.

An insert under a taken `_id` fails, so no more orders than there are slots
ever hold the quota, however many race (FerretDB decides neither `$inc` nor a
conditional update). The order that inserted a slot is its only writer:
it marks it `redeemed` once delivered, and deletes it when it ends without
the sale (cancelled, expired, refunded), so the slot can be taken again.

A quota found with every total slot taken is remembered as exhausted for a
moment (`EXHAUSTED_MEMO_SECONDS`): at a flash sale's start most orders lose,
and each loser is then answered without touching the database, instead of
inserting a buyer slot, scanning the total slots and deleting its slot
again while the winners' saga waits behind them. A slot given back in this
process forgets the memo at once; one given back by another process is seen
when the memo lapses, so the memo refuses nothing for longer than that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.clock import Clock
from kami_ordering import metrics

Document = dict[str, Any]


class ClaimResult(StrEnum):
    CLAIMED = "claimed"
    BUYER_LIMIT = "buyer_limit"  # this buyer holds or used all it may
    EXHAUSTED = "exhausted"  # every slot is held or used


@dataclass(frozen=True)
class Quota:
    quota_id: str
    total_limit: int
    per_buyer_limit: int


def coupon_quota(code: str, total_limit: int, per_buyer_limit: int) -> Quota:
    return Quota(f"coupon:{code}", total_limit, per_buyer_limit)


def flash_sale_quota(flash_sale_id: str, stock_cap: int, per_buyer_limit: int) -> Quota:
    return Quota(f"flash:{flash_sale_id}", stock_cap, per_buyer_limit)


class MongoQuotaClaims:
    EXHAUSTED_MEMO_SECONDS = 1.0

    def __init__(
        self,
        db: AsyncDatabase[Document],
        clock: Clock,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._claims = db["quota_claims"]
        self._clock = clock
        self._monotonic = monotonic
        # quota id -> the monotonic instant its "exhausted" memo lapses
        self._exhausted_until: dict[str, float] = {}

    async def ensure_indexes(self) -> None:
        await self._claims.create_index("quota")
        await self._claims.create_index("order_id")

    async def claim(self, quota: Quota, buyer_id: str, order_id: str, units: int) -> ClaimResult:
        """Take `units` buyer slots and `units` total slots for the order, or none."""
        if self.known_exhausted(quota.quota_id):
            metrics.QUOTA_CLAIMS.labels(_kind(quota), ClaimResult.EXHAUSTED.value).inc()
            return ClaimResult.EXHAUSTED
        # Fewer free total slots than units: refused before any slot is
        # taken (the inserts below still decide; this only spares a loser
        # the insert and delete of its buyer slot).
        free = await self._free_total_slots(quota)
        if len(free) < units:
            return self._exhausted(quota, sold_out=not free)
        taken: list[str] = []
        try:
            for m in range(quota.per_buyer_limit):
                if len(taken) == units:
                    break
                if await self._insert(
                    f"{quota.quota_id}|{buyer_id}#{m}", quota, order_id, buyer_id
                ):
                    taken.append(f"{quota.quota_id}|{buyer_id}#{m}")
            if len(taken) < units:
                await self._delete(taken, order_id)
                metrics.QUOTA_CLAIMS.labels(_kind(quota), ClaimResult.BUYER_LIMIT.value).inc()
                return ClaimResult.BUYER_LIMIT
            got = 0
            while got < units:
                if not free:
                    free = await self._free_total_slots(quota)
                if not free:
                    await self._delete(taken, order_id)
                    return self._exhausted(quota, sold_out=True)
                # Racers start at different free slots, so most inserts win the first time.
                random.shuffle(free)
                tried, free = free, []
                for slot in tried:
                    if await self._insert(slot, quota, order_id, buyer_id, total=True):
                        taken.append(slot)
                        got += 1
                        if got == units:
                            break
        except BaseException:
            await self._delete(taken, order_id)
            self._exhausted_until.pop(quota.quota_id, None)  # its total slots are free again
            raise
        metrics.QUOTA_CLAIMS.labels(_kind(quota), ClaimResult.CLAIMED.value).inc()
        return ClaimResult.CLAIMED

    async def release(self, quota_id: str, order_id: str) -> int:
        """Give the order's slots back (idempotent; only the order's own slots)."""
        result = await self._claims.delete_many({"quota": quota_id, "order_id": order_id})
        if result.deleted_count:
            self._exhausted_until.pop(quota_id, None)
            metrics.QUOTA_RELEASES.labels(quota_id.partition(":")[0]).inc()
        return result.deleted_count

    async def redeem(self, quota_id: str, order_id: str) -> int:
        """The order's slots are used for good (idempotent): how many changed now."""
        result = await self._claims.update_many(
            {"quota": quota_id, "order_id": order_id, "status": "held"},
            {"$set": {"status": "redeemed", "redeemed_at": self._clock()}},
        )
        return result.modified_count

    async def slots(self, quota_id: str) -> list[Document]:
        return await self._claims.find({"quota": quota_id}).to_list(None)

    async def _free_total_slots(self, quota: Quota) -> list[str]:
        used = {
            doc["_id"]
            for doc in await self._claims.find(
                {"quota": quota.quota_id, "slot": "total"}, {"_id": 1}
            ).to_list(None)
        }
        return [
            f"{quota.quota_id}#{n}"
            for n in range(quota.total_limit)
            if f"{quota.quota_id}#{n}" not in used
        ]

    def _exhausted(self, quota: Quota, *, sold_out: bool) -> ClaimResult:
        """Refused: too few free slots. Remembered only when none is free (an
        order for fewer units may still fit)."""
        if sold_out:
            self._exhausted_until[quota.quota_id] = self._monotonic() + self.EXHAUSTED_MEMO_SECONDS
        metrics.QUOTA_CLAIMS.labels(_kind(quota), ClaimResult.EXHAUSTED.value).inc()
        return ClaimResult.EXHAUSTED

    def known_exhausted(self, quota_id: str) -> bool:
        until = self._exhausted_until.get(quota_id)
        if until is None:
            return False
        if self._monotonic() < until:
            return True
        del self._exhausted_until[quota_id]
        return False

    async def _insert(
        self, slot: str, quota: Quota, order_id: str, buyer_id: str, *, total: bool = False
    ) -> bool:
        doc = {
            "_id": slot,
            "quota": quota.quota_id,
            "slot": "total" if total else "buyer",
            "order_id": order_id,
            "buyer_id": buyer_id,
            "status": "held",
            "claimed_at": self._clock(),
        }
        try:
            await self._claims.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def _delete(self, slots: list[str], order_id: str) -> None:
        for slot in slots:
            await self._claims.delete_one({"_id": slot, "order_id": order_id})


def _kind(quota: Quota) -> str:
    return quota.quota_id.partition(":")[0]
