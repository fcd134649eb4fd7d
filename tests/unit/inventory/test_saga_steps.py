"""Inventory's steps of the purchase saga (docs/saga.md), as scripts: given
these keys and this message, expect these key states and these events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_events.catalogue.common import DeliveryMode, RefundReason
from kami_events.catalogue.inventory import (
    KeyReservationFailed,
    KeyReserved,
    KeysReleased,
    KeysSold,
    KeysVoided,
    ReleaseReason,
    ReservationFailure,
    StockChanged,
    VoidReason,
)
from kami_events.store import AlreadyProcessed
from kami_inventory.domain.keys import KeyStatus
from kami_inventory.handlers import (
    finish_interrupted_work,
    keys_by_state,
    record_offer_delisted,
    release_for_cancelled_order,
    reserve_for_order,
    sell_for_paid_order,
    void_for_refund,
)
from tests.unit.inventory.fakes import Interrupted, World
from tests.unit.inventory.samples import (
    OTHER_SELLER,
    SELLER,
    message,
    offer_delisted,
    order_cancelled,
    order_paid,
    order_placed,
    refund_requested,
)

OFFER = "offer-1"
DEADLINE = timedelta(minutes=15)
GRACE = timedelta(minutes=2)


async def place(
    world: World,
    order_id: str,
    quantity: int = 1,
    *,
    seller_id: str = SELLER,
    mode: DeliveryMode = DeliveryMode.AUTO,
) -> None:
    order = order_placed(
        order_id,
        OFFER,
        quantity=quantity,
        deadline=world.clock() + DEADLINE,
        seller_id=seller_id,
        mode=mode,
    )
    await reserve_for_order(order, world.inventory, *message(order_id))


async def test_reserves_the_soonest_expiring_keys_until_the_deadline_plus_grace() -> None:
    world = World()
    k30, k10, k20, k40 = await world.stock_pool(OFFER, [30, 10, 20, 40])
    world.store.committed.clear()

    await place(world, "order-1", quantity=2)

    assert world.keys.by_status(OFFER, KeyStatus.RESERVED) == sorted([k10, k20])
    assert world.events() == [
        KeyReserved(
            offer_id=OFFER,
            order_id="order-1",
            key_ids=[k10, k20],
            expires_at=world.clock() + DEADLINE + GRACE,
        ),
        StockChanged(offer_id=OFFER, available=2, reserved=2),
    ]
    assert {world.keys.keys[k].reserved_until for k in (k10, k20)} == {
        world.clock() + DEADLINE + GRACE
    }
    assert world.keys.by_status(OFFER, KeyStatus.AVAILABLE) == sorted([k30, k40])


async def test_never_reserves_a_key_that_expires_within_the_margin() -> None:
    world = World()
    # The margin is one day after the reservation ends (deadline + grace).
    (soon, later) = await world.stock_pool(OFFER, [1, 2])
    world.store.committed.clear()

    await place(world, "order-1")

    assert world.keys.status_of(soon) is KeyStatus.AVAILABLE
    assert world.keys.status_of(later) is KeyStatus.RESERVED


async def test_all_or_nothing_when_stock_is_short() -> None:
    world = World()
    keys = await world.stock_pool(OFFER, [10, 20])
    world.store.committed.clear()

    await place(world, "order-1", quantity=3)

    assert world.events() == [
        KeyReservationFailed(
            offer_id=OFFER,
            order_id="order-1",
            reason=ReservationFailure.OUT_OF_STOCK,
            requested=3,
            available=2,
        ),
        # It took two keys before it knew, and announces the count after putting them back.
        StockChanged(offer_id=OFFER, available=2, reserved=0),
    ]
    assert world.keys.by_status(OFFER, KeyStatus.AVAILABLE) == sorted(keys)
    # The keys it took and put back went through the claim log, and are free again.
    await place(world, "order-2", quantity=2)
    assert world.keys.by_status(OFFER, KeyStatus.RESERVED) == sorted(keys)


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("delisted", ReservationFailure.OFFER_DELISTED),
        ("unknown", ReservationFailure.UNKNOWN_OFFER),
    ],
)
async def test_a_delisted_or_unknown_offer_reserves_nothing(
    setup: str, reason: ReservationFailure
) -> None:
    world = World()
    await world.stock_pool(OFFER, [10])
    if setup == "delisted":
        await record_offer_delisted(offer_delisted(OFFER), 2, world.inventory)
        await place(world, "order-1")
    else:
        # An order naming another seller than the one who owns the pool.
        await place(world, "order-1", seller_id=OTHER_SELLER)
    (failed,) = [e for e in world.events() if isinstance(e, KeyReservationFailed)]
    assert (failed.reason, failed.available) == (reason, 1)
    assert world.keys.by_status(OFFER, KeyStatus.RESERVED) == []


async def test_a_manual_order_is_left_to_ordering() -> None:
    world = World()
    await world.stock_pool(OFFER, [10])
    world.store.committed.clear()
    await place(world, "order-1", mode=DeliveryMode.MANUAL)
    assert world.events() == []
    assert world.keys.by_status(OFFER, KeyStatus.RESERVED) == []


async def test_a_redelivered_order_reserves_and_announces_nothing_more() -> None:
    world = World()
    await world.stock_pool(OFFER, [10, 20, 30])
    world.store.committed.clear()
    order = order_placed("order-1", OFFER, deadline=world.clock() + DEADLINE)
    context, tracking = message("order-1")
    await reserve_for_order(order, world.inventory, context, tracking)

    with pytest.raises(AlreadyProcessed):
        await reserve_for_order(order, world.inventory, context, tracking)
    assert len(world.keys.by_status(OFFER, KeyStatus.RESERVED)) == 1
    assert world.event_types() == ["KeyReserved", "StockChanged"]


async def test_a_redelivery_after_the_order_was_cancelled_does_not_reserve_again() -> None:
    world = World()
    await world.stock_pool(OFFER, [10, 20])
    order = order_placed("order-1", OFFER, deadline=world.clock() + DEADLINE)
    context, tracking = message("order-1")
    reservation = await reserve_for_order(order, world.inventory, context, tracking)
    assert reservation is not None
    await release_for_cancelled_order(
        order_cancelled("order-1", OFFER, list(reservation.key_ids)),
        world.inventory,
        *message("order-1"),
    )

    with pytest.raises(AlreadyProcessed):
        await reserve_for_order(order, world.inventory, context, tracking)
    assert world.keys.by_status(OFFER, KeyStatus.RESERVED) == []


async def test_keys_taken_before_a_crash_count_towards_the_order() -> None:
    world = World()
    keys = await world.stock_pool(OFFER, [10, 20, 30])
    world.store.committed.clear()
    order = order_placed("order-1", OFFER, quantity=2, deadline=world.clock() + DEADLINE)
    context, tracking = message("order-1")
    # The first attempt claims a key and dies before writing it.
    world.keys.interrupt.add("reserve:order-1")
    with pytest.raises(Interrupted):
        await reserve_for_order(order, world.inventory, context, tracking)

    await reserve_for_order(order, world.inventory, context, tracking)  # redelivered

    reserved = world.keys.by_status(OFFER, KeyStatus.RESERVED)
    assert reserved == sorted(keys[:2])
    (event, _) = world.events()
    assert isinstance(event, KeyReserved) and sorted(event.key_ids) == reserved


async def test_a_first_attempt_reads_no_history_of_earlier_ones() -> None:
    """The fast path: nothing of an earlier attempt can exist, so the pool's
    per-order and per-operation reads (scans on FerretDB) are skipped, and so
    is the reservation a first attempt cannot find."""
    world = World()
    await world.stock_pool(OFFER, [10, 20])
    reads: list[str] = []
    for book, name in [
        (world.keys, "of_order"),
        (world.keys, "moved_by"),
        (world.keys, "resume"),
        (world.reservations, "find"),
    ]:
        real = getattr(book, name)

        async def counted(*args: object, _real: object = real, _name: str = name) -> object:
            reads.append(_name)
            return await _real(*args)  # type: ignore[operator]

        setattr(book, name, counted)
    order = order_placed("order-1", OFFER, quantity=1, deadline=world.clock() + DEADLINE)
    placed = message("order-1")
    reservation = await reserve_for_order(order, world.inventory, *placed)
    assert reservation is not None and len(reservation.key_ids) == 1
    paid = order_paid("order-1", OFFER, [*reservation.key_ids, *reservation.key_ids])
    sale = message("order-1")
    await sell_for_paid_order(paid, world.inventory, *sale)
    assert reads == []
    assert world.keys.by_status(OFFER, KeyStatus.SOLD) == list(reservation.key_ids)
    assert world.events()[-2] == KeysSold(
        offer_id=OFFER, order_id="order-1", key_ids=list(reservation.key_ids)
    )

    # Redeliveries look: the reservation is recorded, the keys are already sold.
    with pytest.raises(AlreadyProcessed):
        await reserve_for_order(order, world.inventory, *placed)
    with pytest.raises(AlreadyProcessed):
        await sell_for_paid_order(paid, world.inventory, *sale)
    assert reads == ["find", "of_order", "moved_by", "moved_by"]


async def test_cancellation_releases_the_orders_keys_once() -> None:
    world = World()
    a, b, c = await world.stock_pool(OFFER, [10, 20, 30])
    await place(world, "order-1", quantity=2)
    await place(world, "order-2")
    world.store.committed.clear()
    cancelled = order_cancelled("order-1", OFFER, [a, b, c])  # c belongs to order-2
    context, tracking = message("order-1")

    await release_for_cancelled_order(cancelled, world.inventory, context, tracking)

    assert world.events() == [
        KeysReleased(
            offer_id=OFFER,
            order_id="order-1",
            key_ids=sorted([a, b]),
            reason=ReleaseReason.ORDER_CANCELLED,
        ),
        StockChanged(offer_id=OFFER, available=2, reserved=1),
    ]
    assert world.keys.status_of(c) is KeyStatus.RESERVED
    with pytest.raises(AlreadyProcessed):
        await release_for_cancelled_order(cancelled, world.inventory, context, tracking)
    # Released keys are sold to the next order, and the redelivery above moved nothing.
    await place(world, "order-3", quantity=2)
    assert world.keys.by_status(OFFER, KeyStatus.AVAILABLE) == []


async def test_a_release_interrupted_midway_is_finished_and_announced_once() -> None:
    world = World()
    a, b = await world.stock_pool(OFFER, [10, 20])
    await place(world, "order-1", quantity=2)
    world.store.committed.clear()
    cancelled = order_cancelled("order-1", OFFER, [a, b])
    context, tracking = message("order-1")
    world.keys.interrupt.add("release:order-1")
    with pytest.raises(Interrupted):
        await release_for_cancelled_order(cancelled, world.inventory, context, tracking)

    await release_for_cancelled_order(cancelled, world.inventory, context, tracking)

    assert world.keys.by_status(OFFER, KeyStatus.AVAILABLE) == sorted([a, b])
    (released, _) = world.events()
    assert isinstance(released, KeysReleased) and released.key_ids == sorted([a, b])


async def test_a_release_is_announced_before_anyone_else_can_reserve_its_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    (a,) = await world.stock_pool(OFFER, [10])
    await place(world, "order-1")
    world.store.committed.clear()
    cancelled = order_cancelled("order-1", OFFER, [a])
    context, tracking = message("order-1")

    async def database_gone(*args: object, **kwargs: object) -> object:
        raise ConnectionError("the event store went away")

    monkeypatch.setattr(world.store, "append", database_gone)
    with pytest.raises(ConnectionError):
        await release_for_cancelled_order(cancelled, world.inventory, context, tracking)
    monkeypatch.undo()

    # Decided but unannounced: the key is not offered, and the maintenance job
    # leaves the move to the release's own retry.
    world.clock.advance(timedelta(minutes=5))
    assert await finish_interrupted_work(world.inventory) == 0
    await place(world, "order-2")
    assert world.keys.status_of(a) is KeyStatus.RESERVED
    await release_for_cancelled_order(cancelled, world.inventory, context, tracking)
    await place(world, "order-3")

    kinds = [(type(e).__name__, getattr(e, "order_id", None)) for e in world.events()]
    assert kinds == [
        ("KeyReservationFailed", "order-2"),
        ("KeysReleased", "order-1"),
        ("StockChanged", None),
        ("KeyReserved", "order-3"),
        ("StockChanged", None),
    ]
    released_stock = world.events()[2]
    assert released_stock == StockChanged(offer_id=OFFER, available=1, reserved=0)
    assert (world.keys.status_of(a), world.keys.keys[a].order_id) == (
        KeyStatus.RESERVED,
        "order-3",
    )


async def test_payment_sells_the_reserved_keys_once() -> None:
    world = World()
    a, b = await world.stock_pool(OFFER, [10, 20])
    await place(world, "order-1", quantity=2)
    world.store.committed.clear()
    paid = order_paid("order-1", OFFER, [a, b])
    context, tracking = message("order-1")

    await sell_for_paid_order(paid, world.inventory, context, tracking)

    assert world.events() == [
        KeysSold(offer_id=OFFER, order_id="order-1", key_ids=sorted([a, b])),
        StockChanged(offer_id=OFFER, available=0, reserved=0),
    ]
    with pytest.raises(AlreadyProcessed):
        await sell_for_paid_order(paid, world.inventory, context, tracking)
    assert world.keys.by_status(OFFER, KeyStatus.SOLD) == sorted([a, b])


async def test_a_refund_voids_only_that_orders_keys_once() -> None:
    world = World()
    a, b, c = await world.stock_pool(OFFER, [10, 20, 30])
    await place(world, "order-1", quantity=2)
    await sell_for_paid_order(order_paid("order-1", OFFER, [a, b]), world.inventory, *message("x"))
    await place(world, "order-2")
    world.store.committed.clear()
    refund = refund_requested("order-1", OFFER, [a, c], reason=RefundReason.CHARGEBACK)
    context, tracking = message("order-1")

    await void_for_refund(refund, world.inventory, context, tracking)

    assert world.events() == [
        KeysVoided(offer_id=OFFER, key_ids=[a], reason=VoidReason.CHARGEBACK, order_id="order-1"),
        StockChanged(offer_id=OFFER, available=0, reserved=1),
    ]
    assert (world.keys.status_of(b), world.keys.status_of(c)) == (
        KeyStatus.SOLD,
        KeyStatus.RESERVED,
    )
    with pytest.raises(AlreadyProcessed):
        await void_for_refund(refund, world.inventory, context, tracking)
    # A second refund of the same order (say, an upheld claim on b) is its own operation.
    await void_for_refund(
        refund_requested("order-1", OFFER, [a, b], refund_id="refund-2"),
        world.inventory,
        *message("order-1"),
    )
    voided = [e for e in world.events() if isinstance(e, KeysVoided)]
    assert [v.key_ids for v in voided] == [[a], [b]]
    assert voided[1].reason is VoidReason.DELIVERY_FAILED


async def test_messages_naming_no_keys_change_nothing() -> None:
    world = World()
    await world.stock_pool(OFFER, [10])
    world.store.committed.clear()
    inv = world.inventory
    assert (
        await release_for_cancelled_order(order_cancelled("o", OFFER, []), inv, *message("o")) == []
    )
    assert await sell_for_paid_order(order_paid("o", OFFER, []), inv, *message("o")) == []
    assert await void_for_refund(refund_requested("o", OFFER, []), inv, *message("o")) == []
    assert world.events() == []


async def test_the_stock_book_keeps_each_pools_counts_of_its_last_commit() -> None:
    world = World()
    await world.stock_pool(OFFER, [30, 10, 20])
    await place(world, "order-1", quantity=2)
    reserved = world.keys.by_status(OFFER, KeyStatus.RESERVED)
    paid = order_paid("order-1", OFFER, reserved)
    await sell_for_paid_order(paid, world.inventory, *message("order-1"))

    booked = (await world.stock_book.all())[OFFER]
    # A commit counts the live keys only; the gauge counts the rest when it refreshes.
    assert (booked.levels.available, booked.levels.reserved, booked.levels.sold) == (1, 0, 0)
    assert booked.settled_behind
    last = [e for e in world.events(OFFER) if isinstance(e, StockChanged)][-1]
    assert (last.available, last.reserved) == (booked.levels.available, booked.levels.reserved)

    gauge = (await keys_by_state(world.inventory))[OFFER]

    assert gauge == await world.keys.stock(OFFER, world.clock())
    assert (gauge.available, gauge.reserved, gauge.sold) == (1, 0, 2)
    assert not (await world.stock_book.all())[OFFER].settled_behind
