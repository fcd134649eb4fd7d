"""The lane's workers on fakes: draining, pacing, and safety when claims overlap."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from kami_delivery import handlers
from kami_delivery.adapters.ports import OrderState
from kami_delivery.domain.queue import QueuedDelivery
from kami_delivery.worker import DeliveryLane
from kami_events.catalogue.delivery import KeyDelivered
from tests.integration.conftest import eventually
from tests.unit.delivery.events import envelope, paid, placed
from tests.unit.delivery.fakes import FakeQueue, World, world


async def paid_orders(w: World, count: int) -> None:
    for n in range(count):
        key = f"k-{n}"
        w.inventory.stock(**{key: f"SECRET-{n:04d}-ABCDEFGH"})
        order = placed(f"order-{n}", f"buyer-{n}", quantity=1, now=w.clock())
        await handlers.record_order_placed(w.deps, order)
        await handlers.accept_paid_order(w.deps, envelope(paid(order, [key]), at=w.clock()))


async def test_drain_delivers_every_due_job_with_several_workers() -> None:
    w = world()
    await paid_orders(w, 7)
    lane = DeliveryLane(w.deps, lanes=3, idle_poll=0.01)
    assert await lane.drain() == 7
    assert len(w.events(KeyDelivered)) == 7
    assert await lane.drain() == 0


async def test_an_idle_lane_delivers_as_soon_as_it_is_woken() -> None:
    w = world()
    lane = DeliveryLane(w.deps, lanes=1, idle_poll=30)

    async def forever() -> None:  # as the runtime runs it
        while True:
            await lane.run_once()

    running = asyncio.create_task(forever())
    try:
        await asyncio.sleep(0.05)  # idle, sleeping for up to 30 s
        await paid_orders(w, 1)
        lane.wake()
        await eventually(lambda: w.events(KeyDelivered), timeout=1, interval=0.01)
    finally:
        running.cancel()


async def test_a_failing_lane_logs_and_paces_itself(caplog: pytest.LogCaptureFixture) -> None:
    w = world()

    class BrokenQueue(FakeQueue):
        async def claim(self, now: datetime, lease_until: datetime) -> QueuedDelivery | None:
            raise ConnectionError("database unreachable")

    w.deps.queue = BrokenQueue()
    lane = DeliveryLane(w.deps, lanes=2, idle_poll=0.05)
    started = asyncio.get_running_loop().time()
    await lane.run_once()
    assert asyncio.get_running_loop().time() - started >= 0.05
    assert "the delivery lane failed" in caplog.text


async def test_a_failing_worker_never_cancels_the_others() -> None:
    """One worker's query fails while the others still wait on the database:
    they finish on their own. Cancelling them mid-query is what once left
    PyMongo's topology lock held and the whole delivery process hung."""
    w = world()
    cancelled: list[str] = []
    finished: list[str] = []

    class SlowThenFailingQueue(FakeQueue):
        calls = 0

        async def claim(self, now: datetime, lease_until: datetime) -> QueuedDelivery | None:
            SlowThenFailingQueue.calls += 1
            if SlowThenFailingQueue.calls == 1:
                raise ConnectionError("server selection timed out")
            try:
                await asyncio.sleep(0.05)  # still waiting for the database
            except asyncio.CancelledError:
                cancelled.append("a worker")
                raise
            finished.append("a worker")
            return None

    w.deps.queue = SlowThenFailingQueue()
    lane = DeliveryLane(w.deps, lanes=3, idle_poll=0.01)
    with pytest.raises(ConnectionError):
        await lane.drain()
    assert cancelled == []
    assert finished == ["a worker", "a worker"]


async def test_two_workers_given_the_same_job_still_deliver_it_once() -> None:
    """Should a claim ever be handed out twice, the delivery's stream is the arbiter."""
    w = world()

    class OverlappingQueue(FakeQueue):
        async def claim(self, now: datetime, lease_until: datetime) -> QueuedDelivery | None:
            open_jobs = [j for j in self.jobs.values() if j.status != "done"]
            return open_jobs[0].job if open_jobs else None

    w.queue = w.deps.queue = OverlappingQueue()
    await paid_orders(w, 1)
    await asyncio.gather(handlers.deliver_next(w.deps), handlers.deliver_next(w.deps))

    assert len(w.events(KeyDelivered)) == 1
    assert len(w.inventory.calls) == 2
    assert w.vault.visible_ids("buyer-0") == {"k-0"}


async def test_a_stray_old_order_paid_does_not_move_the_order_back() -> None:
    w = world()
    await paid_orders(w, 1)
    await handlers.record_order_state(w.deps, "order-0", OrderState.COMPLETED)
    order = placed("order-0", "buyer-0", quantity=1, now=w.clock())
    await handlers.accept_paid_order(w.deps, envelope(paid(order, ["k-0"]), at=w.clock()))
    record = await w.orders.get("order-0")
    assert record is not None and record.state is OrderState.COMPLETED
