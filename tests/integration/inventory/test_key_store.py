"""The key pool's atomic moves on the real FerretDB: many orders racing for
few keys, and the claim log that makes every move happen once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest

from kami_events.catalogue.inventory import (
    BlockReason,
    KeyReservationFailed,
    KeyReserved,
    KeysImported,
    KeysReleased,
    KeysSold,
    StockChanged,
)
from kami_events.clock import utc_now
from kami_events.locks import KeyedLocks
from kami_inventory.adapters.keys import MongoKeyStore
from kami_inventory.domain import keys as t
from kami_inventory.domain.imports import FileFormat
from kami_inventory.domain.keys import KeyStatus
from kami_inventory.domain.reservations import Reservation
from kami_inventory.domain.stock import StockLevels
from kami_inventory.handlers import (
    ImportKeys,
    import_keys,
    record_offer_listed,
    release_for_cancelled_order,
    reserve_for_order,
    sell_for_paid_order,
)
from tests.integration.inventory.conftest import PoolOnMongo
from tests.unit.inventory.samples import (
    SELLER,
    message,
    offer_listed,
    order_cancelled,
    order_paid,
    order_placed,
)

OFFER = "offer-race"


async def stock(pool: PoolOnMongo, count: int) -> None:
    await record_offer_listed(offer_listed(OFFER), 1, pool.inventory)
    content = "".join(f"RACE-KEY-{n:04d}-{'x' * 8}\n" for n in range(count))
    report, _ = await import_keys(
        ImportKeys(SELLER, OFFER, "import-1", FileFormat.TXT, content), pool.inventory
    )
    assert report.imported == count


async def race(pool: PoolOnMongo, orders: int, quantity: int) -> list[Reservation]:
    deadline = utc_now() + timedelta(minutes=15)
    placed = [
        order_placed(f"order-{n:03d}", OFFER, quantity=quantity, deadline=deadline)
        for n in range(orders)
    ]
    results = await asyncio.gather(
        *(reserve_for_order(o, pool.inventory, *message(o.order_id)) for o in placed)
    )
    return [r for r in results if r is not None]


async def last_stock(pool: PoolOnMongo) -> StockChanged:
    envelopes = await pool.store.load("inventory.pool", OFFER)
    changes = [e.payload for e in envelopes if isinstance(e.payload, StockChanged)]
    return changes[-1]


async def test_forty_orders_race_for_ten_keys_and_exactly_ten_get_one(pool: PoolOnMongo) -> None:
    await stock(pool, 10)

    reservations = await race(pool, orders=40, quantity=1)

    winners = [r for r in reservations if r.succeeded]
    assert len(winners) == 10
    held = [key_id for r in winners for key_id in r.key_ids]
    assert len(set(held)) == 10  # no key to two orders
    # The stored keys agree with what each order was told.
    owner = {r.key_ids[0]: r.order_id for r in winners}
    async for doc in pool.db["keys"].find({"offer_id": OFFER}):
        assert doc["status"] == KeyStatus.RESERVED.value
        assert doc["order_id"] == owner[doc["_id"]]
    # Each key was claimed exactly once, and each order answered exactly once.
    claims = Counter([doc["key_id"] async for doc in pool.db["key_claims"].find()])
    assert set(claims.values()) == {1} and len(claims) == 10
    events = [e.payload for e in await pool.store.load("inventory.pool", OFFER)]
    answers = Counter(type(e).__name__ for e in events if not isinstance(e, StockChanged))
    assert answers == {"KeysImported": 1, "KeyReserved": 10, "KeyReservationFailed": 30}
    reserved_events = [e for e in events if isinstance(e, KeyReserved)]
    assert sorted(k for e in reserved_events for k in e.key_ids) == sorted(held)
    # The last count announced counts every move.
    assert await last_stock(pool) == StockChanged(offer_id=OFFER, available=0, reserved=10)


async def test_orders_of_three_racing_for_ten_keys_get_all_or_nothing(pool: PoolOnMongo) -> None:
    await stock(pool, 10)

    reservations = await race(pool, orders=12, quantity=3)

    winners = [r for r in reservations if r.succeeded]
    assert 1 <= len(winners) <= 3
    held = [key_id for r in winners for key_id in r.key_ids]
    assert len(held) == len(set(held)) == 3 * len(winners)
    for loser in (r for r in reservations if not r.succeeded):
        assert await pool.adapters.keys.of_order(loser.order_id, KeyStatus.RESERVED) == []
    levels = await pool.adapters.keys.stock(OFFER, utc_now())
    assert (levels.reserved, levels.available) == (len(held), 10 - len(held))
    assert await last_stock(pool) == StockChanged(
        offer_id=OFFER, available=10 - len(held), reserved=len(held)
    )
    failures = [
        e.payload
        for e in await pool.store.load("inventory.pool", OFFER)
        if isinstance(e.payload, KeyReservationFailed)
    ]
    assert len(failures) == 12 - len(winners)


async def test_one_key_moves_once_however_many_try(pool: PoolOnMongo) -> None:
    await stock(pool, 1)
    keys = pool.adapters.keys
    (key,) = await keys.available(OFFER, utc_now(), (), 1)
    until = utc_now() + timedelta(minutes=17)

    won = await asyncio.gather(
        *(keys.move(key, t.reserve(f"order-{n}", until), f"reserve:order-{n}") for n in range(20))
    )

    assert won.count(True) == 1
    winner = f"order-{won.index(True)}"
    (now,) = await keys.get([key.key_id])
    assert (now.status, now.order_id, now.gen) == (KeyStatus.RESERVED, winner, 1)
    # A stale copy (generation 0) cannot move the key again, even to release it.
    assert not await keys.move(key, t.reserve("late", until), "reserve:late")
    # The winner's retry recognises its own move.
    assert await keys.move(key, t.reserve(winner, until), f"reserve:{winner}")
    assert await keys.moved_by(f"reserve:{winner}") == [key.key_id]


async def test_a_move_decided_but_not_written_is_seen_and_finished(pool: PoolOnMongo) -> None:
    await stock(pool, 1)
    keys = pool.adapters.keys
    (key,) = await keys.available(OFFER, utc_now(), (), 1)
    until = utc_now() + timedelta(minutes=17)
    # A process claims the key and dies before writing it.
    target = t.reserve("order-1", until).apply(key)
    await pool.db["key_claims"].insert_one(
        {
            "_id": f"{key.key_id}@0",
            "key_id": key.key_id,
            "offer_id": OFFER,
            "gen": 0,
            "op": "reserve:order-1",
            "transition": "reserve",
            "to": {
                "status": target.status.value,
                "order_id": target.order_id,
                "reserved_until": target.reserved_until,
                "reason": None,
            },
            "at": utc_now() - timedelta(minutes=5),
            "applied": False,
        }
    )
    # Readers see the decided state; nobody else can take the key.
    (seen,) = await keys.get([key.key_id])
    assert (seen.status, seen.order_id) == (KeyStatus.RESERVED, "order-1")
    assert not await keys.move(key, t.reserve("order-2", until), "reserve:order-2")

    assert await keys.finish_stale_moves(timedelta(seconds=30)) == 1

    doc = await pool.db["keys"].find_one({"_id": key.key_id})
    assert doc is not None and (doc["status"], doc["order_id"], doc["gen"]) == (
        "reserved",
        "order-1",
        1,
    )
    assert await keys.finish_stale_moves(timedelta(seconds=30)) == 0


async def test_reading_keys_for_an_operation_writes_its_own_unwritten_moves(
    pool: PoolOnMongo,
) -> None:
    await stock(pool, 2)
    keys = pool.adapters.keys
    mine, theirs = await keys.available(OFFER, utc_now(), (), 2)
    until = utc_now() + timedelta(minutes=17)
    # Two operations each claim a key and die before writing it.
    for key, order_id in [(mine, "order-1"), (theirs, "order-2")]:
        target = t.reserve(order_id, until).apply(key)
        await pool.db["key_claims"].insert_one(
            {
                "_id": f"{key.key_id}@0",
                "key_id": key.key_id,
                "offer_id": OFFER,
                "gen": 0,
                "op": f"reserve:{order_id}",
                "transition": "reserve",
                "to": {
                    "status": target.status.value,
                    "order_id": target.order_id,
                    "reserved_until": target.reserved_until,
                    "reason": None,
                },
                "at": utc_now(),
                "applied": False,
            }
        )

    seen = await keys.get([mine.key_id, theirs.key_id], settle="reserve:order-1")

    assert [(k.status, k.order_id, k.gen) for k in seen] == [
        (KeyStatus.RESERVED, "order-1", 1),
        (KeyStatus.RESERVED, "order-2", 1),
    ]
    docs = {d["_id"]: d async for d in pool.db["keys"].find({"offer_id": OFFER})}
    assert (docs[mine.key_id]["status"], docs[mine.key_id]["gen"]) == ("reserved", 1)
    # Another operation's move is left to its owner (or to the maintenance job).
    assert (docs[theirs.key_id]["status"], docs[theirs.key_id]["gen"]) == ("available", 0)
    unapplied = [c["op"] async for c in pool.db["key_claims"].find({"applied": False})]
    assert unapplied == ["reserve:order-2"]


async def test_candidates_read_once_serve_the_next_reservations(
    pool: PoolOnMongo, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stock(pool, 12)
    keys = pool.adapters.keys
    elsewhere = MongoKeyStore(pool.db, clock=utc_now)  # another inventory process
    reads: list[int] = []
    read = keys._available

    async def counted(*args: Any) -> list[t.PoolKey]:
        found = await read(*args)
        reads.append(len(found))
        return found

    monkeypatch.setattr(keys, "_available", counted)
    (first,) = await keys.available(OFFER, utc_now(), (), 1)
    until = utc_now() + timedelta(minutes=17)
    # Another process takes the next candidate meanwhile: this one's claim
    # on it fails, and the one after it is taken instead.
    (second,) = await elsewhere.available(OFFER, utc_now(), (first.key_id,), 1)
    assert await elsewhere.move(second, t.reserve("order-b", until), "reserve:order-b")
    (stale,) = await keys.available(OFFER, utc_now(), (first.key_id,), 1)
    assert stale.key_id == second.key_id
    assert not await keys.move(stale, t.reserve("order-a", until), "reserve:order-a")
    (third,) = await keys.available(OFFER, utc_now(), (first.key_id, second.key_id), 1)
    assert await keys.move(third, t.reserve("order-a", until), "reserve:order-a")

    assert reads == [12]  # one read of the pool for the three asks
    # New keys may expire sooner: an import makes the next ask read again.
    await import_keys(
        ImportKeys(SELLER, OFFER, "import-2", FileFormat.TXT, "LATE-KEY-0001-xxxxxxxx\n"),
        pool.inventory,
    )
    await keys.available(OFFER, utc_now(), (), 1)
    assert len(reads) == 2


async def test_a_held_move_is_seen_but_written_only_by_its_own_operation(
    pool: PoolOnMongo,
) -> None:
    await stock(pool, 1)
    keys = pool.adapters.keys
    (key,) = await keys.available(OFFER, utc_now(), (), 1)
    until = utc_now() + timedelta(minutes=17)
    assert await keys.move(key, t.reserve("order-1", until), "reserve:order-1")
    (reserved,) = await keys.get([key.key_id])

    assert await keys.move(reserved, t.release("order-1"), "release:order-1", write=False)
    # Its retry recognises the claim and still does not write it.
    assert await keys.move(reserved, t.release("order-1"), "release:order-1", write=False)

    (seen,) = await keys.get([key.key_id], settle="release:order-1")
    assert (seen.status, seen.gen) == (KeyStatus.AVAILABLE, 2)
    assert await keys.available(OFFER, utc_now(), (), 1) == []
    await pool.db["key_claims"].update_one(
        {"_id": f"{key.key_id}@1"}, {"$set": {"at": utc_now() - timedelta(minutes=5)}}
    )
    assert await keys.finish_stale_moves(timedelta(seconds=30)) == 0
    doc = await pool.db["keys"].find_one({"_id": key.key_id})
    assert doc is not None and (doc["status"], doc["gen"]) == ("reserved", 1)

    await keys.resume("release:order-1")

    (offered,) = await keys.available(OFFER, utc_now(), (), 1)
    assert (offered.status, offered.order_id, offered.gen) == (KeyStatus.AVAILABLE, None, 2)


async def test_keys_are_counted_by_state_and_expired_keys_by_offer(pool: PoolOnMongo) -> None:
    await stock(pool, 4)
    keys = pool.adapters.keys
    first, second, third, _ = await keys.available(OFFER, utc_now(), (), 4)
    until = utc_now() + timedelta(minutes=17)
    assert await keys.move(first, t.reserve("order-1", until), "reserve:order-1")
    assert await keys.move(second, t.block(BlockReason.NEAR_EXPIRY), "block:1")
    assert await keys.move(third, t.void_by_seller(), "void:1")

    assert await keys.counts(OFFER) == StockLevels(available=1, reserved=1, blocked=1, voided=1)
    # Nothing has expired yet; once all have, only the unsold (available, blocked) count.
    assert await keys.expired(utc_now()) == {}
    later = first.expires_at + timedelta(seconds=1)  # every key of the file expires then
    assert (await keys.expired(later)).get(OFFER) == 2
    assert await keys.stock(OFFER, later) == StockLevels(
        available=1, reserved=1, blocked=1, voided=1, expired=2
    )


async def test_keys_are_read_with_their_sealed_secrets_in_their_current_state(
    pool: PoolOnMongo,
) -> None:
    await stock(pool, 2)
    keys = pool.adapters.keys
    first, second = await keys.available(OFFER, utc_now(), (), 2)
    until = utc_now() + timedelta(minutes=17)
    assert await keys.move(first, t.reserve("order-1", until), "reserve:order-1")

    found = await keys.get_sealed([second.key_id, first.key_id, "no-such-key"])

    assert [(k.key_id, k.status, k.gen) for k, _ in found] == [
        (second.key_id, KeyStatus.AVAILABLE, 0),
        (first.key_id, KeyStatus.RESERVED, 1),
    ]
    assert [s for _, s in found] == await keys.sealed([second.key_id, first.key_id])


async def test_the_last_stock_announced_counts_every_key_after_a_storm(pool: PoolOnMongo) -> None:
    """Reservations, releases and sales of one pool taking turns, as the
    consumer runs them, and an import at the same time, as the API runs it:
    every move is announced once, the pool's stream agrees with its keys, and
    its last StockChanged with both."""
    await stock(pool, 10)
    inv = pool.inventory
    first = [r for r in await race(pool, orders=8, quantity=1) if r.succeeded]
    assert len(first) == 8
    cancelled, paid = first[:4], first[4:]
    deadline = utc_now() + timedelta(minutes=15)
    later = [order_placed(f"late-{n}", OFFER, quantity=2, deadline=deadline) for n in range(4)]
    content = "".join(f"MORE-KEY-{n:04d}-{'y' * 8}\n" for n in range(5))
    pools = KeyedLocks()

    async def in_turn(step: Awaitable[object]) -> None:
        async with pools.hold(OFFER):
            await step

    await asyncio.gather(
        *(
            in_turn(
                release_for_cancelled_order(
                    order_cancelled(r.order_id, OFFER, list(r.key_ids)), inv, *message(r.order_id)
                )
            )
            for r in cancelled
        ),
        *(
            in_turn(
                sell_for_paid_order(
                    order_paid(r.order_id, OFFER, list(r.key_ids)), inv, *message(r.order_id)
                )
            )
            for r in paid
        ),
        *(in_turn(reserve_for_order(o, inv, *message(o.order_id))) for o in later),
        import_keys(ImportKeys(SELLER, OFFER, "import-2", FileFormat.TXT, content), inv),
    )

    counts = await pool.adapters.keys.counts(OFFER)
    assert counts.sold == 4 and counts.available + counts.reserved == 11
    assert await last_stock(pool) == StockChanged(
        offer_id=OFFER, available=counts.available, reserved=counts.reserved
    )
    # The stream tells each key's moves: replayed, it gives the same counts.
    state: dict[str, str] = {}
    imported = 0
    for event in [e.payload for e in await pool.store.load("inventory.pool", OFFER)]:
        if isinstance(event, KeysImported):
            imported += event.imported
        if isinstance(event, KeyReserved | KeysReleased | KeysSold):
            moved = {KeyReserved: "reserved", KeysReleased: "available", KeysSold: "sold"}
            for key_id in event.key_ids:
                state[key_id] = moved[type(event)]
    replayed = Counter(state.values())
    assert imported == 15
    assert (imported - replayed["reserved"] - replayed["sold"], replayed["reserved"]) == (
        counts.available,
        counts.reserved,
    )
    assert replayed["sold"] == counts.sold
    # Nothing decided is left unwritten.
    assert await pool.db["key_claims"].count_documents({"applied": False}) == 0
