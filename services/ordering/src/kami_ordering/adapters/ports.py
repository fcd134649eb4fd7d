"""What the handlers need from the outside world. MongoDB adapters implement
these in production; unit tests use in-memory fakes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kami_events.event import Event
from kami_ordering.adapters.quotas import ClaimResult, Quota
from kami_ordering.adapters.repository import LoadedOrder
from kami_ordering.domain.order import Deadline
from kami_ordering.domain.terms import OfferTerms, ProductTerms


class OfferCatalog(Protocol):
    """Ordering's read model of catalog's products and offers, and of suspended buyers."""

    async def offer(self, offer_id: str) -> OfferTerms | None: ...

    async def product(self, product_id: str) -> ProductTerms | None: ...

    async def is_suspended(self, user_id: str, now: datetime) -> bool: ...


@dataclass(frozen=True)
class OrderRequest:
    """A buyer's `POST /orders` under one idempotency key, and the order it placed.

    It keeps the events the order was placed with, so a retry after a crash
    between recording the request and committing the order commits exactly the
    same order."""

    buyer_id: str
    idempotency_key: str
    fingerprint: str
    order_id: str
    events: tuple[Event, ...]


class OrderRequests(Protocol):
    async def find(self, buyer_id: str, idempotency_key: str) -> OrderRequest | None: ...

    async def claim(self, request: OrderRequest) -> OrderRequest:
        """Record `request` unless one exists for its buyer and key (unique
        index): returns whichever is recorded."""


class OrderViews(Protocol):
    """The read models derived from an order: its summary and its next deadline."""

    async def sync(self, loaded: LoadedOrder, deadline: Deadline | None) -> None: ...

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Orders whose deadline is due and not held by an open claim, soonest first."""

    async def hold(self, order_id: str, ticket_id: str) -> None:
        """An open claim holds the order's guarantee deadline."""

    async def release(self, order_id: str, ticket_id: str) -> None: ...


class Settlements(Protocol):
    """Orders whose money payment settled to the seller (`FundsSettled`)."""

    async def record(self, order_id: str, payment_id: str, at: datetime) -> None: ...

    async def is_settled(self, order_id: str) -> bool: ...


class QuotaClaims(Protocol):
    """Coupon uses and flash-sale keys, claimed under their limits by unique
    inserts (`kami_ordering.adapters.quotas`)."""

    async def claim(
        self, quota: Quota, buyer_id: str, order_id: str, units: int
    ) -> ClaimResult: ...

    async def release(self, quota_id: str, order_id: str) -> int: ...

    async def redeem(self, quota_id: str, order_id: str) -> int: ...

    def known_exhausted(self, quota_id: str) -> bool:
        """Whether this process found every slot of the quota taken a moment
        ago (and has seen none given back since)."""
        ...
