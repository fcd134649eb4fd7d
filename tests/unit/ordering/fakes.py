"""In-memory stand-ins for ordering's MongoDB read models, with the same
behaviour the handlers rely on (version-guarded views, atomic idempotency
claims, claim holds on deadlines)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from kami_ordering.adapters.ports import OrderRequest
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
        # What it is given, as MongoOrderViews: the handlers make the newest win.
        order = loaded.order
        self.orders[order.id] = loaded
        row = self.deadlines.setdefault(order.id, DeadlineRow(0, None))
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
