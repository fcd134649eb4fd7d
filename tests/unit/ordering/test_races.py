"""Two writers at one order (STYLE.md: the concurrency test): the deadline
poller and a consumer decide from the same version; the event store's
optimistic concurrency lets exactly one of them commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

from kami_events.catalogue.ordering import OrderCancelled, OrderPaid, OrderPlaced, OrderReserved
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.store import CommitContext, ConcurrencyError, Tracking
from kami_events.testing import InMemoryEventStore
from kami_ordering.domain.order import DeadlineKind, OrderState
from kami_ordering.handlers import sync_views
from tests.unit.ordering.script import SagaScript


class RacingStore(InMemoryEventStore):
    """Runs `race` just before the next append, as another process would."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.race: Callable[[], Awaitable[object]] | None = None

    async def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        context: CommitContext,
        tracking: Tracking | None = None,
    ) -> list[Envelope[Event]]:
        race, self.race = self.race, None
        if race is not None:
            await race()
        return await super().append(
            aggregate_type, aggregate_id, expected_version, events, context, tracking
        )


def racing_saga() -> tuple[SagaScript, RacingStore]:
    saga = SagaScript()
    store = RacingStore(producer="ordering", clock=saga.clock)
    saga.store = store
    saga.restart()
    return saga, store


async def test_payment_arriving_while_the_deadline_fires_wins_and_is_not_cancelled() -> None:
    saga, store = racing_saga()
    await saga.buyer_places_order()
    await saga.inventory_reserves(holds_for=timedelta(minutes=20))
    saga.expect(OrderPlaced, OrderReserved)

    store.race = saga.payment_confirms  # commits first, at the version the poller loaded
    assert await saga.time_passes(timedelta(minutes=15)) == 0

    saga.expect(OrderPaid)  # and no OrderCancelled
    assert await saga.state() is OrderState.PAID
    deadline = saga.deadline()
    assert deadline is not None and deadline.kind is DeadlineKind.DELIVERY


async def test_the_deadline_committing_first_makes_the_payment_a_late_one() -> None:
    saga, store = racing_saga()
    await saga.buyer_places_order()
    await saga.inventory_reserves(holds_for=timedelta(minutes=20))
    saga.expect(OrderPlaced, OrderReserved)
    saga.clock.advance(timedelta(minutes=15))

    async def poller() -> None:
        await saga.saga.fire_due_deadlines()

    store.race = poller
    # The consumer's first attempt conflicts; its retry sees the cancelled order.
    with pytest.raises(ConcurrencyError):
        await saga.payment_confirms()
    saga.expect(OrderCancelled)
    await saga.payment_confirms()
    assert await saga.state() is OrderState.REFUNDING


async def test_views_synced_out_of_order_end_at_the_newest_state() -> None:
    """A slow writer syncs the state it saved after a faster writer synced a
    newer one: it finds the stream moved on and writes the newest again."""
    saga, _ = racing_saga()
    await saga.buyer_places_order()
    stale = await saga.repository.load(saga.order_id)
    assert stale is not None
    await saga.inventory_reserves(holds_for=timedelta(minutes=20))
    assert saga.views.orders[saga.order_id].order.state is OrderState.RESERVED

    written = await sync_views(saga.repository, saga.views, saga.timers, stale)
    assert written.order.state is OrderState.RESERVED
    assert saga.views.orders[saga.order_id].order.state is OrderState.RESERVED
    deadline = saga.deadline()
    assert deadline is not None and deadline.kind is DeadlineKind.PAYMENT
