"""Replacement keys on the real FerretDB: replacements and new orders racing
for the last keys of a pool, decided by the same claims as reservations."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from kami_events.catalogue.common import RefundReason
from kami_events.catalogue.inventory import ReplacementKeysAllocated, StockChanged
from kami_events.clock import utc_now
from kami_inventory.domain.keys import KeyStatus
from kami_inventory.domain.replacements import Replacement
from kami_inventory.domain.reservations import Reservation
from kami_inventory.handlers import (
    replace_keys,
    reserve_for_order,
    sell_for_paid_order,
    void_for_refund,
)
from tests.integration.inventory.conftest import PoolOnMongo
from tests.integration.inventory.test_key_store import OFFER, last_stock, stock
from tests.unit.inventory.samples import (
    message,
    order_paid,
    order_placed,
    refund_requested,
    replacement_approved,
)


async def sold_orders(pool: PoolOnMongo, count: int) -> dict[str, str]:
    """`count` paid orders of one key each: order id → its key."""
    deadline = utc_now() + timedelta(minutes=15)
    keys = {}
    for n in range(count):
        order_id = f"sold-{n:02d}"
        reservation = await reserve_for_order(
            order_placed(order_id, OFFER, deadline=deadline), pool.inventory, *message(order_id)
        )
        assert reservation is not None and reservation.succeeded
        await sell_for_paid_order(
            order_paid(order_id, OFFER, list(reservation.key_ids)),
            pool.inventory,
            *message(order_id),
        )
        keys[order_id] = reservation.key_ids[0]
    return keys


async def test_replacements_and_new_orders_racing_for_the_last_keys_never_share_one(
    pool: PoolOnMongo,
) -> None:
    await stock(pool, 10)
    faulty = await sold_orders(pool, 6)  # 4 keys left
    deadline = utc_now() + timedelta(minutes=15)

    results = await asyncio.gather(
        *(
            replace_keys(
                replacement_approved(f"ticket-{order_id}", order_id, OFFER, [key]),
                pool.inventory,
                *message(order_id),
            )
            for order_id, key in faulty.items()
        ),
        *(
            reserve_for_order(
                order_placed(f"new-{n}", OFFER, deadline=deadline),
                pool.inventory,
                *message(f"new-{n}"),
            )
            for n in range(4)
        ),
    )

    replaced = [r for r in results if isinstance(r, Replacement) and r.succeeded]
    reserved = [r for r in results if isinstance(r, Reservation) and r.succeeded]
    assert len(replaced) + len(reserved) == 4  # exactly the keys that were left
    taken = [k for r in replaced for k in r.key_ids] + [k for r in reserved for k in r.key_ids]
    assert len(set(taken)) == 4
    assert not set(taken) & set(faulty.values())
    # The stored keys agree with what each order was told.
    states = {doc["_id"]: doc async for doc in pool.db["keys"].find({"offer_id": OFFER})}
    for replacement in replaced:
        (new,) = replacement.key_ids
        assert (states[new]["status"], states[new]["order_id"]) == ("sold", replacement.order_id)
        assert states[faulty[replacement.order_id]]["status"] == "voided"
    for failed in (r for r in results if isinstance(r, Replacement) and not r.succeeded):
        assert states[faulty[failed.order_id]]["status"] == "sold"  # left to the refund
    for reservation in reserved:
        assert states[reservation.key_ids[0]]["order_id"] == reservation.order_id
    # No key was claimed twice for one generation, and each ticket was answered once.
    claims = Counter([(d["key_id"], d["gen"]) async for d in pool.db["key_claims"].find()])
    assert set(claims.values()) == {1}
    events = [e.payload for e in await pool.store.load("inventory.pool", OFFER)]
    answers = Counter(type(e).__name__ for e in events if not isinstance(e, StockChanged))
    assert answers["ReplacementKeysAllocated"] + answers["KeyReplacementFailed"] == 6
    allocated = [e for e in events if isinstance(e, ReplacementKeysAllocated)]
    assert sorted(k for e in allocated for k in e.key_ids) == sorted(
        k for r in replaced for k in r.key_ids
    )
    levels = await pool.adapters.keys.stock(OFFER, utc_now())
    assert (levels.available, levels.voided) == (0, len(replaced))
    assert await last_stock(pool) == StockChanged(
        offer_id=OFFER, available=0, reserved=len(reserved)
    )


async def test_a_chargeback_after_a_replacement_voids_the_replacement_key(
    pool: PoolOnMongo,
) -> None:
    await stock(pool, 3)
    faulty = await sold_orders(pool, 1)
    replacement = await replace_keys(
        replacement_approved("ticket-1", "sold-00", OFFER, [faulty["sold-00"]]),
        pool.inventory,
        *message("sold-00"),
    )
    assert replacement.succeeded

    voided = await void_for_refund(
        refund_requested("sold-00", OFFER, [faulty["sold-00"]], reason=RefundReason.CHARGEBACK),
        pool.inventory,
        *message("sold-00"),
    )

    assert voided == list(replacement.key_ids)
    (new,) = await pool.adapters.keys.get(replacement.key_ids)
    assert new.status is KeyStatus.VOIDED
