"""Replacement keys from the pool (issue 6), as scripts: an order whose key
was found faulty, an approved replacement, and what the pool does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_events.catalogue.common import DeliveryMode, RefundReason
from kami_events.catalogue.inventory import (
    KeyReplacementFailed,
    KeysVoided,
    ReplacementFailure,
    ReplacementKeysAllocated,
    StockChanged,
    VoidReason,
)
from kami_events.store import AlreadyProcessed
from kami_inventory.domain.keys import KeyStatus
from kami_inventory.handlers import (
    replace_keys,
    reserve_for_order,
    reveal_keys,
    sell_for_paid_order,
    void_for_refund,
)
from tests.unit.inventory.fakes import Interrupted, World
from tests.unit.inventory.samples import (
    OTHER_SELLER,
    message,
    offer_listed,
    order_paid,
    order_placed,
    refund_requested,
    replacement_approved,
)

OFFER = "offer-1"


async def sold(world: World, order_id: str, quantity: int = 1) -> list[str]:
    """Place and pay an order; returns its (sold) keys."""
    order = order_placed(
        order_id, OFFER, quantity=quantity, deadline=world.clock() + timedelta(minutes=15)
    )
    reservation = await reserve_for_order(order, world.inventory, *message(order_id))
    assert reservation is not None and reservation.succeeded
    keys = list(reservation.key_ids)
    await sell_for_paid_order(order_paid(order_id, OFFER, keys), world.inventory, *message("p"))
    return keys


async def test_a_replacement_sells_an_available_key_to_the_order_and_voids_the_faulty_one() -> None:
    world = World()
    faulty, spare, other = await world.stock_pool(OFFER, [10, 20, 30])
    assert await sold(world, "order-1") == [faulty]
    world.store.committed.clear()
    request = replacement_approved("ticket-1", "order-1", OFFER, [faulty])
    context, tracking = message("order-1")

    replacement = await replace_keys(request, world.inventory, context, tracking)

    assert replacement.key_ids == (spare,)  # the soonest-expiring sellable key
    assert world.events() == [
        ReplacementKeysAllocated(
            offer_id=OFFER,
            order_id="order-1",
            ticket_id="ticket-1",
            key_ids=[spare],
            replaced_key_ids=[faulty],
        ),
        KeysVoided(
            offer_id=OFFER, key_ids=[faulty], reason=VoidReason.CLAIM_UPHELD, order_id="order-1"
        ),
        StockChanged(offer_id=OFFER, available=1, reserved=0),
    ]
    new = world.keys.keys[spare]
    assert (new.status, new.order_id) == (KeyStatus.SOLD, "order-1")
    assert world.keys.status_of(faulty) is KeyStatus.VOIDED
    assert world.keys.status_of(other) is KeyStatus.AVAILABLE
    # Delivery may now reveal the new key for that order, and never the faulty one.
    reveal = await reveal_keys("order-1", [spare, faulty], "delivery", world.inventory)
    assert [k.key_id for k in reveal.revealed] == [spare]
    assert [(k.key_id, k.status) for k in reveal.withheld] == [(faulty, "voided")]
    assert [
        k.key_id
        for k in (await reveal_keys("order-2", [spare], "delivery", world.inventory)).revealed
    ] == []


async def test_a_redelivered_approval_allocates_and_announces_nothing_more() -> None:
    world = World()
    faulty, *_ = await world.stock_pool(OFFER, [10, 20, 30])
    await sold(world, "order-1")
    request = replacement_approved("ticket-1", "order-1", OFFER, [faulty])
    context, tracking = message("order-1")
    first = await replace_keys(request, world.inventory, context, tracking)
    world.store.committed.clear()

    with pytest.raises(AlreadyProcessed):
        await replace_keys(request, world.inventory, context, tracking)
    # A replay under another message id gets the recorded answer, not a second key.
    again = await replace_keys(request, world.inventory, *message("order-1"))

    assert again == first
    assert world.keys.by_status(OFFER, KeyStatus.SOLD) == list(first.key_ids)
    assert len(world.keys.by_status(OFFER, KeyStatus.AVAILABLE)) == 1


async def test_never_a_key_that_another_order_holds() -> None:
    world = World()
    await world.stock_pool(OFFER, [10, 20, 30])
    (faulty,) = await sold(world, "order-1")
    (theirs,) = await sold(world, "order-2")
    reserved = order_placed("order-3", OFFER, deadline=world.clock() + timedelta(minutes=15))
    held = await reserve_for_order(reserved, world.inventory, *message("order-3"))
    assert held is not None and held.succeeded
    world.store.committed.clear()

    replacement = await replace_keys(
        replacement_approved("ticket-1", "order-1", OFFER, [faulty]),
        world.inventory,
        *message("order-1"),
    )

    assert replacement.failure is ReplacementFailure.OUT_OF_STOCK
    assert world.events() == [
        KeyReplacementFailed(
            offer_id=OFFER,
            order_id="order-1",
            ticket_id="ticket-1",
            reason=ReplacementFailure.OUT_OF_STOCK,
            requested=1,
            available=0,
        )
    ]
    # Nothing moved: the faulty key stays sold (the refund path voids it).
    assert world.keys.keys[faulty].status is KeyStatus.SOLD
    assert world.keys.keys[theirs].order_id == "order-2"
    assert world.keys.keys[held.key_ids[0]].status is KeyStatus.RESERVED


async def test_all_or_nothing_when_the_pool_has_fewer_keys_than_the_faulty_ones() -> None:
    world = World()
    keys = await world.stock_pool(OFFER, [10, 20, 30])
    faulty = await sold(world, "order-1", quantity=2)
    spare = next(k for k in keys if k not in faulty)
    world.store.committed.clear()

    replacement = await replace_keys(
        replacement_approved("ticket-1", "order-1", OFFER, faulty),
        world.inventory,
        *message("order-1"),
    )

    assert (replacement.failure, replacement.available) == (ReplacementFailure.OUT_OF_STOCK, 1)
    # It held the one key before it knew, put it back, and announces the count.
    assert world.events()[-1] == StockChanged(offer_id=OFFER, available=1, reserved=0)
    assert world.keys.keys[spare].status is KeyStatus.AVAILABLE
    assert world.keys.keys[spare].order_id is None
    assert {world.keys.status_of(k) for k in faulty} == {KeyStatus.SOLD}


async def test_never_a_key_that_expires_within_the_margin() -> None:
    world = World()
    faulty, soon = await world.stock_pool(OFFER, [10, 1])  # the margin is one day
    await sold(world, "order-1")
    replacement = await replace_keys(
        replacement_approved("ticket-1", "order-1", OFFER, [faulty]),
        world.inventory,
        *message("order-1"),
    )
    assert replacement.failure is ReplacementFailure.OUT_OF_STOCK
    assert world.keys.status_of(soon) is KeyStatus.AVAILABLE


async def test_keys_no_longer_sold_to_the_order_are_not_replaced() -> None:
    world = World()
    await world.stock_pool(OFFER, [10, 20])
    (faulty,) = await sold(world, "order-1")
    # A chargeback voided the order's key before the replacement came.
    await void_for_refund(
        refund_requested("order-1", OFFER, [faulty], reason=RefundReason.CHARGEBACK),
        world.inventory,
        *message("order-1"),
    )

    replacement = await replace_keys(
        replacement_approved("ticket-1", "order-1", OFFER, [faulty]),
        world.inventory,
        *message("order-1"),
    )

    assert replacement.failure is ReplacementFailure.KEYS_NOT_REPLACEABLE
    assert len(world.keys.by_status(OFFER, KeyStatus.AVAILABLE)) == 1


@pytest.mark.parametrize("case", ["another_seller", "manual_offer"])
async def test_an_offer_without_a_pool_of_that_seller_replaces_nothing(case: str) -> None:
    world = World()
    await world.stock_pool(OFFER, [10, 20])
    (faulty,) = await sold(world, "order-1")
    seller = OTHER_SELLER if case == "another_seller" else "seller-a"
    if case == "manual_offer":
        await world.list_offer(offer_listed(OFFER, mode=DeliveryMode.MANUAL), version=2)

    replacement = await replace_keys(
        replacement_approved("ticket-1", "order-1", OFFER, [faulty], seller_id=seller),
        world.inventory,
        *message("order-1"),
    )

    assert replacement.failure is ReplacementFailure.UNKNOWN_OFFER
    assert world.keys.status_of(faulty) is KeyStatus.SOLD


async def test_a_replacement_interrupted_after_taking_a_key_finishes_with_that_key() -> None:
    world = World()
    faulty, spare, _ = await world.stock_pool(OFFER, [10, 20, 30])
    await sold(world, "order-1")
    request = replacement_approved("ticket-1", "order-1", OFFER, [faulty])
    context, tracking = message("order-1")
    world.keys.interrupt.add("replace:ticket-1")  # the claim is made, the write is lost
    with pytest.raises(Interrupted):
        await replace_keys(request, world.inventory, context, tracking)

    replacement = await replace_keys(request, world.inventory, context, tracking)

    assert replacement.key_ids == (spare,)
    assert world.keys.by_status(OFFER, KeyStatus.SOLD) == [spare]
    assert len(world.keys.by_status(OFFER, KeyStatus.AVAILABLE)) == 1


async def test_a_later_refund_of_the_orders_keys_voids_their_replacements_too() -> None:
    world = World()
    await world.stock_pool(OFFER, [10, 20, 30])
    (faulty,) = await sold(world, "order-1")
    first = await replace_keys(
        replacement_approved("ticket-1", "order-1", OFFER, [faulty]),
        world.inventory,
        *message("order-1"),
    )
    second = await replace_keys(  # the replacement was faulty too
        replacement_approved("ticket-2", "order-1", OFFER, list(first.key_ids)),
        world.inventory,
        *message("order-1"),
    )
    world.store.committed.clear()

    # Ordering knows only the order's first key: a chargeback names that one.
    voided = await void_for_refund(
        refund_requested("order-1", OFFER, [faulty], reason=RefundReason.CHARGEBACK),
        world.inventory,
        *message("order-1"),
    )

    assert voided == list(second.key_ids)
    assert world.keys.by_status(OFFER, KeyStatus.SOLD) == []
    assert world.keys.by_status(OFFER, KeyStatus.VOIDED) == sorted(
        [faulty, *first.key_ids, *second.key_ids]
    )
