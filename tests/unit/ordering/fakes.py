"""In-memory stand-ins for ordering's MongoDB read models, with the same
behaviour the handlers rely on (version-guarded views, atomic idempotency
claims, claim holds on deadlines)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from kami_ordering.adapters.ports import OrderRequest
from kami_ordering.adapters.quotas import ClaimResult, Quota
from kami_ordering.adapters.repository import LoadedOrder
from kami_ordering.domain.order import Deadline
from kami_ordering.domain.terms import OfferTerms, ProductTerms


@dataclass
class FakeCatalog:
    offers: dict[str, OfferTerms] = field(default_factory=dict)
    products: dict[str, ProductTerms] = field(default_factory=dict)
    suspended_until: dict[str, datetime | None] = field(default_factory=dict)

    async def offer(self, offer_id: str) -> OfferTerms | None:
        return self.offers.get(offer_id)

    async def product(self, product_id: str) -> ProductTerms | None:
        return self.products.get(product_id)

    async def is_suspended(self, user_id: str, now: datetime) -> bool:
        if user_id not in self.suspended_until:
            return False
        until = self.suspended_until[user_id]
        return until is None or until > now


@dataclass
class FakeOrderRequests:
    by_key: dict[tuple[str, str], OrderRequest] = field(default_factory=dict)

    async def find(self, buyer_id: str, idempotency_key: str) -> OrderRequest | None:
        return self.by_key.get((buyer_id, idempotency_key))

    async def claim(self, request: OrderRequest) -> OrderRequest:
        # Atomic in a single event loop: no await between the check and the insert.
        return self.by_key.setdefault((request.buyer_id, request.idempotency_key), request)


@dataclass
class DeadlineRow:
    version: int
    deadline: Deadline | None
    open_tickets: set[str] = field(default_factory=set)


@dataclass
class FakeOrderViews:
    orders: dict[str, LoadedOrder] = field(default_factory=dict)
    deadlines: dict[str, DeadlineRow] = field(default_factory=dict)

    async def sync(self, loaded: LoadedOrder, deadline: Deadline | None) -> None:
        # As MongoOrderViews: never over a later version of the order.
        order = loaded.order
        shown = self.orders.get(order.id)
        if shown is None or shown.order.version < order.version:
            self.orders[order.id] = loaded
        row = self.deadlines.setdefault(order.id, DeadlineRow(0, None))
        if row.version < order.version:
            row.version = order.version
            row.deadline = deadline

    async def due(self, now: datetime, limit: int) -> list[str]:
        due = [
            (row.deadline.due_at, order_id)
            for order_id, row in self.deadlines.items()
            if row.deadline is not None and row.deadline.due_at <= now and not row.open_tickets
        ]
        return [order_id for _, order_id in sorted(due)[:limit]]

    async def hold(self, order_id: str, ticket_id: str) -> None:
        self.deadlines.setdefault(order_id, DeadlineRow(0, None)).open_tickets.add(ticket_id)

    async def release(self, order_id: str, ticket_id: str) -> None:
        row = self.deadlines.get(order_id)
        if row is not None:
            row.open_tickets.discard(ticket_id)

    def deadline_of(self, order_id: str) -> Deadline | None:
        row = self.deadlines.get(order_id)
        return row.deadline if row else None


@dataclass
class FakeSettlements:
    settled: dict[str, str] = field(default_factory=dict)

    async def record(self, order_id: str, payment_id: str, at: datetime) -> None:
        self.settled.setdefault(order_id, payment_id)

    async def is_settled(self, order_id: str) -> bool:
        return order_id in self.settled


@dataclass
class FakeQuotaClaims:
    """Slots in a dict: `setdefault` is the unique insert (one winner per slot)."""

    slots: dict[str, dict[str, str]] = field(default_factory=dict)
    # As MongoQuotaClaims' memo (without its lapse) when `memo` is on.
    memo: bool = False
    exhausted: set[str] = field(default_factory=set)

    async def claim(self, quota: Quota, buyer_id: str, order_id: str, units: int) -> ClaimResult:
        taken: list[str] = []
        for m in range(quota.per_buyer_limit):
            if len(taken) == units:
                break
            if self._insert(f"{quota.quota_id}|{buyer_id}#{m}", quota, order_id, "buyer"):
                taken.append(f"{quota.quota_id}|{buyer_id}#{m}")
        if len(taken) < units:
            self._drop(taken)
            return ClaimResult.BUYER_LIMIT
        got = 0
        for n in range(quota.total_limit):
            if got == units:
                break
            await asyncio.sleep(0)  # let racers interleave between slots
            if self._insert(f"{quota.quota_id}#{n}", quota, order_id, "total"):
                taken.append(f"{quota.quota_id}#{n}")
                got += 1
        if got < units:
            self._drop(taken)
            if self.memo:
                self.exhausted.add(quota.quota_id)
            return ClaimResult.EXHAUSTED
        return ClaimResult.CLAIMED

    def known_exhausted(self, quota_id: str) -> bool:
        return quota_id in self.exhausted

    async def release(self, quota_id: str, order_id: str) -> int:
        mine = [
            k for k, v in self.slots.items() if v["quota"] == quota_id and v["order_id"] == order_id
        ]
        if mine:
            self.exhausted.discard(quota_id)
        self._drop(mine)
        return len(mine)

    async def redeem(self, quota_id: str, order_id: str) -> int:
        changed = 0
        for slot in self.slots.values():
            if (
                slot["quota"] == quota_id
                and slot["order_id"] == order_id
                and slot["status"] == "held"
            ):
                slot["status"] = "redeemed"
                changed += 1
        return changed

    def held_by(self, quota_id: str, kind: str = "total") -> list[dict[str, str]]:
        return [v for v in self.slots.values() if v["quota"] == quota_id and v["slot"] == kind]

    def _insert(self, slot: str, quota: Quota, order_id: str, kind: str) -> bool:
        doc = {"quota": quota.quota_id, "order_id": order_id, "slot": kind, "status": "held"}
        return self.slots.setdefault(slot, doc) is doc

    def _drop(self, slots: list[str]) -> None:
        for slot in slots:
            self.slots.pop(slot, None)
