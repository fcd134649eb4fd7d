"""Orders loaded from, and saved to, the event store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.store import CommitContext, ConcurrencyError, EventStore, Tracking
from kami_ordering.domain.order import Order


@dataclass(frozen=True)
class LoadedOrder:
    """An order with the times its stream records (the aggregate sees only payloads)."""

    order: Order
    placed_at: datetime
    updated_at: datetime


class OrderRepository:
    def __init__(
        self, store: EventStore, on_change: Callable[[str], None] = lambda order_id: None
    ) -> None:
        self._store = store
        # Told the order's id after each append (the buyers' long poll waits on it).
        self._on_change = on_change

    async def load(
        self, order_id: str, *, trust_seconds: float | None = None
    ) -> LoadedOrder | None:
        """The order; `trust_seconds` overrides how long the store trusts what
        it holds of the stream (0: ask the database)."""
        envelopes = await self._store.load(
            Order.aggregate_type, order_id, trust_seconds=trust_seconds
        )
        if not envelopes:
            return None
        order = Order.rehydrate(order_id, (e.payload for e in envelopes))
        return LoadedOrder(order, envelopes[0].occurred_at, envelopes[-1].occurred_at)

    async def history(self, order_id: str) -> list[Envelope[Event]]:
        return await self._store.load(Order.aggregate_type, order_id)

    async def exists(self, order_id: str) -> bool:
        return await self.version(order_id) > 0

    async def version(self, order_id: str) -> int:
        """The order's current stream version (0: no such order)."""
        return await self._store.last_version(Order.aggregate_type, order_id)

    async def save(
        self, order: Order, context: CommitContext, tracking: Tracking | None = None
    ) -> list[Envelope[Event]]:
        """Append what the order decided at the version it was loaded at
        (`ConcurrencyError` if another writer got there first)."""
        envelopes = await self._store.append(
            Order.aggregate_type,
            order.id,
            order.version,
            order.pending_events,
            context,
            tracking,
        )
        order.mark_committed()
        self._on_change(order.id)
        return envelopes

    async def append_new(
        self, order_id: str, events: tuple[Event, ...], context: CommitContext
    ) -> bool:
        """Start an order's stream with `events`; False if it already has events."""
        try:
            await self._store.append(Order.aggregate_type, order_id, 0, events, context)
        except ConcurrencyError:
            return False
        self._on_change(order_id)
        return True
