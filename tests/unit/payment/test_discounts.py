"""Who funds a coupon's discount, in the journal: a seller's own discount is
simply less money for the seller; a platform-funded one is paid to the seller
at settlement out of `platform_promotions`, and taken back from the seller by
a refund after settlement. Every script ends with the books balanced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.catalogue.payment import (
    FundsSettled,
    PaymentChannel,
    PaymentInitiated,
    PaymentRefunded,
    PaymentReversed,
)
from kami_payment.domain import movements
from kami_payment.domain.ledger import (
    buyer_wallet,
    escrow,
    platform_fees,
    platform_promotions,
    seller_balance,
    seller_deposit,
    seller_receivable,
)
from kami_payment.domain.payment import Payment
from kami_payment.handlers import PaymentPolicy
from tests.unit.payment.world import World

PLATFORM = DiscountFunder.PLATFORM
SELLER = DiscountFunder.SELLER
FEE_BPS = 500  # the world's policy: 5 %


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    yield world
    await world.assert_books_balance()


def confirmed(discount: int, funded_by: DiscountFunder | None, paid: int = 8_000) -> Payment:
    payment = Payment.initiate(
        order_id="order-1",
        buyer_id="b1",
        seller_id="s1",
        amount=paid,
        channel=PaymentChannel.WALLET,
        expires_at=datetime(2026, 3, 2, 4, 15, tzinfo=UTC),
        discount=discount,
        discount_funded_by=funded_by,
    )
    payment.record_capture(paid, "ref-1")
    payment.mark_committed()
    return payment


# -- the movements, pure --------------------------------------------------------------


def test_a_platform_funded_settlement_pays_the_seller_the_price_less_the_fee() -> None:
    payment = confirmed(2_000, PLATFORM)
    plan = payment.plan_settlement(FEE_BPS)
    assert plan is not None

    movement = movements.settlement("settle:p:1", payment, plan)

    # The fee is on the price before the discount (10_000), not on what was paid.
    assert (plan.gross, plan.promotion, plan.fee, plan.net) == (8_000, 2_000, 500, 9_500)
    assert {p.account: p.amount for p in movement.postings} == {
        escrow(payment.id): 8_000,
        platform_promotions(): 2_000,
        seller_balance("s1"): -9_500,
        platform_fees(): -500,
    }
    assert sum(p.amount for p in movement.postings) == 0
    # Escrow is still the one guarded debit, applied first.
    assert movement.in_application_order()[0].account == escrow(payment.id)


def test_a_seller_funded_discount_settles_what_was_paid_as_before() -> None:
    payment = confirmed(2_000, SELLER)
    plan = payment.plan_settlement(FEE_BPS)
    assert plan is not None

    movement = movements.settlement("settle:p:1", payment, plan)

    assert (plan.gross, plan.promotion, plan.fee, plan.net) == (8_000, 0, 400, 7_600)
    assert not movement.touches(platform_promotions().type)
    # The payment still knows the discount and who gave it.
    assert (payment.discount, payment.discount_funded_by) == (2_000, SELLER)
    assert payment.platform_discount == 0


def test_a_refund_before_settlement_books_no_promotion() -> None:
    payment = confirmed(2_000, PLATFORM)

    plan = payment.plan_refund("refund-1", 8_000, RefundReason.DELIVERY_FAILED)
    movement = movements.refund("refund:refund-1:1", payment, plan, deposit_available=0)

    assert (plan.source, plan.promotion) == (RefundSource.ESCROW, 0)
    assert {p.account: p.amount for p in movement.postings} == {
        escrow(payment.id): 8_000,
        buyer_wallet("b1"): -8_000,
    }


def test_refunds_after_settlement_take_back_exactly_the_promotion_in_shares() -> None:
    payment = confirmed(2_001, PLATFORM, paid=8_000)
    plan = payment.plan_settlement(FEE_BPS)
    assert plan is not None
    payment.record_settlement(plan)

    first = payment.plan_refund("refund-1", 3_000, RefundReason.CLAIM_UPHELD)
    payment.record_refund(first)
    second = payment.plan_refund("refund-2", 5_000, RefundReason.CLAIM_UPHELD)

    # Rounded per share, yet all of it back once all of it is refunded.
    assert (first.promotion, second.promotion) == (750, 1_251)
    movement = movements.refund("refund:refund-2:1", payment, second, deposit_available=1_000)
    assert {p.account: p.amount for p in movement.postings} == {
        seller_deposit("s1"): 1_000,
        seller_receivable("s1"): 5_251,
        buyer_wallet("b1"): -5_000,
        platform_promotions(): -1_251,
    }


def test_the_discount_and_its_funder_are_recorded_when_the_payment_starts() -> None:
    payment = Payment.initiate(
        order_id="order-1",
        buyer_id="b1",
        seller_id="s1",
        amount=8_000,
        channel=PaymentChannel.WALLET,
        expires_at=datetime(2026, 3, 2, 4, 15, tzinfo=UTC),
        discount=2_000,
        discount_funded_by=PLATFORM,
    )
    [started] = payment.pending_events
    assert isinstance(started, PaymentInitiated)
    assert (started.discount, started.discount_funded_by) == (2_000, PLATFORM)


# -- the flows, through the service ----------------------------------------------------


async def test_platform_funded_settlement_through_the_service(world: World) -> None:
    await world.funded_wallet("buyer-1", 8_000)
    order = await world.reserved(world.purchase(8_000, discount=2_000, funded_by=PLATFORM))
    await world.pay_by_wallet(order)

    await world.order_event(order.delivered())
    await world.order_event(order.delivered())  # redelivered: settles once

    settled = world.last(FundsSettled, order.payment_id)
    assert (settled.gross, settled.promotion, settled.platform_fee, settled.net) == (
        8_000,
        2_000,
        500,
        9_500,
    )
    assert world.event_types(order.payment_id).count("FundsSettled") == 1
    assert world.balance(escrow(order.payment_id)) == 0
    assert world.balance(seller_balance("seller-1")) == 9_500
    assert world.balance(platform_fees()) == 500
    assert world.balance(platform_promotions()) == 2_000
    payment = await world.payment(order)
    assert (payment.discount, payment.discount_funded_by) == (2_000, PLATFORM)


async def test_seller_funded_discount_through_the_service_is_settled_as_before(
    world: World,
) -> None:
    await world.funded_wallet("buyer-1", 8_000)
    order = await world.reserved(world.purchase(8_000, discount=2_000, funded_by=SELLER))
    await world.pay_by_wallet(order)

    await world.order_event(order.delivered())

    settled = world.last(FundsSettled, order.payment_id)
    assert (settled.gross, settled.promotion, settled.platform_fee, settled.net) == (
        8_000,
        0,
        400,
        7_600,
    )
    assert world.balance(seller_balance("seller-1")) == 7_600
    assert world.balance(platform_promotions()) == 0
    payment = await world.payment(order)
    assert (payment.discount, payment.discount_funded_by) == (2_000, SELLER)


async def test_a_refund_after_settlement_reverses_the_promotion(world: World) -> None:
    await world.funded_deposit("seller-1", 50_000)
    await world.funded_wallet("buyer-1", 8_000)
    order = await world.reserved(world.purchase(8_000, discount=2_000, funded_by=PLATFORM))
    await world.pay_by_wallet(order)
    await world.order_event(order.delivered())

    await world.order_event(
        order.refund_requested(
            "claim-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )
    await world.order_event(
        order.refund_requested(
            "claim-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )  # the same request again

    refunded = world.last(PaymentRefunded, order.payment_id)
    assert (refunded.amount, refunded.source) == (8_000, RefundSource.SELLER_DEPOSIT)
    # The buyer has back what they paid; the seller gave back what it was paid
    # for the order (the price, fee aside, as for any refund after settlement);
    # the platform's promotion expense is undone.
    assert world.balance(buyer_wallet("buyer-1")) == 8_000
    assert world.balance(seller_deposit("seller-1")) == 40_000
    assert world.balance(platform_promotions()) == 0
    assert world.balance(seller_balance("seller-1")) == 9_500
    assert world.balance(platform_fees()) == 500


async def test_a_refund_before_settlement_through_the_service_books_no_promotion(
    world: World,
) -> None:
    await world.funded_wallet("buyer-1", 8_000)
    order = await world.reserved(world.purchase(8_000, discount=2_000, funded_by=PLATFORM))
    await world.pay_by_wallet(order)

    await world.order_event(order.refund_requested("refund-1"))
    await world.order_event(order.delivered())  # nothing left to settle

    assert world.balance(buyer_wallet("buyer-1")) == 8_000
    assert world.balance(escrow(order.payment_id)) == 0
    assert world.balance(platform_promotions()) == 0
    assert "FundsSettled" not in world.event_types(order.payment_id)


async def test_a_short_deposit_leaves_the_promotion_owed_by_the_seller() -> None:
    world = World(PaymentPolicy(platform_fee_bps=FEE_BPS, deposit_minimum=10_000))
    await world.funded_deposit("seller-1", 9_000)
    await world.funded_wallet("buyer-1", 8_000)
    order = await world.reserved(world.purchase(8_000, discount=2_000, funded_by=PLATFORM))
    await world.pay_by_wallet(order)
    await world.order_event(order.delivered())

    await world.order_event(
        order.refund_requested(
            "claim-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )

    assert world.balance(seller_deposit("seller-1")) == 0
    assert world.balance(seller_receivable("seller-1")) == 1_000
    assert world.balance(platform_promotions()) == 0
    await world.assert_books_balance()


async def test_a_chargeback_after_settlement_takes_the_promotion_back_too(world: World) -> None:
    await world.funded_deposit("seller-1", 30_000)
    order = await world.reserved(world.purchase(8_000, discount=2_000, funded_by=PLATFORM))
    instruction = await world.pay_by(order, PaymentChannel.WECHAT_PAY)
    await world.channel_pays(instruction)
    await world.order_event(order.delivered())

    await world.chargeback(instruction)

    reversed_ = world.last(PaymentReversed, order.payment_id)
    assert (reversed_.amount, reversed_.settled, reversed_.promotion) == (8_000, True, 2_000)
    # The seller owes what the channel took and the promotion it was paid.
    assert world.balance(seller_receivable("seller-1")) == 10_000
    assert world.balance(platform_promotions()) == 0

    await world.order_event(
        order.refund_requested(
            "cb-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CHARGEBACK
        )
    )

    assert world.balance(seller_deposit("seller-1")) == 20_000
    assert world.balance(seller_receivable("seller-1")) == 0
    assert world.balance(seller_balance("seller-1")) == 9_500
