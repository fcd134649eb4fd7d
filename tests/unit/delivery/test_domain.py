"""The pure rules of delivery: the aggregate, key verdicts, masking, manual SLA, retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kami_delivery.domain.delivery import (
    Delivery,
    DeliveryConcluded,
    DeliveryStatus,
    OrderFacts,
    delivery_id_for,
)
from kami_delivery.domain.keys import CardSecret, UnavailableStatus, failure_for, mask_secret
from kami_delivery.domain.manual import ManualTask, TaskStatus
from kami_delivery.domain.queue import RetryPolicy
from kami_delivery.domain.rejections import Conflict, InvalidInput, NotFound
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import (
    ArrivalConfirmed,
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VAULT = [DeliveryChannel.VAULT]


def order(
    mode: DeliveryMode = DeliveryMode.AUTO, key_ids: tuple[str, ...] = ("k1", "k2")
) -> OrderFacts:
    return OrderFacts(
        order_id="order-1",
        buyer_id="buyer-1",
        seller_id="seller-1",
        offer_id="offer-1",
        product_id="product-1",
        quantity=2,
        mode=mode,
        key_ids=key_ids if mode is DeliveryMode.AUTO else (),
        buyer_fields={"game_account": "player#42"},
    )


def test_delivery_id_is_the_same_for_an_order_every_time_and_differs_between_orders() -> None:
    assert delivery_id_for("order-1") == delivery_id_for("order-1") == order().delivery_id
    assert delivery_id_for("order-1") != delivery_id_for("order-2")
    assert len(delivery_id_for("o" * 64)) == 36  # fits the 64-character id bound


def test_delivering_emits_key_delivered_once_and_a_second_outcome_is_refused() -> None:
    delivery = Delivery.for_order(order())
    delivery.deliver(order(), ["k1", "k2"], [DeliveryChannel.VAULT, DeliveryChannel.SMS])

    [event] = delivery.pending_events
    assert isinstance(event, KeyDelivered)
    assert event.key_ids == ["k1", "k2"]
    assert event.channels == [DeliveryChannel.VAULT, DeliveryChannel.SMS]
    assert event.delivery_id == delivery.id and event.mode is DeliveryMode.AUTO
    with pytest.raises(DeliveryConcluded) as again:
        delivery.deliver(order(), ["k1", "k2"], VAULT)
    assert again.value.code == "already_delivered"
    with pytest.raises(DeliveryConcluded):
        delivery.fail(order(), DeliveryFailure.KEY_BLOCKED)


def test_rehydrated_delivery_remembers_its_outcome() -> None:
    delivery = Delivery.for_order(order())
    delivery.fail(order(), DeliveryFailure.KEY_BLOCKED, faulty_key_ids=["k2"], detail="blocked")
    again = Delivery.rehydrate(delivery.id, delivery.pending_events)
    assert again.status is DeliveryStatus.FAILED and again.version == 1
    with pytest.raises(DeliveryConcluded) as refused:
        again.deliver(order(), ["k1", "k2"], VAULT)
    assert refused.value.code == "delivery_failed"


def test_automatic_delivery_delivers_exactly_the_reserved_keys_to_the_vault() -> None:
    delivery = Delivery.for_order(order())
    with pytest.raises(ValueError, match="reserved keys"):
        delivery.deliver(order(), ["k1"], VAULT)
    with pytest.raises(ValueError, match="vault"):
        delivery.deliver(order(), ["k1", "k2"], [DeliveryChannel.SMS])
    with pytest.raises(ValueError, match="not delivered by"):
        Delivery("another").deliver(order(), ["k1", "k2"], VAULT)
    assert delivery.pending_events == ()


def test_failure_names_the_orders_keys_and_only_its_faulty_ones() -> None:
    delivery = Delivery.for_order(order())
    with pytest.raises(ValueError, match="not the order's"):
        delivery.fail(order(), DeliveryFailure.KEY_INVALID, faulty_key_ids=["k9"])
    delivery.fail(order(), DeliveryFailure.KEY_INVALID, faulty_key_ids=["k2"])
    [event] = delivery.pending_events
    assert isinstance(event, DeliveryFailed)
    assert event.key_ids == ["k1", "k2"] and event.faulty_key_ids == ["k2"]


def test_arrival_only_by_the_buyer_only_after_delivery_and_only_once() -> None:
    delivery = Delivery.for_order(order())
    with pytest.raises(NotFound):
        delivery.confirm_arrival("buyer-1")  # nothing delivered yet: nothing to confirm
    delivery.deliver(order(), ["k1", "k2"], VAULT)
    with pytest.raises(NotFound):
        delivery.confirm_arrival("someone-else")
    assert delivery.confirm_arrival("buyer-1") is True
    assert delivery.confirm_arrival("buyer-1") is False
    assert [type(e) for e in delivery.pending_events] == [KeyDelivered, ArrivalConfirmed]


def test_arrival_of_a_failed_delivery_is_a_conflict() -> None:
    delivery = Delivery.for_order(order())
    delivery.fail(order(), DeliveryFailure.KEY_INVALID)
    with pytest.raises(Conflict) as refused:
        delivery.confirm_arrival("buyer-1")
    assert refused.value.code == "delivery_failed"


def test_inventory_verdicts_become_failure_reasons() -> None:
    blocked, detail = failure_for(
        {"k1": UnavailableStatus.EXPIRED, "k2": UnavailableStatus.BLOCKED}
    )
    assert blocked is DeliveryFailure.KEY_BLOCKED
    assert detail == "inventory refused 2 key(s): 1 blocked, 1 expired"
    for status in (UnavailableStatus.VOIDED, UnavailableStatus.EXPIRED, UnavailableStatus.UNKNOWN):
        assert failure_for({"k1": status})[0] is DeliveryFailure.KEY_INVALID
    with pytest.raises(ValueError, match="nothing failed"):
        failure_for({})


def test_a_secret_never_shows_in_its_repr_and_is_masked_in_listings() -> None:
    secret = CardSecret("ABCD-EFGH-IJKL-MNOP")
    assert repr(secret) == str(secret) == f"{secret!r}" == "CardSecret(***)"
    assert "ABCD" not in repr([secret])
    assert secret.masked() == "•" * 15 + "MNOP"
    assert mask_secret("SHORT123") == "•" * 8  # a short key shows nothing
    with pytest.raises(ValueError, match="not empty"):
        CardSecret("   ")


def test_manual_task_deadline_is_orderings_or_else_payment_time_plus_the_sla() -> None:
    task = ManualTask.open(order(DeliveryMode.MANUAL), paid_at=NOW, sla=timedelta(minutes=30))
    assert task.deadline == NOW + timedelta(minutes=30)
    assert not task.is_overdue(NOW + timedelta(minutes=29, seconds=59))
    assert task.is_overdue(NOW + timedelta(minutes=30))
    given = ManualTask.open(
        order(DeliveryMode.MANUAL),
        paid_at=NOW,
        deadline=NOW + timedelta(hours=2),
        sla=timedelta(minutes=30),
    )
    assert given.deadline == NOW + timedelta(hours=2)
    with pytest.raises(ValueError, match="after its payment"):
        ManualTask.open(order(DeliveryMode.MANUAL), paid_at=NOW, deadline=NOW)
    with pytest.raises(ValueError, match="positive SLA"):
        ManualTask.open(order(DeliveryMode.MANUAL), paid_at=NOW)


def test_manual_submission_rules() -> None:
    task = ManualTask.open(order(DeliveryMode.MANUAL), paid_at=NOW, sla=timedelta(minutes=30))
    soon = NOW + timedelta(minutes=5)
    assert task.accept_keys("seller-1", [" KEY-1 ", "KEY-2"], soon) == [
        CardSecret("KEY-1"),
        CardSecret("KEY-2"),
    ]
    with pytest.raises(NotFound):
        task.accept_keys("seller-2", ["KEY-1", "KEY-2"], soon)
    with pytest.raises(InvalidInput) as count:
        task.accept_keys("seller-1", ["KEY-1"], soon)
    assert count.value.code == "wrong_key_count"
    with pytest.raises(InvalidInput) as twice:
        task.accept_keys("seller-1", ["KEY-1", "KEY-1"], soon)
    assert twice.value.code == "duplicate_key"
    with pytest.raises(InvalidInput) as blank:
        task.accept_keys("seller-1", ["KEY-1", "  "], soon)
    assert blank.value.code == "invalid_key"
    with pytest.raises(Conflict) as late:
        task.accept_keys("seller-1", ["KEY-1", "KEY-2"], task.deadline)
    assert late.value.code == "sla_expired"
    closed = ManualTask(task.delivery_id, task.order, NOW, task.deadline, TaskStatus.DELIVERED)
    with pytest.raises(Conflict):
        closed.accept_keys("seller-1", ["KEY-1", "KEY-2"], soon)


def test_retries_back_off_exponentially_up_to_a_cap_then_give_up() -> None:
    policy = RetryPolicy(
        max_attempts=5, base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=5)
    )
    delays = [policy.next_attempt(attempt, NOW) for attempt in range(1, 6)]
    assert [(d - NOW).total_seconds() if d else None for d in delays] == [1, 2, 4, 5, None]
