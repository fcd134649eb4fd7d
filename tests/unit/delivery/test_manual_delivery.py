"""Manual delivery on fakes: the seller's task, submission, and the SLA poller."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from kami_delivery import handlers
from kami_delivery.domain.delivery import delivery_id_for
from kami_delivery.domain.manual import TaskStatus
from kami_delivery.domain.rejections import Conflict, NotFound
from kami_events.catalogue.catalog import OfferListed
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import DeliveryFailed, DeliveryFailure, KeyDelivered
from tests.unit.delivery.events import OFFER, PRODUCT, SELLER, envelope, paid, placed
from tests.unit.delivery.fakes import World, world

FIELDS = {"game_account": "player#42", "server": "east-1"}
DELIVERY = delivery_id_for("order-1")


async def a_paid_manual_order(w: World, quantity: int = 1) -> None:
    order = placed(
        "order-1",
        "buyer-1",
        mode=DeliveryMode.MANUAL,
        quantity=quantity,
        buyer_fields=FIELDS,
        now=w.clock(),
    )
    await handlers.record_order_placed(w.deps, order)
    await handlers.accept_paid_order(w.deps, envelope(paid(order, []), at=w.clock()))


async def test_paid_manual_order_opens_a_task_for_its_seller_with_the_buyers_fields() -> None:
    w = world(manual_sla=timedelta(minutes=30))
    paid_at = w.clock()
    await a_paid_manual_order(w)

    [task] = await handlers.open_manual_deliveries(w.deps, SELLER, limit=10)
    assert task.delivery_id == DELIVERY
    assert dict(task.order.buyer_fields) == FIELDS
    assert task.deadline == paid_at + timedelta(minutes=30)
    assert await handlers.open_manual_deliveries(w.deps, "seller-2", limit=10) == []
    assert w.queue.jobs == {}  # not in the automatic lane
    [note] = w.messages.for_user(SELLER)
    assert "order-1" in note.body and task.deadline.isoformat() in note.body


async def test_the_offers_sla_wins_over_the_default() -> None:
    w = world(manual_sla=timedelta(minutes=30))
    await handlers.record_offer(
        w.deps,
        OfferListed(
            offer_id=OFFER,
            product_id=PRODUCT,
            seller_id=SELLER,
            unit_price=1_000,
            delivery_mode=DeliveryMode.MANUAL,
            manual_delivery_sla_minutes=120,
            guarantee_window_minutes=15,
            max_quantity_per_order=5,
        ),
    )
    await a_paid_manual_order(w)
    [task] = await handlers.open_manual_deliveries(w.deps, SELLER, limit=10)
    assert task.deadline - task.paid_at == timedelta(minutes=120)


async def test_the_deadline_ordering_set_wins_over_any_sla() -> None:
    w = world(manual_sla=timedelta(minutes=30))
    order = placed(
        "order-1",
        "buyer-1",
        mode=DeliveryMode.MANUAL,
        quantity=1,
        buyer_fields=FIELDS,
        now=w.clock(),
    )
    await handlers.record_order_placed(w.deps, order)
    deadline = w.clock() + timedelta(minutes=45)
    message = paid(order, []).model_copy(update={"delivery_deadline": deadline})
    await handlers.accept_paid_order(w.deps, envelope(message, at=w.clock()))
    [task] = await handlers.open_manual_deliveries(w.deps, SELLER, limit=10)
    assert task.deadline == deadline


async def test_seller_submits_the_keys_in_time_and_the_buyer_gets_them() -> None:
    w = world()
    await a_paid_manual_order(w, quantity=2)
    w.clock.advance(timedelta(minutes=10))

    order_id, key_ids = await handlers.submit_manual_keys(
        w.deps, SELLER, DELIVERY, ["TOPUP-0001-AAAA", "TOPUP-0002-BBBB"], "req-1"
    )

    assert order_id == "order-1"
    [delivered] = w.events()
    assert isinstance(delivered, KeyDelivered)
    assert delivered.mode is DeliveryMode.MANUAL and delivered.key_ids == key_ids
    assert w.store.committed[0].causation_id == "req-1"
    assert w.vault.visible_ids("buyer-1") == set(key_ids)
    secrets = {
        w.deps.sealer.open(e.sealed, context=e.seal_context).reveal()
        for e in w.vault.entries.values()
    }
    assert secrets == {"TOPUP-0001-AAAA", "TOPUP-0002-BBBB"}
    assert w.manual_tasks.tasks[DELIVERY].status is TaskStatus.DELIVERED
    assert await handlers.open_manual_deliveries(w.deps, SELLER, limit=10) == []
    with pytest.raises(Conflict) as again:
        await handlers.submit_manual_keys(w.deps, SELLER, DELIVERY, ["X-1"], "req-2")
    assert again.value.code == "already_delivered"


async def test_another_seller_cannot_deliver_or_even_see_the_task() -> None:
    w = world()
    await a_paid_manual_order(w)
    with pytest.raises(NotFound):
        await handlers.submit_manual_keys(w.deps, "seller-2", DELIVERY, ["KEY-1"], "req")
    with pytest.raises(NotFound):
        await handlers.submit_manual_keys(w.deps, SELLER, "no-such-delivery", ["KEY-1"], "req")
    assert w.events() == [] and w.vault.entries == {}


async def test_sla_expiry_fails_the_delivery_and_a_late_submission_is_refused() -> None:
    w = world(manual_sla=timedelta(minutes=30))
    await a_paid_manual_order(w)

    w.clock.advance(timedelta(minutes=29))
    assert await handlers.expire_overdue_manual_deliveries(w.deps) == 0
    w.clock.advance(timedelta(minutes=1))
    assert await handlers.expire_overdue_manual_deliveries(w.deps) == 1

    [failed] = w.events()
    assert isinstance(failed, DeliveryFailed)
    assert failed.reason is DeliveryFailure.MANUAL_SLA_EXPIRED
    assert failed.order_id == "order-1" and failed.key_ids == []
    assert w.manual_tasks.tasks[DELIVERY].status is TaskStatus.EXPIRED
    with pytest.raises(Conflict) as late:
        await handlers.submit_manual_keys(w.deps, SELLER, DELIVERY, ["KEY-1"], "req")
    assert late.value.code == "sla_expired"
    assert await handlers.expire_overdue_manual_deliveries(w.deps) == 0  # nothing twice
    assert w.vault.entries == {}


async def test_seller_who_won_the_race_at_the_deadline_keeps_the_delivery() -> None:
    w = world(manual_sla=timedelta(minutes=30))
    await a_paid_manual_order(w)
    w.clock.advance(timedelta(minutes=29, seconds=59))
    await handlers.submit_manual_keys(w.deps, SELLER, DELIVERY, ["KEY-1-XYZ"], "req")
    # The task record missed its close (a crash): the poller finds it overdue later.
    task = w.manual_tasks.tasks[DELIVERY]
    w.manual_tasks.tasks[DELIVERY] = type(task)(
        task.delivery_id, task.order, task.paid_at, task.deadline, TaskStatus.OPEN
    )
    w.clock.advance(timedelta(minutes=5))

    assert await handlers.expire_overdue_manual_deliveries(w.deps) == 0
    assert [type(e) for e in w.events()] == [KeyDelivered]
    assert w.manual_tasks.tasks[DELIVERY].status is TaskStatus.DELIVERED


async def test_redelivered_manual_order_paid_opens_one_task() -> None:
    w = world()
    await a_paid_manual_order(w)
    await a_paid_manual_order(w)
    assert len(await handlers.open_manual_deliveries(w.deps, SELLER, limit=10)) == 1
    assert len(w.messages.for_user(SELLER)) == 1


async def test_a_double_submission_delivers_one_set_of_keys_and_loses_none() -> None:
    w = world()
    await a_paid_manual_order(w)

    results = await asyncio.gather(
        handlers.submit_manual_keys(w.deps, SELLER, DELIVERY, ["FIRST-KEY-0001"], "req-1"),
        handlers.submit_manual_keys(w.deps, SELLER, DELIVERY, ["SECOND-KEY-002"], "req-2"),
        return_exceptions=True,
    )

    [won] = [r for r in results if isinstance(r, tuple)]
    [lost] = [r for r in results if isinstance(r, Exception)]
    assert isinstance(lost, Conflict) and lost.code == "delivery_concluded"
    [delivered] = w.events()
    assert isinstance(delivered, KeyDelivered) and delivered.key_ids == won[1]
    # The winner's key is in the vault and opens; the loser's left no trace.
    assert set(w.vault.entries) == set(won[1]) == w.vault.visible_ids("buyer-1")
    [entry] = w.vault.entries.values()
    assert w.deps.sealer.open(entry.sealed, context=entry.seal_context).reveal() == "FIRST-KEY-0001"
