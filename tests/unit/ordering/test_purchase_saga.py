"""The purchase saga, one script per path of docs/saga.md.

Each test reads: given this reply from another service, ordering answers with
these events; given a failure at this point, these compensations, and the
order's rolled-back end state. `OrderPaid` is the point of no return: before
it a failure cancels (keys released, no money moved); after it, it refunds.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_events.catalogue.common import DeliveryMode, RefundReason, RefundSource
from kami_events.catalogue.inventory import ReservationFailure
from kami_events.catalogue.ordering import (
    CancelReason,
    CompletedBy,
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderRefundRequested,
    OrderReserved,
)
from kami_events.catalogue.payment import PaymentFailure
from kami_ordering.domain.order import Deadline, DeadlineKind, OrderState, Outcome, refund_id_for
from kami_ordering.handlers import TransitionRefused
from tests.unit.ordering.script import MANUAL_OFFER, PAYMENT, PRICE, T0, SagaScript, emits

MINUTE = timedelta(minutes=1)


async def placed_and_reserved(quantity: int = 2) -> SagaScript:
    saga = SagaScript()
    await saga.buyer_places_order(quantity=quantity)
    await saga.inventory_reserves()
    saga.expect(OrderPlaced, OrderReserved)
    return saga


async def paid() -> SagaScript:
    saga = await placed_and_reserved()
    await saga.payment_confirms()
    saga.expect(OrderPaid)
    return saga


async def delivered() -> SagaScript:
    saga = await paid()
    await saga.delivery_delivers()
    saga.expect(OrderDelivered)
    return saga


# -- happy paths -----------------------------------------------------------------------


async def test_happy_path_auto_delivery_completes_when_the_guarantee_window_elapses() -> None:
    saga = SagaScript()
    placed = await saga.buyer_places_order(quantity=2)
    assert placed.created
    saga.expect(
        emits(
            OrderPlaced,
            quantity=2,
            unit_price=PRICE,
            total=2 * PRICE,
            delivery_mode=DeliveryMode.AUTO,
            payment_deadline=T0 + 15 * MINUTE,
            guarantee_window_minutes=15,
        )
    )
    assert saga.deadline() == Deadline(DeadlineKind.PAYMENT, T0 + 15 * MINUTE)

    assert (await saga.inventory_reserves(["k1", "k2"])).outcome is Outcome.APPLIED
    saga.expect(emits(OrderReserved, key_ids=["k1", "k2"], total=2 * PRICE))
    assert await saga.state() is OrderState.RESERVED

    saga.clock.advance(3 * MINUTE)
    assert (await saga.payment_confirms()).outcome is Outcome.APPLIED
    saga.expect(
        emits(
            OrderPaid,
            payment_id=PAYMENT,
            amount=2 * PRICE,
            key_ids=["k1", "k2"],
            delivery_deadline=T0 + 33 * MINUTE,  # paid at +3, automatic delivery limit 30
        )
    )
    assert saga.deadline() == Deadline(DeadlineKind.DELIVERY, T0 + 43 * MINUTE)  # + grace 10

    saga.clock.advance(MINUTE)
    await saga.delivery_delivers(["k1", "k2"])
    saga.expect(emits(OrderDelivered, key_ids=["k1", "k2"], guarantee_ends_at=T0 + 19 * MINUTE))

    assert await saga.time_passes(14 * MINUTE) == 0  # one minute short of the window
    saga.expect_nothing()
    assert await saga.time_passes(MINUTE) == 1
    saga.expect(emits(OrderCompleted, completed_by=CompletedBy.GUARANTEE_ELAPSED, total=2 * PRICE))
    assert await saga.state() is OrderState.COMPLETED
    assert saga.deadline() is None


async def test_arrival_confirmation_completes_at_once_and_the_window_then_does_nothing() -> None:
    saga = await delivered()
    assert (await saga.buyer_confirms_arrival()).outcome is Outcome.APPLIED
    saga.expect(emits(OrderCompleted, completed_by=CompletedBy.BUYER_CONFIRMED))
    assert await saga.time_passes(60 * MINUTE) == 0
    saga.expect_nothing()
    assert (await saga.buyer_confirms_arrival()).outcome is Outcome.DUPLICATE
    saga.expect_nothing()


async def test_manual_offer_is_reserved_at_once_without_keys_and_delivered_by_the_seller() -> None:
    saga = SagaScript()
    await saga.buyer_places_order(
        offer_id=MANUAL_OFFER,
        quantity=1,
        buyer_fields={"game_account": "123456789", "server": "north"},
    )
    saga.expect(
        emits(
            OrderPlaced,
            delivery_mode=DeliveryMode.MANUAL,
            buyer_fields={"game_account": "123456789", "server": "north"},
            manual_delivery_sla_minutes=60,
            guarantee_window_minutes=30,
        ),
        emits(OrderReserved, key_ids=[], reservation_expires_at=T0 + 15 * MINUTE),
    )
    await saga.payment_confirms()
    saga.expect(emits(OrderPaid, key_ids=[], delivery_deadline=T0 + 60 * MINUTE))
    await saga.time_passes(30 * MINUTE)  # the seller is within its SLA
    await saga.delivery_delivers(keys=[])
    saga.expect(emits(OrderDelivered, key_ids=[], guarantee_ends_at=T0 + 60 * MINUTE))
    await saga.time_passes(30 * MINUTE)
    saga.expect(emits(OrderCompleted, completed_by=CompletedBy.GUARANTEE_ELAPSED))


# -- failure point 1: the reservation ---------------------------------------------------


async def test_out_of_stock_cancels_with_nothing_to_release() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    saga.expect(OrderPlaced)
    await saga.inventory_cannot_reserve(ReservationFailure.OUT_OF_STOCK)
    saga.expect(emits(OrderCancelled, reason=CancelReason.OUT_OF_STOCK, release_key_ids=[]))
    assert await saga.state() is OrderState.CANCELLED
    assert saga.deadline() is None


async def test_a_delisted_or_unknown_offer_cancels_as_offer_delisted() -> None:
    for failure in (ReservationFailure.OFFER_DELISTED, ReservationFailure.UNKNOWN_OFFER):
        saga = SagaScript()
        await saga.buyer_places_order()
        await saga.inventory_cannot_reserve(failure)
        saga.expect(
            OrderPlaced,
            emits(OrderCancelled, reason=CancelReason.OFFER_DELISTED, release_key_ids=[]),
        )


async def test_inventory_silent_past_the_payment_deadline_then_a_late_reservation_is_released() -> (
    None
):
    saga = SagaScript()
    await saga.buyer_places_order()
    saga.expect(OrderPlaced)
    assert await saga.time_passes(15 * MINUTE) == 1
    saga.expect(emits(OrderCancelled, reason=CancelReason.PAYMENT_TIMEOUT, release_key_ids=[]))

    # The reservation arrives after all: ordering releases exactly those keys.
    decision = await saga.inventory_reserves(["k7", "k8"])
    assert decision.outcome is Outcome.COMPENSATED
    saga.expect(
        emits(
            OrderCancelled,
            reason=CancelReason.PAYMENT_TIMEOUT,
            release_key_ids=["k7", "k8"],
        )
    )
    assert await saga.state() is OrderState.CANCELLED
    # The same reservation again (a redelivery under a new id): nothing more to release.
    assert (await saga.inventory_reserves(["k7", "k8"])).outcome is Outcome.DUPLICATE
    saga.expect_nothing()


async def test_a_reservation_of_the_wrong_number_of_keys_is_released_and_cancelled() -> None:
    saga = SagaScript()
    await saga.buyer_places_order(quantity=2)
    await saga.inventory_reserves(["k1"])
    saga.expect(
        OrderPlaced,
        emits(OrderCancelled, reason=CancelReason.OUT_OF_STOCK, release_key_ids=["k1"]),
    )


# -- failure point 2: the payment --------------------------------------------------------


async def test_payment_failure_releases_the_reserved_keys_and_cancels() -> None:
    saga = await placed_and_reserved()
    await saga.payment_fails(PaymentFailure.INSUFFICIENT_FUNDS)
    saga.expect(
        emits(
            OrderCancelled,
            reason=CancelReason.PAYMENT_FAILED,
            release_key_ids=["key-1", "key-2"],
            payment_id=PAYMENT,
        )
    )
    assert await saga.state() is OrderState.CANCELLED


async def test_payment_timeout_releases_the_reserved_keys_and_cancels() -> None:
    saga = await placed_and_reserved()
    assert await saga.time_passes(15 * MINUTE - timedelta(seconds=1)) == 0
    saga.expect_nothing()
    assert await saga.time_passes(timedelta(seconds=1)) == 1
    saga.expect(
        emits(
            OrderCancelled,
            reason=CancelReason.PAYMENT_TIMEOUT,
            release_key_ids=["key-1", "key-2"],
        )
    )
    assert await saga.state() is OrderState.CANCELLED
    assert saga.deadline() is None
    # Nothing is left to fire.
    assert await saga.time_passes(60 * MINUTE) == 0


async def test_inventory_expiring_the_reservation_cancels_the_unpaid_order() -> None:
    saga = await placed_and_reserved()
    await saga.inventory_lets_the_reservation_expire()
    saga.expect(emits(OrderCancelled, reason=CancelReason.PAYMENT_TIMEOUT, release_key_ids=[]))


async def test_buyer_cancels_before_paying_and_the_keys_go_back() -> None:
    saga = await placed_and_reserved()
    await saga.buyer_cancels()
    saga.expect(
        emits(
            OrderCancelled,
            reason=CancelReason.BUYER_CANCELLED,
            release_key_ids=["key-1", "key-2"],
        )
    )


# -- failure point 3: money arrives when it must not be kept ------------------------------


async def test_payment_after_the_order_was_cancelled_is_refunded_from_escrow() -> None:
    saga = await placed_and_reserved()
    await saga.time_passes(15 * MINUTE)
    saga.expect(OrderCancelled)

    decision = await saga.payment_confirms()
    assert decision.outcome is Outcome.COMPENSATED
    saga.expect(
        emits(
            OrderRefundRequested,
            payment_id=PAYMENT,
            amount=2 * PRICE,
            source=RefundSource.ESCROW,
            reason=RefundReason.LATE_PAYMENT,
            void_key_ids=[],
            refund_id=refund_id_for(saga.order_id, f"payment:{PAYMENT}"),
        )
    )
    assert await saga.state() is OrderState.REFUNDING
    # The same confirmation again moves no more money.
    assert (await saga.payment_confirms()).outcome is Outcome.DUPLICATE
    saga.expect_nothing()

    await saga.payment_refunds()
    saga.expect(emits(OrderRefunded, amount=2 * PRICE, reason=RefundReason.LATE_PAYMENT))
    assert await saga.state() is OrderState.REFUNDED
    assert (await saga.payment_refunds()).outcome is Outcome.DUPLICATE


async def test_payment_after_the_reservation_expired_fails_layer_three_and_is_refunded() -> None:
    saga = SagaScript()
    await saga.buyer_places_order()
    await saga.inventory_reserves(holds_for=10 * MINUTE)
    saga.expect(OrderPlaced, OrderReserved)
    saga.clock.advance(10 * MINUTE)  # reservation gone; the payment deadline not yet

    assert (await saga.payment_confirms()).outcome is Outcome.COMPENSATED
    saga.expect(
        emits(
            OrderCancelled,
            reason=CancelReason.PAYMENT_TIMEOUT,
            release_key_ids=["key-1", "key-2"],
        ),
        emits(
            OrderRefundRequested,
            source=RefundSource.ESCROW,
            reason=RefundReason.VERIFICATION_FAILED,
            amount=2 * PRICE,
        ),
    )
    await saga.payment_refunds()
    saga.expect(OrderRefunded)
    assert await saga.state() is OrderState.REFUNDED


async def test_captured_money_of_a_failed_payment_is_refunded_and_the_order_cancelled() -> None:
    saga = await placed_and_reserved()
    await saga.payment_fails(PaymentFailure.RESERVATION_LOST, captured=2 * PRICE)
    saga.expect(
        emits(OrderCancelled, reason=CancelReason.PAYMENT_FAILED),
        emits(
            OrderRefundRequested,
            amount=2 * PRICE,
            source=RefundSource.ESCROW,
            reason=RefundReason.VERIFICATION_FAILED,
        ),
    )
    await saga.payment_refunds()
    saga.expect(OrderRefunded)
    assert await saga.state() is OrderState.REFUNDED


async def test_a_payment_of_the_wrong_amount_is_refunded_and_the_order_still_awaits_payment() -> (
    None
):
    saga = await placed_and_reserved()
    await saga.payment_confirms(payment_id="payment-short", amount=PRICE)
    saga.expect(
        emits(
            OrderRefundRequested,
            payment_id="payment-short",
            amount=PRICE,
            reason=RefundReason.VERIFICATION_FAILED,
        )
    )
    assert await saga.state() is OrderState.RESERVED
    await saga.payment_confirms()
    saga.expect(OrderPaid)


async def test_a_duplicate_confirmation_is_ignored_and_a_second_payment_is_given_back() -> None:
    saga = await paid()
    assert (await saga.payment_confirms()).outcome is Outcome.DUPLICATE
    saga.expect_nothing()

    assert (await saga.payment_confirms(payment_id="payment-2")).outcome is Outcome.COMPENSATED
    request = saga.expect(
        emits(
            OrderRefundRequested,
            payment_id="payment-2",
            source=RefundSource.ESCROW,
            reason=RefundReason.VERIFICATION_FAILED,
        )
    )[0]
    assert isinstance(request, OrderRefundRequested)
    await saga.payment_refunds(request)
    saga.expect(emits(OrderRefunded, payment_id="payment-2"))
    # The stray payment's refund does not end the order: it is still paid, and delivers.
    assert await saga.state() is OrderState.PAID
    await saga.delivery_delivers()
    saga.expect(OrderDelivered)


# -- failure point 4: the delivery (after the point of no return) ---------------------------


async def test_delivery_failure_refunds_from_escrow_and_voids_the_keys() -> None:
    saga = await paid()
    assert (await saga.delivery_fails()).outcome is Outcome.COMPENSATED
    saga.expect(
        emits(
            OrderRefundRequested,
            amount=2 * PRICE,
            source=RefundSource.ESCROW,
            reason=RefundReason.DELIVERY_FAILED,
            void_key_ids=["key-1", "key-2"],
        )
    )
    assert await saga.state() is OrderState.REFUNDING
    assert saga.deadline() is None  # a refunding order waits for payment, not for a deadline
    assert (await saga.delivery_fails()).outcome is Outcome.DUPLICATE
    await saga.payment_refunds()
    saga.expect(emits(OrderRefunded, reason=RefundReason.DELIVERY_FAILED))
    assert await saga.state() is OrderState.REFUNDED


async def test_manual_delivery_never_done_within_sla_and_grace_is_refunded_by_ordering() -> None:
    saga = SagaScript()
    await saga.buyer_places_order(
        offer_id=MANUAL_OFFER, quantity=1, buyer_fields={"game_account": "55555", "server": "south"}
    )
    await saga.payment_confirms()
    saga.expect(OrderPlaced, OrderReserved, OrderPaid)

    # SLA 60 min: delivery's to fail; ordering waits 10 more minutes of grace.
    assert await saga.time_passes(60 * MINUTE) == 0
    assert await saga.time_passes(10 * MINUTE) == 1
    saga.expect(
        emits(
            OrderRefundRequested,
            source=RefundSource.ESCROW,
            reason=RefundReason.DELIVERY_FAILED,
            void_key_ids=[],
            refund_id=refund_id_for(saga.order_id, "delivery"),
        )
    )
    # Delivery's own DeliveryFailed, arriving late, asks for the same refund: nothing new.
    assert (await saga.delivery_fails()).outcome is Outcome.DUPLICATE
    saga.expect_nothing()
    await saga.payment_refunds()
    saga.expect(OrderRefunded)
    assert await saga.state() is OrderState.REFUNDED


async def test_keys_delivered_after_ordering_refunded_are_voided_under_the_same_refund() -> None:
    saga = await paid()
    await saga.time_passes(40 * MINUTE)  # automatic limit 30 + grace 10
    refund = saga.expect(
        emits(
            OrderRefundRequested,
            reason=RefundReason.DELIVERY_FAILED,
            void_key_ids=["key-1", "key-2"],
        )
    )[0]
    assert isinstance(refund, OrderRefundRequested)
    # The keys were voided with the refund, so their late delivery changes nothing.
    assert (await saga.delivery_delivers()).outcome is Outcome.IGNORED
    # Keys ordering never knew of (a manual seller's) are voided under the same refund id.
    assert (await saga.delivery_delivers(["manual-7"], "delivery-9")).outcome is Outcome.COMPENSATED
    saga.expect(emits(OrderRefundRequested, refund_id=refund.refund_id, void_key_ids=["manual-7"]))
    assert await saga.state() is OrderState.REFUNDING


# -- failure point 5: after delivery ----------------------------------------------------------


async def test_upheld_claim_before_settlement_is_refunded_from_escrow() -> None:
    saga = await delivered()
    await saga.aftersales_approves_compensation(2 * PRICE, ["key-1", "key-2"])
    saga.expect(
        emits(
            OrderRefundRequested,
            amount=2 * PRICE,
            source=RefundSource.ESCROW,
            reason=RefundReason.CLAIM_UPHELD,
            ticket_id="ticket-1",
            void_key_ids=["key-1", "key-2"],
        )
    )
    # A refunding order is not completed by its guarantee window.
    assert await saga.time_passes(60 * MINUTE) == 0
    await saga.payment_refunds()
    saga.expect(emits(OrderRefunded, amount=2 * PRICE, reason=RefundReason.CLAIM_UPHELD))
    assert await saga.state() is OrderState.REFUNDED


async def test_a_partial_compensation_refunds_part_and_the_order_goes_on() -> None:
    saga = await delivered()
    await saga.aftersales_approves_compensation(PRICE, ["key-2"])
    saga.expect(emits(OrderRefundRequested, amount=PRICE, void_key_ids=["key-2"]))
    await saga.payment_refunds()
    saga.expect(emits(OrderRefunded, amount=PRICE))
    assert await saga.state() is OrderState.DELIVERED  # the buyer keeps key-1
    # No more than what is left goes back, and the window still completes the order.
    assert (
        await saga.aftersales_approves_compensation(2 * PRICE, [], ticket_id="ticket-2")
    ).outcome is Outcome.REJECTED
    assert await saga.time_passes(60 * MINUTE) == 1
    saga.expect(emits(OrderCompleted, completed_by=CompletedBy.GUARANTEE_ELAPSED))
    # What is left may still be compensated later, which ends the order.
    await saga.aftersales_approves_compensation(PRICE, [], ticket_id="ticket-3")
    saga.expect(emits(OrderRefundRequested, amount=PRICE))
    await saga.payment_refunds()
    assert await saga.state() is OrderState.REFUNDED


async def test_upheld_claim_after_settlement_is_drawn_from_the_seller_deposit() -> None:
    saga = await delivered()
    await saga.payment_settles()
    await saga.aftersales_approves_compensation(2 * PRICE, ["key-1", "key-2"])
    saga.expect(
        emits(
            OrderRefundRequested,
            source=RefundSource.SELLER_DEPOSIT,
            reason=RefundReason.CLAIM_UPHELD,
        )
    )
    assert (
        await saga.aftersales_approves_compensation(2 * PRICE, ["key-1", "key-2"])
    ).outcome is Outcome.DUPLICATE


async def test_an_open_claim_holds_the_guarantee_until_it_is_resolved() -> None:
    saga = await delivered()
    await saga.aftersales_opens_claim()
    assert await saga.time_passes(20 * MINUTE) == 0
    saga.expect_nothing()
    await saga.aftersales_resolves_claim()  # rejected: no compensation
    assert await saga.time_passes(timedelta(seconds=1)) == 1
    saga.expect(emits(OrderCompleted, completed_by=CompletedBy.GUARANTEE_ELAPSED))


async def test_chargeback_after_completion_voids_the_keys_and_recovers_from_the_deposit() -> None:
    saga = await delivered()
    await saga.payment_settles()
    await saga.buyer_confirms_arrival()
    saga.expect(OrderCompleted)

    assert (await saga.payment_reverses(settled=True)).outcome is Outcome.COMPENSATED
    saga.expect(
        emits(
            OrderRefundRequested,
            amount=2 * PRICE,
            source=RefundSource.SELLER_DEPOSIT,
            reason=RefundReason.CHARGEBACK,
            void_key_ids=["key-1", "key-2"],
        )
    )
    assert (await saga.payment_reverses(settled=True)).outcome is Outcome.DUPLICATE
    await saga.payment_refunds()
    saga.expect(emits(OrderRefunded, reason=RefundReason.CHARGEBACK))
    assert await saga.state() is OrderState.REFUNDED


async def test_chargeback_before_settlement_is_recovered_from_escrow() -> None:
    saga = await delivered()
    await saga.payment_reverses(settled=False)
    saga.expect(
        emits(OrderRefundRequested, source=RefundSource.ESCROW, reason=RefundReason.CHARGEBACK)
    )


# -- illegal transitions ----------------------------------------------------------------------


async def test_illegal_transitions_are_rejected_with_a_reason_and_change_nothing() -> None:
    saga = await placed_and_reserved()
    decision = await saga.delivery_delivers()
    assert decision.outcome is Outcome.REJECTED
    assert "RESERVED" in decision.reason
    assert (await saga.aftersales_approves_compensation(100, [])).outcome is Outcome.REJECTED
    saga.expect_nothing()
    assert await saga.state() is OrderState.RESERVED

    saga = await delivered()
    too_much = await saga.aftersales_approves_compensation(3 * PRICE, [])
    assert too_much.outcome is Outcome.REJECTED
    saga.expect_nothing()
    refused = await saga.payment_fails(PaymentFailure.DECLINED)
    assert refused.outcome is Outcome.REJECTED
    assert await saga.state() is OrderState.DELIVERED


async def test_a_paid_order_cannot_be_cancelled_by_the_buyer() -> None:
    saga = await paid()
    with pytest.raises(TransitionRefused) as refused:
        await saga.buyer_cancels()
    assert refused.value.decision.outcome is Outcome.REJECTED
    saga.expect_nothing()
    assert await saga.state() is OrderState.PAID


# -- restart ----------------------------------------------------------------------------------


async def test_deadlines_survive_a_restart_because_nothing_is_kept_in_memory() -> None:
    saga = await placed_and_reserved()
    saga.restart()  # new handlers; only the stores remain
    assert await saga.time_passes(15 * MINUTE) == 1
    saga.expect(emits(OrderCancelled, reason=CancelReason.PAYMENT_TIMEOUT))


async def test_replaying_the_stream_rebuilds_the_same_saga() -> None:
    saga = await delivered()
    await saga.payment_settles()
    await saga.aftersales_approves_compensation(PRICE, ["key-1"])
    live = await saga.order()
    replayed = type(live).rehydrate(live.id, [e.payload for e in saga.store.committed])
    assert vars(replayed) == vars(live)
