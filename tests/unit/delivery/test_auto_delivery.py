"""Automatic delivery, step by step on fakes: given these events, expect these effects."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_delivery import handlers
from kami_delivery.adapters.ports import OrderState
from kami_delivery.domain.delivery import delivery_id_for
from kami_delivery.domain.keys import UnavailableStatus
from kami_delivery.handlers import UnknownOrder
from kami_events.catalogue.delivery import (
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
)
from kami_events.catalogue.identity import KycTier, PhoneVerified
from tests.unit.delivery.events import envelope, paid, placed, verified
from tests.unit.delivery.fakes import World, world

SECRETS = {"k-1": "AAAA-BBBB-CCCC-1111", "k-2": "AAAA-BBBB-CCCC-2222"}


async def a_paid_auto_order(w: World, order_id: str = "order-1", buyer: str = "buyer-1") -> None:
    order = placed(order_id, buyer, now=w.clock())
    await handlers.record_order_placed(w.deps, order)
    await handlers.accept_paid_order(w.deps, envelope(paid(order, list(SECRETS)), at=w.clock()))


async def test_paid_order_is_delivered_sealed_into_the_buyers_vault() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    await handlers.record_phone(
        w.deps, PhoneVerified(user_id="buyer-1", phone_masked="138****0001")
    )

    await a_paid_auto_order(w)
    assert w.events() == []  # OrderPaid only queues
    assert await handlers.deliver_next(w.deps) is True

    [delivered] = w.events()
    assert isinstance(delivered, KeyDelivered)
    assert delivered.order_id == "order-1" and delivered.key_ids == ["k-1", "k-2"]
    assert delivered.channels == [DeliveryChannel.VAULT, DeliveryChannel.SMS]
    assert w.store.committed[0].correlation_id == "order-1"
    assert w.inventory.calls == [("order-1", ("k-1", "k-2"))]
    # In the vault, visible, sealed: the ciphertext is not the secret and opens only for its entry.
    assert w.vault.visible_ids("buyer-1") == {"k-1", "k-2"}
    entry = w.vault.entries["k-1"]
    assert SECRETS["k-1"].encode() not in entry.sealed
    assert w.deps.sealer.open(entry.sealed, context=entry.seal_context).reveal() == SECRETS["k-1"]
    assert entry.masked.endswith("1111") and "AAAA" not in entry.masked
    assert w.queue.jobs[delivery_id_for("order-1")].outcome == "delivered"
    assert await handlers.deliver_next(w.deps) is False  # the lane is empty


async def test_redelivered_order_paid_delivers_once() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    order = placed("order-1", "buyer-1", now=w.clock())
    await handlers.record_order_placed(w.deps, order)
    message = envelope(paid(order, list(SECRETS)), at=w.clock())

    await handlers.accept_paid_order(w.deps, message)
    await handlers.deliver_next(w.deps)
    # The same OrderPaid again (a redelivery), and a copy under a new event id (a replay).
    await handlers.accept_paid_order(w.deps, message)
    await handlers.accept_paid_order(w.deps, envelope(paid(order, list(SECRETS)), at=w.clock()))
    while await handlers.deliver_next(w.deps):
        pass

    assert [type(e) for e in w.events()] == [KeyDelivered]
    assert len(w.inventory.calls) == 1


async def test_a_delivery_concluded_elsewhere_is_not_redone() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    await a_paid_auto_order(w)
    await handlers.deliver_next(w.deps)
    # The job's record is lost (e.g. the lane was rebuilt) and OrderPaid is replayed.
    w.queue.jobs.clear()
    await a_paid_auto_order(w)
    await handlers.deliver_next(w.deps)

    assert len(w.events(KeyDelivered)) == 1
    assert len(w.inventory.calls) == 1
    assert w.queue.jobs[delivery_id_for("order-1")].outcome == "already_delivered"


async def test_a_blocked_key_fails_the_delivery_and_stores_nothing() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    w.inventory.unavailable["k-2"] = UnavailableStatus.BLOCKED
    await a_paid_auto_order(w)
    await handlers.deliver_next(w.deps)

    [failed] = w.events()
    assert isinstance(failed, DeliveryFailed)
    assert failed.reason is DeliveryFailure.KEY_BLOCKED
    assert failed.key_ids == ["k-1", "k-2"] and failed.faulty_key_ids == ["k-2"]
    assert w.vault.entries == {}
    assert w.queue.jobs[delivery_id_for("order-1")].outcome == "failed"


@pytest.mark.parametrize(
    "status", [UnavailableStatus.VOIDED, UnavailableStatus.EXPIRED, UnavailableStatus.UNKNOWN]
)
async def test_a_voided_expired_or_unknown_key_is_key_invalid(status: UnavailableStatus) -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    w.inventory.unavailable["k-1"] = status
    await a_paid_auto_order(w)
    await handlers.deliver_next(w.deps)

    [failed] = w.events()
    assert isinstance(failed, DeliveryFailed)
    assert failed.reason is DeliveryFailure.KEY_INVALID and failed.faulty_key_ids == ["k-1"]
    assert w.vault.entries == {}


async def test_unreachable_inventory_is_retried_with_backoff_then_parked_never_failed() -> None:
    w = world(max_attempts=3)
    w.inventory.down = True
    await a_paid_auto_order(w)
    job_id = delivery_id_for("order-1")

    assert await handlers.deliver_next(w.deps)
    assert w.queue.jobs[job_id].status == "queued"
    assert w.queue.jobs[job_id].available_at == w.clock() + timedelta(seconds=1)
    assert await handlers.deliver_next(w.deps) is False  # not due yet
    w.clock.advance(timedelta(seconds=1))
    assert await handlers.deliver_next(w.deps)
    assert w.queue.jobs[job_id].available_at == w.clock() + timedelta(seconds=2)
    w.clock.advance(timedelta(seconds=2))
    assert await handlers.deliver_next(w.deps)

    assert w.queue.jobs[job_id].status == "parked"
    assert "ConnectError" in (w.queue.jobs[job_id].error or "")
    assert w.events() == []  # an outage is not the buyer's key being bad
    assert len(w.inventory.calls) == 3


async def test_inventory_back_in_time_delivers_on_the_retry() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    w.inventory.down = True
    await a_paid_auto_order(w)
    await handlers.deliver_next(w.deps)
    w.inventory.down = False
    w.clock.advance(timedelta(seconds=1))
    await handlers.deliver_next(w.deps)
    assert [type(e) for e in w.events()] == [KeyDelivered]


async def test_a_key_already_in_another_orders_vault_is_never_delivered_again() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    await a_paid_auto_order(w, "order-1", "buyer-1")
    await handlers.deliver_next(w.deps)
    # A faulty inventory hands the same keys to a second order.
    await a_paid_auto_order(w, "order-2", "buyer-2")
    await handlers.deliver_next(w.deps)

    first, second = w.events()
    assert isinstance(first, KeyDelivered) and isinstance(second, DeliveryFailed)
    assert second.order_id == "order-2" and second.faulty_key_ids == ["k-1", "k-2"]
    assert w.vault.visible_ids("buyer-2") == set()
    assert {e.owner_id for e in w.vault.entries.values()} == {"buyer-1"}


async def test_order_paid_before_order_placed_is_refused_for_a_retry() -> None:
    w = world()
    order = placed("order-1", "buyer-1", now=w.clock())
    with pytest.raises(UnknownOrder):
        await handlers.accept_paid_order(
            w.deps, envelope(paid(order, ["k-1", "k-2"]), at=w.clock())
        )
    assert w.queue.jobs == {}


async def test_when_deliveries_back_up_higher_tiers_are_served_first_then_the_oldest() -> None:
    w = world()
    tiers = {"b-phone": 0, "b-real": 1, "b-advanced": 2}
    for version, (buyer, priority) in enumerate(tiers.items(), start=1):
        tier = list(KycTier)[priority]
        await handlers.record_tier(w.deps, verified(buyer, tier, priority), version)
    # Paid in this order, a second apart, while the lane is not running.
    arrivals = ["b-phone", "b-real", "b-phone", "b-advanced", "b-real"]
    for n, buyer in enumerate(arrivals):
        key = f"k-{n}"
        w.inventory.stock(**{key: f"SECRET-{n:04d}-XXXXXXXX"})
        order = placed(f"order-{n}", buyer, quantity=1, now=w.clock())
        await handlers.record_order_placed(w.deps, order)
        await handlers.accept_paid_order(w.deps, envelope(paid(order, [key]), at=w.clock()))
        w.clock.advance(timedelta(seconds=1))

    while await handlers.deliver_next(w.deps):
        pass

    served = [order_id for order_id, _ in w.inventory.calls]
    assert served == ["order-3", "order-1", "order-4", "order-0", "order-2"]


async def test_a_later_tier_event_wins_and_an_older_one_replayed_changes_nothing() -> None:
    w = world()
    await handlers.record_tier(w.deps, verified("b", KycTier.PHONE, 0), 2)
    await handlers.record_tier(w.deps, verified("b", KycTier.ADVANCED, 2), 5)
    await handlers.record_tier(w.deps, verified("b", KycTier.REAL_NAME, 1), 3)
    profile = await w.buyers.get("b")
    assert profile is not None and profile.delivery_priority == 2


async def test_an_order_refunded_while_queued_is_not_delivered() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    await a_paid_auto_order(w)
    await handlers.record_order_state(w.deps, "order-1", OrderState.REFUNDED)
    await handlers.deliver_next(w.deps)
    assert w.events() == [] and w.inventory.calls == [] and w.vault.entries == {}
    assert w.queue.jobs[delivery_id_for("order-1")].outcome == "order_refunded"


async def test_a_delivery_reads_the_buyer_once_and_the_order_only_past_its_deadline() -> None:
    """What the worker needs is read when the job is queued: the buyer's
    phone with the priority; the order's state only once its delivery
    deadline passed (before it, ordering refunds no paid order); the
    delivery once, decided on and saved."""
    w = world()
    w.inventory.stock(**SECRETS)
    await handlers.record_phone(
        w.deps, PhoneVerified(user_id="buyer-1", phone_masked="138****0001")
    )
    reads: list[str] = []
    for name, fake in (
        ("buyers", w.buyers),
        ("orders", w.orders),
        ("deliveries", w.deps.deliveries),
    ):
        original = fake.get

        async def counted(key: str, name: str = name, original=original):  # type: ignore[no-untyped-def]
            reads.append(name)
            return await original(key)

        fake.get = counted  # type: ignore[method-assign,assignment]

    deadline = w.clock() + timedelta(minutes=10)
    for n in (1, 2):
        order = placed(f"order-{n}", "buyer-1", now=w.clock())
        await handlers.record_order_placed(w.deps, order)
        message = paid(order, [f"k-{n}"]).model_copy(update={"delivery_deadline": deadline})
        await handlers.accept_paid_order(w.deps, envelope(message, at=w.clock()))
    assert reads == ["orders", "buyers"] * 2
    reads.clear()

    assert await handlers.deliver_next(w.deps) is True
    [delivered] = w.events()
    assert isinstance(delivered, KeyDelivered)
    assert delivered.channels == [DeliveryChannel.VAULT, DeliveryChannel.SMS]
    assert reads == ["deliveries"]  # once, decided on and saved
    reads.clear()

    # Past its deadline ordering may have refunded the order: it is read, and
    # a refunded one is not delivered.
    await handlers.record_order_state(w.deps, "order-2", OrderState.REFUNDED)
    w.clock.advance(timedelta(minutes=11))
    assert await handlers.deliver_next(w.deps) is True
    assert reads == ["deliveries", "orders"]
    assert w.queue.jobs[delivery_id_for("order-2")].outcome == "order_refunded"
    assert len(w.events()) == 1
