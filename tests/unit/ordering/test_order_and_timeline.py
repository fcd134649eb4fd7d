"""The order aggregate's own rules, and the timeline's summaries."""

from __future__ import annotations

from datetime import timedelta

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.delivery import DeliveryFailed, DeliveryFailure
from kami_events.catalogue.ordering import OrderPlaced
from kami_events.catalogue.payment import PaymentConfirmed, PaymentFailed, PaymentFailure
from kami_events.money import Money
from kami_ordering.domain.order import (
    Deadline,
    DeadlineKind,
    Order,
    OrderState,
    SagaTimers,
    refund_id_for,
)
from kami_ordering.domain.timeline import summarize
from tests.unit.ordering.script import BUYER, T0, auto_offer, manual_offer

TIMERS = SagaTimers()


def test_placing_a_manual_order_reserves_it_with_no_keys() -> None:
    order = Order.place(
        "o-1",
        buyer_id=BUYER,
        offer=manual_offer(),
        quantity=1,
        buyer_fields={},
        now=T0,
        timers=TIMERS,
    )
    assert order.state is OrderState.RESERVED
    assert order.key_ids == ()
    assert order.next_deadline(TIMERS) == Deadline(DeadlineKind.PAYMENT, T0 + timedelta(minutes=15))


def test_each_state_waits_for_its_own_deadline() -> None:
    order = Order.place(
        "o-1",
        buyer_id=BUYER,
        offer=auto_offer(),
        quantity=1,
        buyer_fields={},
        now=T0,
        timers=TIMERS,
    )
    assert order.next_deadline(TIMERS) == Deadline(DeadlineKind.PAYMENT, T0 + timedelta(minutes=15))
    order.reserve(["k"], T0 + timedelta(minutes=15))
    order.mark_paid("p", order.total, T0 + timedelta(minutes=1), TIMERS)
    # automatic delivery limit (30) + grace (10) after payment
    assert order.next_deadline(TIMERS) == Deadline(
        DeadlineKind.DELIVERY, T0 + timedelta(minutes=41)
    )
    order.mark_delivered("d", ["k"], T0 + timedelta(minutes=2), TIMERS)
    assert order.next_deadline(TIMERS) == Deadline(
        DeadlineKind.GUARANTEE, T0 + timedelta(minutes=17)
    )
    order.confirm_arrival()
    assert order.next_deadline(TIMERS) is None
    assert order.terminal


def test_a_deadline_not_yet_due_is_not_fired() -> None:
    order = Order.place(
        "o-1",
        buyer_id=BUYER,
        offer=auto_offer(),
        quantity=1,
        buyer_fields={},
        now=T0,
        timers=TIMERS,
    )
    decision = order.on_deadline(T0 + timedelta(minutes=14), TIMERS, settled=False)
    assert not decision.changed
    assert order.state is OrderState.PLACED


def test_refund_ids_are_deterministic_per_order_and_cause() -> None:
    assert refund_id_for("o-1", "delivery") == refund_id_for("o-1", "delivery")
    assert refund_id_for("o-1", "delivery") != refund_id_for("o-2", "delivery")
    assert refund_id_for("o-1", "ticket:t1") != refund_id_for("o-1", "ticket:t2")
    assert len(refund_id_for("o-1", "x")) <= 64


def test_an_old_order_placed_event_without_terms_uses_the_default_guarantee() -> None:
    placed = OrderPlaced(
        order_id="o-1",
        buyer_id=BUYER,
        seller_id="s",
        offer_id="of",
        product_id="p",
        quantity=1,
        unit_price=100,
        total=100,
        delivery_mode="auto",
        payment_deadline=T0,
    )
    order = Order.rehydrate("o-1", [placed])
    order.reserve(["k"], T0 + timedelta(minutes=5))
    order.mark_paid("pay", Money.fen(100), T0, TIMERS)
    order.mark_delivered("d", ["k"], T0, TIMERS)
    assert order.guarantee_ends_at == T0 + TIMERS.default_guarantee_window


def test_refunds_are_tracked_by_id_and_only_the_orders_own_payment_ends_it() -> None:
    order = Order.place(
        "o-1",
        buyer_id=BUYER,
        offer=auto_offer(),
        quantity=1,
        buyer_fields={},
        now=T0,
        timers=TIMERS,
    )
    order.reserve(["k"], T0 + timedelta(minutes=15))
    order.mark_paid("p1", order.total, T0, TIMERS)
    order.mark_paid("p2", order.total, T0, TIMERS)  # a second payment
    stray = order.refunds[refund_id_for("o-1", "payment:p2")]
    assert not stray.ends_order and stray.reason is RefundReason.VERIFICATION_FAILED
    assert order.open_refund is None
    order.fail_delivery(["k"], settled=True)
    own = order.open_refund
    assert own is not None and own.source is RefundSource.SELLER_DEPOSIT
    assert order.state is OrderState.REFUNDING


# -- timeline summaries ----------------------------------------------------------------


def test_summaries_show_amounts_reasons_and_counts_but_no_free_text() -> None:
    failed = PaymentFailed(
        payment_id="p",
        order_id="o",
        buyer_id="b",
        reason=PaymentFailure.DECLINED,
        detail="card 6222 0000 1111 declined by issuer",
        captured_amount=0,
    )
    summary = summarize(failed)
    assert "reason=declined" in summary
    assert "captured_amount=0" in summary
    assert "6222" not in summary and "detail" not in summary

    delivery = DeliveryFailed(
        delivery_id="d",
        order_id="o",
        buyer_id="b",
        offer_id="of",
        seller_id="s",
        reason=DeliveryFailure.KEY_INVALID,
        key_ids=["k1", "k2"],
        faulty_key_ids=["k2"],
    )
    assert "key_ids=2" in summarize(delivery) and "faulty_key_ids=1" in summarize(delivery)

    confirmed = PaymentConfirmed(
        payment_id="p",
        order_id="o",
        buyer_id="b",
        amount=1000,
        channel="alipay",
        channel_reference="2026050122001",
    )
    assert "amount=1000" in summarize(confirmed)
    assert "2026050122001" not in summarize(confirmed)


def test_buyer_fields_never_reach_the_timeline() -> None:
    placed = OrderPlaced(
        order_id="o-1",
        buyer_id=BUYER,
        seller_id="s",
        offer_id="of",
        product_id="p",
        quantity=1,
        unit_price=100,
        total=100,
        delivery_mode="manual",
        payment_deadline=T0,
        buyer_fields={"game_account": "987654321"},
    )
    assert "987654321" not in summarize(placed)
    assert "quantity=1" in summarize(placed)
