"""The seller's view of its pool, voiding and blocking, and revealing keys to
delivery."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_events.catalogue.inventory import BlockReason, KeysBlocked, KeysVoided, VoidReason
from kami_inventory.domain.imports import FileFormat, key_id_for
from kami_inventory.domain.keys import KeyStatus
from kami_inventory.domain.offers import NotYourOffer
from kami_inventory.domain.stock import StockLevels
from kami_inventory.handlers import (
    RequestIdReused,
    ServiceNotAllowed,
    VoidKeys,
    block_expiring_keys,
    finish_interrupted_work,
    keys_by_state,
    list_keys,
    reserve_for_order,
    reveal_keys,
    sell_for_paid_order,
    stock_of,
    void_for_refund,
    void_seller_keys,
)
from tests.unit.inventory.fakes import Interrupted, World
from tests.unit.inventory.samples import (
    OTHER_SELLER,
    SELLER,
    message,
    offer_listed,
    order_paid,
    order_placed,
    refund_requested,
)

OFFER = "offer-1"


async def reserve(world: World, order_id: str, quantity: int = 1) -> list[str]:
    order = order_placed(
        order_id, OFFER, quantity=quantity, deadline=world.clock() + timedelta(minutes=15)
    )
    reservation = await reserve_for_order(order, world.inventory, *message(order_id))
    assert reservation is not None and reservation.succeeded
    return list(reservation.key_ids)


async def test_stock_counts_every_state_and_expired_keys() -> None:
    world = World()
    a, _, _, _, e = await world.stock_pool(OFFER, [5, 10, 20, 30, 40])
    await reserve(world, "order-1", 2)  # a, b
    await sell_for_paid_order(order_paid("order-1", OFFER, [a]), world.inventory, *message("o"))
    await void_seller_keys(VoidKeys(SELLER, OFFER, (e,), "void-1"), world.inventory)
    world.clock.advance(timedelta(days=21))  # c is now past its expiry, still available

    stock = await stock_of(SELLER, OFFER, world.inventory)

    assert stock == StockLevels(available=2, reserved=1, sold=1, blocked=0, voided=1, expired=1)
    with pytest.raises(NotYourOffer):
        await stock_of(OTHER_SELLER, OFFER, world.inventory)


async def test_the_keys_gauge_counts_expired_keys_now_and_the_rest_as_last_committed() -> None:
    world = World()
    await world.stock_pool(OFFER, [5, 10, 20])
    await reserve(world, "order-1", 1)
    await world.stock_pool("offer-2", [40])
    world.clock.advance(timedelta(days=11))  # two keys of OFFER expire, no commit follows

    pools = await keys_by_state(world.inventory)

    assert pools == {
        OFFER: StockLevels(available=2, reserved=1, expired=1),
        "offer-2": StockLevels(available=1),
    }
    # A commit counts keys by state only: its StockChanged does not change with time.
    assert await world.keys.counts(OFFER) == StockLevels(available=2, reserved=1)
    assert (await stock_of(SELLER, OFFER, world.inventory)).expired == 1


async def test_a_seller_lists_its_keys_with_at_most_the_last_four_characters() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    await world.import_file(OFFER, "ABCD-EFGH-IJKL-0001\nSHORT-01\n", file_format=FileFormat.TXT)
    listed = await list_keys(SELLER, OFFER, world.inventory)
    hints = {item.key.key_id: item.hint for item in listed}
    assert hints == {
        key_id_for(OFFER, "import-1", 1): "…0001",
        key_id_for(OFFER, "import-1", 2): None,
    }
    first = await list_keys(SELLER, OFFER, world.inventory, limit=1)
    rest = await list_keys(SELLER, OFFER, world.inventory, after=first[0].key.key_id)
    assert len(first) == len(rest) == 1 and first[0].key != rest[0].key
    with pytest.raises(NotYourOffer):
        await list_keys(OTHER_SELLER, OFFER, world.inventory)


async def test_a_seller_voids_only_available_keys_of_its_own_pool() -> None:
    world = World()
    _, b, c = await world.stock_pool(OFFER, [10, 20, 30])
    (held,) = await reserve(world, "order-1")  # the first
    await world.list_offer(offer_listed("offer-b", seller_id=OTHER_SELLER))
    theirs = await world.import_file(
        "offer-b", "THEIR-KEY-1\n", seller_id=OTHER_SELLER, file_format=FileFormat.TXT
    )
    assert theirs.imported == 1
    their_key = key_id_for("offer-b", "import-1", 1)
    world.store.committed.clear()

    outcome = await void_seller_keys(
        VoidKeys(SELLER, OFFER, (b, held, their_key, "nope"), "void-1"), world.inventory
    )

    assert outcome.voided == (b,)
    assert [(r.key_id, r.status) for r in outcome.refused] == [
        (held, "reserved"),
        (their_key, "not_found"),
        ("nope", "not_found"),
    ]
    assert world.keys.status_of(their_key) is KeyStatus.AVAILABLE
    assert world.events()[0] == KeysVoided(
        offer_id=OFFER, key_ids=[b], reason=VoidReason.SELLER_VOIDED
    )
    # The same request again: the same outcome, nothing new announced.
    again = await void_seller_keys(
        VoidKeys(SELLER, OFFER, (b, held, their_key, "nope"), "void-1"), world.inventory
    )
    assert again.voided == (b,) and len(world.events()) == 2
    with pytest.raises(RequestIdReused):
        await void_seller_keys(VoidKeys(SELLER, OFFER, (c,), "void-1"), world.inventory)
    with pytest.raises(NotYourOffer):
        await void_seller_keys(VoidKeys(OTHER_SELLER, OFFER, (c,), "void-2"), world.inventory)
    assert world.keys.status_of(c) is KeyStatus.AVAILABLE


async def test_keys_nearing_expiry_are_blocked_and_announced_per_reason() -> None:
    world = World()
    a, b, c = await world.stock_pool(OFFER, [2, 3, 30])
    world.clock.advance(timedelta(days=2, hours=1))  # a expired, b within a day
    world.store.committed.clear()

    assert await block_expiring_keys(world.inventory) == 2

    blocked = [e for e in world.events() if isinstance(e, KeysBlocked)]
    assert {(tuple(e.key_ids), e.reason) for e in blocked} == {
        ((a,), BlockReason.EXPIRED),
        ((b,), BlockReason.NEAR_EXPIRY),
    }
    assert world.keys.status_of(c) is KeyStatus.AVAILABLE
    assert await block_expiring_keys(world.inventory) == 0


async def test_work_a_dead_process_left_half_done_is_finished_later() -> None:
    world = World()
    a, b = await world.stock_pool(OFFER, [10, 20])
    world.store.committed.clear()
    world.keys.interrupt.add(f"seller-void:{OFFER}:void-1")
    with pytest.raises(Interrupted):
        await void_seller_keys(VoidKeys(SELLER, OFFER, (a, b), "void-1"), world.inventory)
    assert await finish_interrupted_work(world.inventory) == 0  # not stale yet

    world.clock.advance(timedelta(minutes=1))
    await finish_interrupted_work(world.inventory)

    assert world.keys.by_status(OFFER, KeyStatus.VOIDED) == sorted([a, b])
    (voided, _) = world.events()
    assert isinstance(voided, KeysVoided) and voided.key_ids == sorted([a, b])


async def test_delivery_gets_the_secrets_of_the_orders_live_keys_and_the_reveal_is_audited() -> (
    None
):
    world = World()
    await world.list_offer(offer_listed(OFFER))
    await world.import_file(
        OFFER,
        "SECRET-0001\nSECRET-0002\nSECRET-0003\nSECRET-0004\n",
        file_format=FileFormat.TXT,
        expires_at=world.clock() + timedelta(days=10),
    )
    a, b, c = await reserve(world, "order-1", 3)
    (other,) = await reserve(world, "order-2")
    await sell_for_paid_order(
        order_paid("order-1", OFFER, [a, b, c]), world.inventory, *message("o")
    )
    await void_for_refund(refund_requested("order-1", OFFER, [c]), world.inventory, *message("o"))

    reveal = await reveal_keys("order-1", [a, b, c, other, "ghost"], "delivery", world.inventory)

    secret_of = {key_id_for(OFFER, "import-1", n): f"SECRET-000{n}" for n in range(1, 5)}
    assert {k.key_id: k.secret for k in reveal.revealed} == {
        a: secret_of[a],
        b: secret_of[b],
    }
    assert [(w.key_id, w.status) for w in reveal.withheld] == [
        (c, "voided"),
        (other, "not_in_order"),
        ("ghost", "not_in_order"),
    ]
    (audit,) = world.audit.entries
    assert (audit.order_id, audit.service, audit.revealed) == ("order-1", "delivery", (a, b))
    assert set(audit.refused) == {c, other, "ghost"}
    assert "SECRET" not in repr(audit) + repr(reveal)

    world.clock.advance(timedelta(days=11))
    expired = await reveal_keys("order-1", [a], "delivery", world.inventory)
    assert [(w.key_id, w.status) for w in expired.withheld] == [(a, "expired")]


async def test_only_the_configured_services_may_reveal() -> None:
    world = World()
    (key,) = await world.stock_pool(OFFER, [10])
    await reserve(world, "order-1")
    with pytest.raises(ServiceNotAllowed):
        await reveal_keys("order-1", [key], "payment", world.inventory)
    assert world.audit.entries == []
