"""A buyer waiting for their order's state (`GET /orders/{id}?wait_for=...`):
answered at once when the order is there, past it or can no longer get
there; else woken by the change this process makes, or by the slow recheck
for a change another replica made; never by other orders' changes."""

from __future__ import annotations

import asyncio
import time

import pytest

from kami_events.catalogue.inventory import ReservationFailure
from kami_events.changes import Changes
from kami_ordering.adapters.repository import LoadedOrder, OrderRepository
from kami_ordering.domain.order import Order, OrderState, waiting_is_over
from kami_ordering.order_changes import OrderStatus
from tests.unit.ordering.script import BUYER, SagaScript

S = OrderState
NEVER = 30.0  # a recheck that never comes within a test


class CountingRepository(OrderRepository):
    """The saga's repository, counting the reads the waiting request makes."""

    def __init__(self, inner: OrderRepository) -> None:
        self._inner = inner
        self.loads = 0

    async def load(
        self, order_id: str, *, trust_seconds: float | None = None
    ) -> LoadedOrder | None:
        self.loads += 1
        return await self._inner.load(order_id, trust_seconds=trust_seconds)


def buyers_own(order: Order) -> bool:
    return order.buyer_id == BUYER


def status_of(
    saga: SagaScript, *, recheck: float = NEVER
) -> tuple[OrderStatus, CountingRepository]:
    reads = CountingRepository(saga.repository)
    return OrderStatus(reads, saga.changes, recheck_seconds=recheck), reads


@pytest.mark.parametrize(
    ("current", "wanted", "over"),
    [
        (S.RESERVED, S.RESERVED, True),
        (S.PAID, S.RESERVED, True),  # gone past it
        (S.COMPLETED, S.DELIVERED, True),
        (S.PLACED, S.RESERVED, False),
        (S.PAID, S.DELIVERED, False),
        (S.DELIVERED, S.COMPLETED, False),
        (S.CANCELLED, S.DELIVERED, True),  # ended: cannot get there
        (S.REFUNDING, S.DELIVERED, True),  # compensated: never back on the happy path
        (S.REFUNDED, S.RESERVED, True),
        (S.RESERVED, S.CANCELLED, False),
        (S.PAID, S.CANCELLED, True),  # paid orders are refunded, not cancelled
        (S.DELIVERED, S.REFUNDED, False),  # a claim may still refund it
        (S.REFUNDING, S.REFUNDED, False),
        (S.COMPLETED, S.REFUNDED, True),
        (S.PLACED, S.PLACED, True),
    ],
)
def test_when_waiting_is_over(current: OrderState, wanted: OrderState, over: bool) -> None:
    assert waiting_is_over(current, wanted) is over


async def test_an_order_already_in_or_past_the_state_is_answered_at_once_with_one_read() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    await saga.inventory_reserves()
    await saga.payment_confirms()
    status, reads = status_of(saga)

    loaded = await status.read(saga.order_id, buyers_own, S.RESERVED, timeout=NEVER)

    assert loaded is not None and loaded.order.state is S.PAID
    assert reads.loads == 1


async def test_an_order_that_cannot_reach_the_state_is_answered_at_once() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    await saga.inventory_cannot_reserve(ReservationFailure.OUT_OF_STOCK)
    status, _ = status_of(saga)

    started = time.monotonic()
    loaded = await status.read(saga.order_id, buyers_own, S.DELIVERED, timeout=NEVER)

    assert loaded is not None and loaded.order.state is S.CANCELLED
    assert time.monotonic() - started < 1


async def test_the_saga_changing_the_order_wakes_the_waiting_request() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    await saga.inventory_reserves()
    status, reads = status_of(saga)
    waiting = asyncio.create_task(status.read(saga.order_id, buyers_own, S.DELIVERED, NEVER))
    await asyncio.sleep(0.01)

    await saga.payment_confirms()  # PAID: not yet what the buyer waits for
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await saga.delivery_delivers()
    loaded = await asyncio.wait_for(waiting, timeout=1)

    assert loaded is not None and loaded.order.state is S.DELIVERED
    assert reads.loads == 3  # the first read and one per change, no rechecks
    assert saga.changes.waiting() == 0


async def test_other_orders_changing_do_not_make_a_waiting_request_read_again() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    waited_on = saga.order_id
    status, reads = status_of(saga)
    waiting = asyncio.create_task(status.read(waited_on, buyers_own, S.RESERVED, NEVER))
    await asyncio.sleep(0.01)

    for _ in range(3):  # other buyers' purchases go on meanwhile
        await saga.buyer_places_order()
        await saga.inventory_reserves()
        await saga.payment_confirms()
    await asyncio.sleep(0.01)

    assert not waiting.done()
    assert reads.loads == 1
    waiting.cancel()


async def test_when_the_timeout_passes_the_answer_is_the_order_as_it_is() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    status, reads = status_of(saga)

    started = time.monotonic()
    loaded = await status.read(saga.order_id, buyers_own, S.DELIVERED, timeout=0.1)

    assert 0.1 <= time.monotonic() - started < 1
    assert loaded is not None and loaded.order.state is S.PLACED
    assert reads.loads == 2  # the first read and the one at the deadline


async def test_a_change_another_replica_made_is_seen_at_the_next_recheck() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    # Another process's saga: the same stream, but this process hears nothing of it.
    elsewhere = SagaScript()
    elsewhere.store, elsewhere.order_id, elsewhere.keys = saga.store, saga.order_id, saga.keys
    elsewhere.restart()
    status, reads = status_of(saga, recheck=0.05)
    waiting = asyncio.create_task(status.read(saga.order_id, buyers_own, S.RESERVED, NEVER))
    await asyncio.sleep(0.01)

    await elsewhere.inventory_reserves()
    loaded = await asyncio.wait_for(waiting, timeout=1)

    assert loaded is not None and loaded.order.state is S.RESERVED
    assert 2 <= reads.loads <= 4


async def test_someone_elses_order_is_not_found_without_waiting() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    status, _ = status_of(saga)

    loaded = await status.read(saga.order_id, lambda order: False, S.DELIVERED, timeout=NEVER)

    assert loaded is None
    assert await status.read("no-such-order", buyers_own, S.DELIVERED, timeout=NEVER) is None
    assert saga.changes.waiting() == 0


async def test_the_notifier_wakes_only_the_watches_of_the_changed_order() -> None:
    changes = Changes()
    with changes.watch("a") as a, changes.watch("a") as a_too, changes.watch("b") as b:
        assert changes.waiting() == 3
        changes.changed("a")
        assert await a.changed_within(0)
        assert await a_too.changed_within(0)
        assert not await b.changed_within(0.01)
        assert not await a.changed_within(0)  # a change is taken once
    assert changes.waiting() == 0
