"""Delivery's Mongo adapters on FerretDB: the lane (order of service,
exclusive claims under concurrency, leases), the vault, the read models."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from kami_delivery.adapters.mongo import DeliveryStores
from kami_delivery.adapters.ports import BuyerProfile, OrderRecord, OrderState, VaultEntry
from kami_delivery.domain.delivery import OrderFacts, delivery_id_for
from kami_delivery.domain.queue import QueuedDelivery
from kami_events.catalogue.common import DeliveryMode
from kami_events.mongo import Document

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def job(n: int, priority: int, paid_second: int) -> QueuedDelivery:
    order = OrderFacts(
        order_id=f"order-{n}",
        buyer_id=f"buyer-{n}",
        seller_id="seller",
        offer_id="offer",
        product_id="product",
        quantity=1,
        mode=DeliveryMode.AUTO,
        key_ids=(f"key-{n}",),
    )
    return QueuedDelivery(
        delivery_id=order.delivery_id,
        order=order,
        priority=priority,
        enqueued_at=T0 + timedelta(seconds=paid_second),
        causation_id=f"event-{n}",
    )


async def test_claims_follow_priority_then_payment_time(mongo_db: AsyncDatabase[Document]) -> None:
    stores = DeliveryStores(mongo_db)
    await stores.ensure_indexes()
    queue = stores.queue
    for n, (priority, second) in enumerate([(0, 1), (2, 5), (1, 0), (2, 3), (0, 0)]):
        assert await queue.enqueue(job(n, priority, second), now=T0)
    assert not await queue.enqueue(job(1, 2, 5), now=T0)  # once per delivery

    now = T0 + timedelta(seconds=10)
    claimed = []
    while (taken := await queue.claim(now, now + timedelta(minutes=1))) is not None:
        claimed.append(taken.order.order_id)
        assert taken.attempts == 1
    assert claimed == ["order-3", "order-1", "order-2", "order-4", "order-0"]
    assert await queue.counts() == {"queued": 0, "working": 5, "parked": 0}


async def test_concurrent_workers_never_claim_the_same_attempt(
    mongo_db: AsyncDatabase[Document],
) -> None:
    stores = DeliveryStores(mongo_db)
    await stores.ensure_indexes()
    queue = stores.queue
    for n in range(12):
        await queue.enqueue(job(n, n % 3, n), now=T0)
    now = T0 + timedelta(minutes=1)

    async def worker() -> list[str]:
        mine = []
        while (taken := await queue.claim(now, now + timedelta(minutes=1))) is not None:
            mine.append(taken.delivery_id)
        return mine

    results = await asyncio.gather(*(worker() for _ in range(6)))
    claims = Counter(d for mine in results for d in mine)
    assert set(claims) == {delivery_id_for(f"order-{n}") for n in range(12)}
    assert set(claims.values()) == {1}


async def test_an_expired_lease_is_claimed_again_and_retries_wait_their_turn(
    mongo_db: AsyncDatabase[Document],
) -> None:
    queue = DeliveryStores(mongo_db).queue
    await queue.enqueue(job(1, 0, 0), now=T0)
    first = await queue.claim(T0, T0 + timedelta(minutes=1))
    assert first is not None and first.attempts == 1
    assert await queue.claim(T0 + timedelta(seconds=59), T0 + timedelta(minutes=2)) is None
    # Its worker died: after the lease, the job is due again as attempt 2.
    second = await queue.claim(T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert second is not None and second.attempts == 2

    await queue.retry_at(second.delivery_id, T0 + timedelta(minutes=5), "inventory down")
    assert await queue.claim(T0 + timedelta(minutes=4), T0 + timedelta(minutes=6)) is None
    third = await queue.claim(T0 + timedelta(minutes=5), T0 + timedelta(minutes=6))
    assert third is not None and third.attempts == 3

    await queue.park(third.delivery_id, "gave up", T0 + timedelta(minutes=5))
    assert await queue.claim(T0 + timedelta(days=1), T0 + timedelta(days=2)) is None
    assert await queue.counts() == {"queued": 0, "working": 0, "parked": 1}


async def test_a_worker_dead_between_claim_and_update_holds_the_job_only_for_its_lease(
    mongo_db: AsyncDatabase[Document],
) -> None:
    """kill -9 of delivery right after a worker inserted its claim: the job is
    still `queued` with attempt 1 taken. Claiming must neither spin forever
    on that claim (it once did, wedging the lane until the next restart) nor
    hold back the other jobs; once the lease is over the job is claimed again."""
    stores = DeliveryStores(mongo_db)
    await stores.ensure_indexes()
    queue = stores.queue
    await queue.enqueue(job(1, 2, 0), now=T0)
    await queue.enqueue(job(2, 0, 1), now=T0)
    stuck = delivery_id_for("order-1")
    await mongo_db["delivery_claims"].insert_one(
        {"_id": f"{stuck}#1", "claimed_at": T0, "lease_until": T0 + timedelta(minutes=1)}
    )

    now = T0 + timedelta(seconds=5)
    other = await asyncio.wait_for(queue.claim(now, now + timedelta(minutes=1)), timeout=30)
    assert other is not None and other.order.order_id == "order-2"
    assert await asyncio.wait_for(queue.claim(now, now + timedelta(minutes=1)), timeout=30) is None

    later = T0 + timedelta(minutes=1)
    again = await asyncio.wait_for(queue.claim(later, later + timedelta(minutes=1)), timeout=30)
    assert again is not None and again.delivery_id == stuck and again.attempts == 2


def entry(key_id: str, delivery: str, *, owner: str = "buyer-1") -> VaultEntry:
    return VaultEntry(
        key_id=key_id,
        owner_id=owner,
        order_id=f"order-of-{delivery}",
        delivery_id=delivery,
        offer_id="offer",
        product_id="product",
        seller_id="seller",
        mode=DeliveryMode.AUTO,
        sealed=b"\x01sealed-bytes",
        masked="••••1234",
        expires_at=None,
        stored_at=T0,
    )


async def test_vault_keeps_one_owner_per_key_and_publishes_discards_and_voids(
    mongo_db: AsyncDatabase[Document],
) -> None:
    stores = DeliveryStores(mongo_db)
    await stores.ensure_indexes()
    vault = stores.vault
    assert await vault.stash([entry("k1", "d1"), entry("k2", "d1"), entry("k3", "d1")]) == []
    assert await vault.stash([entry("k1", "d1")]) == []  # the same delivery again: fine
    assert await vault.stash([entry("k1", "d2", owner="buyer-2")]) == ["k1"]  # never twice
    assert (await vault.get("k1")).owner_id == "buyer-1"  # type: ignore[union-attr]

    assert await vault.list_for("buyer-1") == []  # hidden until published
    await vault.publish("d1", ["k1", "k2"])
    assert await vault.discard_hidden("d1", among=["k1", "k9"]) == 0  # k1 is visible
    assert await vault.discard_hidden("d1", keep=["k2"]) == 1  # k3, never published
    assert [e.key_id for e in await vault.list_for("buyer-1")] == ["k1", "k2"]

    assert await vault.void("order-of-d1", ["k2"]) == 1
    assert await vault.void("order-of-d1", ["k2"]) == 0
    voided = await vault.get("k2")
    assert voided is not None and voided.voided and voided.sealed == b""
    assert [e.key_id for e in await vault.list_for("buyer-1", order_id="order-of-d1")] == ["k1"]


async def test_keys_a_process_made_visible_are_not_published_again_by_it(
    mongo_db: AsyncDatabase[Document],
) -> None:
    stores = DeliveryStores(mongo_db)
    await stores.ensure_indexes()
    vault = stores.vault
    await vault.stash([entry("k1", "d1"), entry("k2", "d1")])
    await vault.publish("d1", ["k1", "k2"])
    # What the second publish would undo, were it written (nothing does this).
    await mongo_db["vault"].update_many({}, {"$set": {"visible": False}})
    await vault.publish("d1", ["k2"])  # KeyDelivered back from Kafka: no write
    assert await vault.list_for("buyer-1") == []
    # Another process knows nothing of it, and writes.
    await DeliveryStores(mongo_db).vault.publish("d1", ["k1", "k2"])
    assert [e.key_id for e in await vault.list_for("buyer-1")] == ["k1", "k2"]


async def test_read_models_only_move_forward(mongo_db: AsyncDatabase[Document]) -> None:
    stores = DeliveryStores(mongo_db)
    orders, buyers = stores.orders, stores.buyers
    record = OrderRecord("o1", "b1", "s1", "f1", "p1", 2, DeliveryMode.MANUAL, {"server": "east"})
    await orders.record_placed(record)
    await orders.set_state("o1", OrderState.PAID)
    await orders.set_state("o1", OrderState.COMPLETED)
    await orders.set_state("o1", OrderState.PAID)  # a stray replay
    got = await orders.get("o1")
    assert got is not None and got.state is OrderState.COMPLETED
    assert got.buyer_fields == {"server": "east"}
    await orders.record_refund_request("o1", "r.1", ["k1"])
    await orders.record_refund_request("o1", "r.1", ["k1"])
    await orders.record_refund_request("o1", "r.2", [])
    assert await orders.void_key_ids("o1", "r.1") == ["k1"]
    doc = await mongo_db["orders"].find_one({"_id": "o1"})
    assert doc is not None and len(doc["refunds"]) == 2

    await buyers.record_phone("u1", "138****0001")
    await buyers.record_priority("u1", 2, "advanced", 5)
    await buyers.record_priority("u1", 1, "real_name", 3)  # older: ignored
    profile = await buyers.get("u1")
    assert profile == BuyerProfile("u1", delivery_priority=2, phone_masked="138****0001")
    await buyers.record_priority("u2", 1, "real_name", 1)  # a buyer not seen before
    assert (await buyers.get("u2")) == BuyerProfile("u2", delivery_priority=1)


async def test_a_job_keeps_what_its_worker_needs_and_completing_it_removes_its_claims(
    mongo_db: AsyncDatabase[Document],
) -> None:
    stores = DeliveryStores(mongo_db)
    await stores.ensure_indexes()
    queued = dataclasses.replace(
        job(1, 0, 0), buyer_has_phone=True, delivery_deadline=T0 + timedelta(minutes=10)
    )
    await stores.queue.enqueue(queued, now=T0)
    first = await stores.queue.claim(T0, T0)  # its lease ran out at once: claimed again
    second = await stores.queue.claim(T0, T0 + timedelta(minutes=1))
    assert first is not None and second is not None and second.attempts == 2
    assert second.buyer_has_phone is True and second.delivery_deadline == queued.delivery_deadline
    await stores.queue.complete(second.delivery_id, "delivered", T0, attempts=second.attempts)
    assert await mongo_db["delivery_queue"].count_documents({}) == 0
    assert await mongo_db["delivery_claims"].count_documents({}) == 0


async def test_racing_stashes_of_one_key_leave_it_with_one_delivery(
    mongo_db: AsyncDatabase[Document],
) -> None:
    stores = DeliveryStores(mongo_db)
    await stores.ensure_indexes()
    results = await asyncio.gather(
        *(stores.vault.stash([entry("k-race", f"d{n}", owner=f"b{n}")]) for n in range(10))
    )
    assert sorted(results) == [[]] + [["k-race"]] * 9
    winner = next(n for n, taken in enumerate(results) if not taken)
    held = await stores.vault.get("k-race")
    assert held is not None and held.delivery_id == f"d{winner}"
