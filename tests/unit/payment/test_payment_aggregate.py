"""The payment intent's rules: what it records, what it plans, what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.payment import (
    FundsSettled,
    PaymentChannel,
    PaymentConfirmed,
    PaymentFailed,
    PaymentFailure,
    PaymentInitiated,
    ReversalReason,
)
from kami_payment.domain.payment import Payment, PaymentStatus, payment_id_for
from kami_payment.domain.refusals import Refused

DEADLINE = datetime(2026, 3, 2, 4, 15, tzinfo=UTC)


def initiated(channel: PaymentChannel = PaymentChannel.ALIPAY, amount: int = 10_000) -> Payment:
    payment = Payment.initiate(
        order_id="order-1",
        buyer_id="b1",
        seller_id="s1",
        amount=amount,
        channel=channel,
        expires_at=DEADLINE,
    )
    payment.mark_committed()
    return payment


def captured(channel: PaymentChannel = PaymentChannel.ALIPAY) -> Payment:
    payment = initiated(channel)
    payment.record_capture(10_000, "ref-1")
    payment.mark_committed()
    return payment


def test_one_intent_per_order_with_the_orders_amount() -> None:
    assert initiated().id == payment_id_for("order-1") and len(payment_id_for("o")) == 32
    fresh = Payment.initiate(
        order_id="order-1",
        buyer_id="b1",
        seller_id="s1",
        amount=10_000,
        channel=PaymentChannel.WALLET,
        expires_at=DEADLINE,
    )
    [started] = fresh.pending_events
    assert isinstance(started, PaymentInitiated) and started.amount == 10_000


def test_the_exact_amount_confirms_and_a_second_capture_changes_nothing() -> None:
    payment = initiated()
    assert payment.record_capture(10_000, "ref-1")
    assert not payment.record_capture(10_000, "ref-1")
    [confirmed] = payment.pending_events
    assert isinstance(confirmed, PaymentConfirmed) and confirmed.channel_reference == "ref-1"
    assert payment.status is PaymentStatus.CONFIRMED and payment.in_escrow == 10_000


def test_a_different_captured_amount_fails_layer_one_but_keeps_the_money_refundable() -> None:
    payment = initiated()
    payment.record_capture(9_000, "ref-1")
    [failed] = payment.pending_events
    assert isinstance(failed, PaymentFailed)
    assert (failed.reason, failed.captured_amount) == (PaymentFailure.AMOUNT_MISMATCH, 9_000)
    assert payment.refundable == 9_000
    assert payment.plan_settlement(500) is None  # never settled to the seller
    plan = payment.plan_refund("r1", 9_000, RefundReason.VERIFICATION_FAILED)
    assert plan.source is RefundSource.ESCROW


def test_money_arriving_after_the_intent_failed_still_confirms_it() -> None:
    payment = initiated()
    assert payment.fail(PaymentFailure.EXPIRED)
    assert payment.record_capture(10_000, "late-ref")
    assert payment.status is PaymentStatus.CONFIRMED
    assert [e.event_type for e in payment.pending_events] == ["PaymentFailed", "PaymentConfirmed"]


def test_a_failure_never_overrides_captured_money() -> None:
    payment = captured()
    assert not payment.fail(PaymentFailure.ORDER_NOT_PAYABLE)
    assert payment.pending_events == ()


def test_settlement_takes_what_escrow_still_holds_less_the_fee() -> None:
    payment = captured()
    refund = payment.plan_refund("r1", 2_000, RefundReason.CLAIM_UPHELD)
    payment.record_refund(refund)
    plan = payment.plan_settlement(fee_bps=500)
    assert plan is not None and (plan.gross, plan.fee, plan.net) == (8_000, 400, 7_600)
    payment.record_settlement(plan)
    settled = payment.pending_events[-1]
    assert isinstance(settled, FundsSettled) and settled.net == 7_600
    assert payment.in_escrow == 0 and payment.plan_settlement(500) is None


def test_refunds_come_from_escrow_until_settled_then_from_the_deposit() -> None:
    payment = captured()
    before = payment.plan_refund("r1", 10_000, RefundReason.DELIVERY_FAILED)
    assert (before.source, before.destination) == (RefundSource.ESCROW, "original_channel")
    plan = payment.plan_settlement(500)
    assert plan is not None
    payment.record_settlement(plan)
    after = payment.plan_refund("r1", 10_000, RefundReason.CLAIM_UPHELD)
    assert after.source is RefundSource.SELLER_DEPOSIT


def test_a_wallet_payment_is_refunded_to_the_wallet() -> None:
    payment = captured(PaymentChannel.WALLET)
    assert payment.plan_refund("r1", 100, RefundReason.CLAIM_UPHELD).destination == "wallet"


def test_never_more_than_was_captured_is_refunded() -> None:
    payment = captured()
    plan = payment.plan_refund("r1", 6_000, RefundReason.CLAIM_UPHELD)
    assert payment.record_refund(plan)
    assert not payment.record_refund(plan)  # a refund id is recorded once
    with pytest.raises(Refused) as refused:
        payment.plan_refund("r2", 4_001, RefundReason.CLAIM_UPHELD)
    assert refused.value.code == "refund_exceeds_captured"
    assert payment.plan_refund("r2", 4_000, RefundReason.CLAIM_UPHELD).amount == 4_000


def test_an_unpaid_intent_has_nothing_to_refund() -> None:
    with pytest.raises(Refused):
        initiated().plan_refund("r1", 1, RefundReason.LATE_PAYMENT)


def test_a_chargeback_before_settlement_is_paid_by_escrow_and_recovers_nothing() -> None:
    payment = captured()
    plan = payment.plan_reversal(10_000)
    assert plan is not None and not plan.settled
    payment.record_reversal(plan, ReversalReason.CHARGEBACK, "ref-1")
    assert payment.in_escrow == 0 and payment.refundable == 0
    assert payment.plan_reversal(10_000) is None  # one reversal per payment
    recovery = payment.plan_refund("r-cb", 10_000, RefundReason.CHARGEBACK)
    assert (recovery.source, recovery.destination, recovery.moves_money) == (
        RefundSource.ESCROW,
        "none",
        False,
    )


def test_a_chargeback_after_settlement_is_recovered_from_the_deposit() -> None:
    payment = captured()
    plan = payment.plan_settlement(500)
    assert plan is not None
    payment.record_settlement(plan)
    reversal = payment.plan_reversal(10_000)
    assert reversal is not None and reversal.settled
    payment.record_reversal(reversal, ReversalReason.CHARGEBACK, "ref-1")
    recovery = payment.plan_refund("r-cb", 10_000, RefundReason.CHARGEBACK)
    assert (recovery.source, recovery.moves_money) == (RefundSource.SELLER_DEPOSIT, True)
    with pytest.raises(Refused):
        payment.plan_refund("r-cb2", 10_001, RefundReason.CHARGEBACK)


def test_a_wallet_payment_cannot_be_reversed_by_a_channel() -> None:
    with pytest.raises(Refused):
        captured(PaymentChannel.WALLET).plan_reversal(100)


def test_the_same_apply_rebuilds_the_payment_from_its_events() -> None:
    payment = initiated()
    payment.record_capture(10_000, "ref")
    payment.record_refund(payment.plan_refund("r1", 3_000, RefundReason.CLAIM_UPHELD))
    events = [
        PaymentInitiated(
            payment_id=payment.id,
            order_id="order-1",
            buyer_id="b1",
            seller_id="s1",
            amount=10_000,
            channel=PaymentChannel.ALIPAY,
            expires_at=DEADLINE,
        ),
        *payment.pending_events,
    ]
    rebuilt = Payment.rehydrate(payment.id, events)
    assert (rebuilt.captured, rebuilt.refunded, rebuilt.in_escrow) == (10_000, 3_000, 7_000)
    assert rebuilt.version == 3
