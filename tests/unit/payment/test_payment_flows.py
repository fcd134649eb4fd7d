"""The payment service's flows on fakes, read as scripts: given what ordering
and identity said, when the buyer, the channel or the saga acts, then these
events and these balances. Every script ends with the books balanced."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Literal

import pytest

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.identity import KycTier, SuspensionReason, UserSuspended
from kami_events.catalogue.payment import (
    DepositBelowMinimum,
    DepositChangeCause,
    DepositChanged,
    FundsSettled,
    PaymentChannel,
    PaymentConfirmed,
    PaymentFailed,
    PaymentFailure,
    PaymentRefunded,
    PaymentReversed,
)
from kami_payment.adapters.gateway_orders import GatewayOrderStatus, GatewayPurpose
from kami_payment.domain.ledger import (
    buyer_wallet,
    channel_clearing,
    escrow,
    platform_fees,
    seller_balance,
    seller_deposit,
    seller_receivable,
)
from kami_payment.domain.payment import PaymentStatus
from kami_payment.domain.refusals import Refused
from kami_payment.handlers import PaymentPolicy
from kami_payment.ledger import Ledger, SimulatedCrash
from tests.unit.payment.scenario import verified
from tests.unit.payment.world import World

WECHAT = PaymentChannel.WECHAT_PAY
ALIPAY = PaymentChannel.ALIPAY


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    yield world
    await world.assert_books_balance()


# -- the wallet --------------------------------------------------------------------


async def test_wallet_payment_moves_the_orders_total_into_escrow(world: World) -> None:
    await world.funded_wallet("buyer-1", 20_000)
    order = await world.reserved(world.purchase(12_000))

    outcome = await world.pay_by_wallet(order)

    assert outcome.payment.status is PaymentStatus.CONFIRMED
    assert world.event_types(order.payment_id) == ["PaymentInitiated", "PaymentConfirmed"]
    confirmed = world.last(PaymentConfirmed)
    assert (confirmed.amount, confirmed.channel) == (12_000, PaymentChannel.WALLET)
    assert world.balance(buyer_wallet("buyer-1")) == 8_000
    assert world.balance(escrow(order.payment_id)) == 12_000
    # Paying again answers the same, moves nothing.
    again = await world.pay_by_wallet(order)
    assert again.payment.status is PaymentStatus.CONFIRMED
    assert world.balance(buyer_wallet("buyer-1")) == 8_000


async def test_wrong_payment_passwords_are_refused_then_fail_the_payment(world: World) -> None:
    await world.funded_wallet("buyer-1", 20_000)
    order = await world.reserved(world.purchase(1_000))

    for left in (2, 1):
        with pytest.raises(Refused) as wrong:
            await world.pay_by_wallet(order, pin="111112")
        assert wrong.value.code == "wrong_payment_password"
        assert f"{left} attempt" in wrong.value.message
    with pytest.raises(Refused) as locked:
        await world.pay_by_wallet(order, pin="111112")

    assert locked.value.code == "payment_password_locked"
    failed = world.last(PaymentFailed, order.payment_id)
    assert failed.reason is PaymentFailure.SECOND_FACTOR_FAILED
    assert world.balance(buyer_wallet("buyer-1")) == 20_000
    # Locked: even the right password is refused now.
    other = await world.reserved(world.purchase(1_000))
    with pytest.raises(Refused) as still_locked:
        await world.pay_by_wallet(other)
    assert still_locked.value.code == "payment_password_locked"
    world.later(minutes=31)
    after_lock = await world.reserved(world.purchase(1_000))
    assert (await world.pay_by_wallet(after_lock)).payment.status is PaymentStatus.CONFIRMED


async def test_a_short_wallet_is_refused_without_failing_the_payment(world: World) -> None:
    await world.funded_wallet("buyer-1", 500)
    order = await world.reserved(world.purchase(800))

    with pytest.raises(Refused) as short:
        await world.pay_by_wallet(order)

    assert short.value.code == "insufficient_funds" and "500 fen" in short.value.message
    assert world.event_types(order.payment_id) == ["PaymentInitiated"]
    assert world.balance(buyer_wallet("buyer-1")) == 500
    # The refused attempt no longer counts against today's limit.
    assert await world.daily_spend.spent("buyer-1", world.clock().date()) == 0
    # Topped up, the buyer pays the same intent.
    await world.funded_wallet("buyer-1", 300)
    assert (await world.pay_by_wallet(order)).payment.status is PaymentStatus.CONFIRMED
    assert world.balance(buyer_wallet("buyer-1")) == 0


async def test_payment_passwords_are_six_digits_and_changed_with_the_old_one(
    world: World,
) -> None:
    for weak in ("12345", "abcdef", "111111", "123456", "654321"):
        with pytest.raises(Refused):
            await world.service.set_payment_password("buyer-1", weak, None)
    await world.service.set_payment_password("buyer-1", "258036", None)
    with pytest.raises(Refused) as no_current:
        await world.service.set_payment_password("buyer-1", "369147", None)
    assert no_current.value.code == "current_password_required"
    with pytest.raises(Refused) as wrong_current:
        await world.service.set_payment_password("buyer-1", "369147", "147369")
    assert wrong_current.value.code == "wrong_payment_password"
    await world.service.set_payment_password("buyer-1", "369147", "258036")
    stored = await world.credentials.get("buyer-1")
    assert stored is not None and "369147" not in stored.password_hash
    assert stored.password_hash.startswith("$argon2id$")


async def test_concurrent_wallet_payments_never_overdraw() -> None:
    world = World(PaymentPolicy(password_max_attempts=10))
    await world.funded_wallet("buyer-1", 1_000)
    orders = [await world.reserved(world.purchase(300)) for _ in range(6)]

    results = await asyncio.gather(
        *(world.pay_by_wallet(order) for order in orders), return_exceptions=True
    )

    confirmed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Refused)]
    assert (len(confirmed), len(refused)) == (3, 3)
    assert all(r.code == "insufficient_funds" for r in refused)
    assert world.balance(buyer_wallet("buyer-1")) == 100
    wallet_lines = world.journal.by_account[buyer_wallet("buyer-1")]
    assert all(buyer_wallet("b").natural(line.balance_after) >= 0 for line in wallet_lines)
    await world.assert_books_balance()


async def test_racing_guesses_check_at_most_the_allowed_number_of_passwords(
    world: World,
) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    order = await world.reserved(world.purchase(1_000))
    checked: list[str] = []
    verify = world.service.hasher.verify

    async def counting_verify(password_hash: str, password: str) -> bool:
        checked.append(password)
        return await verify(password_hash, password)

    world.service.hasher.verify = counting_verify  # type: ignore[method-assign]
    guesses = [f"{n:06d}" for n in range(135790, 135810)]

    results = await asyncio.gather(
        *(world.pay_by_wallet(order, pin=guess) for guess in guesses), return_exceptions=True
    )

    codes = sorted({r.code for r in results if isinstance(r, Refused)})
    assert len(checked) == 3  # the policy's max attempts, not 20
    assert "payment_password_busy" in codes and "payment_password_locked" in codes
    assert world.last(PaymentFailed, order.payment_id).reason is PaymentFailure.SECOND_FACTOR_FAILED
    assert world.balance(buyer_wallet("buyer-1")) == 5_000


# -- what payment checks before money moves --------------------------------------------


async def test_a_cancelled_order_is_never_charged_to_the_wallet(world: World) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    order = await world.reserved(world.purchase(1_000))
    await world.order_event(order.cancelled())

    with pytest.raises(Refused) as refused:
        await world.pay_by_wallet(order)

    assert refused.value.code == "order_not_payable"
    assert world.event_types(order.payment_id) == []
    assert world.balance(buyer_wallet("buyer-1")) == 5_000


async def test_only_the_buyer_pays_only_reserved_orders_before_the_deadline(
    world: World,
) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    placed = world.purchase(1_000)
    await world.order_event(placed.placed())
    world.service.policy = dataclasses.replace(world.service.policy, reservation_wait_seconds=0.05)
    with pytest.raises(Refused) as not_yet:
        await world.pay_by_wallet(placed)
    assert not_yet.value.code == "order_not_reserved"

    order = await world.reserved(world.purchase(1_000))
    with pytest.raises(Refused) as stranger:
        await world.service.pay(
            buyer_id="someone-else",
            order_id=order.order_id,
            channel=PaymentChannel.WALLET,
            payment_password="258036",
            request_id="r",
        )
    assert stranger.value.code == "order_not_found"

    world.later(minutes=16)
    with pytest.raises(Refused) as late:
        await world.pay_by_wallet(order)
    assert late.value.code == "payment_deadline_passed"
    assert world.balance(buyer_wallet("buyer-1")) == 5_000


async def test_the_daily_limit_follows_the_buyers_tier(world: World) -> None:
    await world.identity_event(verified("buyer-1", KycTier.PHONE, 10_000))
    await world.funded_wallet("buyer-1", 100_000)
    first = await world.reserved(world.purchase(6_000))
    second = await world.reserved(world.purchase(5_000))
    await world.pay_by_wallet(first)

    with pytest.raises(Refused) as over:
        await world.pay_by_wallet(second)

    assert over.value.code == "daily_limit_exceeded"
    assert "11000 fen" in over.value.message and "10000 fen" in over.value.message
    failed = world.last(PaymentFailed, second.payment_id)
    assert failed.reason is PaymentFailure.DAILY_LIMIT_EXCEEDED
    assert world.balance(buyer_wallet("buyer-1")) == 94_000

    # Verified to a higher tier, the buyer may pay more today.
    await world.identity_event(verified("buyer-1", KycTier.REAL_NAME, 50_000))
    third = await world.reserved(world.purchase(5_000))
    assert (await world.pay_by_wallet(third)).payment.status is PaymentStatus.CONFIRMED
    # A new day in Shanghai starts at 16:00 UTC.
    world.later(hours=12)
    fourth = await world.reserved(world.purchase(45_000))
    assert (await world.pay_by_wallet(fourth)).payment.status is PaymentStatus.CONFIRMED


async def test_a_buyer_without_a_tier_gets_the_default_limit() -> None:
    world = World(PaymentPolicy(default_daily_limit=2_000, password_max_attempts=3))
    await world.funded_wallet("buyer-9", 10_000)
    order = await world.reserved(world.purchase(2_001, buyer="buyer-9"))
    with pytest.raises(Refused) as over:
        await world.pay_by_wallet(order)
    assert over.value.code == "daily_limit_exceeded"
    await world.assert_books_balance()


async def test_a_gateway_payment_counts_against_the_limit_when_it_starts(world: World) -> None:
    await world.identity_event(verified("buyer-1", KycTier.PHONE, 10_000))
    await world.pay_by(await world.reserved(world.purchase(8_000)), WECHAT)
    with pytest.raises(Refused) as over:
        await world.pay_by(await world.reserved(world.purchase(3_000)), ALIPAY)
    assert over.value.code == "daily_limit_exceeded"


async def test_a_suspended_buyer_cannot_pay(world: World) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    await world.identity_event(
        UserSuspended(
            user_id="buyer-1", reason=SuspensionReason.FRAUD_SUSPECTED, suspended_by="op-1"
        )
    )
    order = await world.reserved(world.purchase(1_000))
    with pytest.raises(Refused) as suspended:
        await world.pay_by_wallet(order)
    assert suspended.value.code == "buyer_suspended"
    assert world.last(PaymentFailed, order.payment_id).reason is PaymentFailure.BUYER_SUSPENDED
    assert world.balance(buyer_wallet("buyer-1")) == 5_000


@pytest.mark.parametrize(
    ("purpose", "owner"),
    [(GatewayPurpose.WALLET_TOP_UP, "buyer-1"), (GatewayPurpose.DEPOSIT_TOP_UP, "seller-1")],
)
async def test_a_suspended_account_cannot_top_up(
    world: World,
    purpose: Literal[GatewayPurpose.WALLET_TOP_UP, GatewayPurpose.DEPOSIT_TOP_UP],
    owner: str,
) -> None:
    await world.funded_deposit("seller-1", 1_000)
    await world.identity_event(
        UserSuspended(user_id=owner, reason=SuspensionReason.FRAUD_SUSPECTED, suspended_by="op-1")
    )
    with pytest.raises(Refused) as suspended:
        await world.service.start_top_up(
            purpose=purpose, owner_id=owner, amount=1_000, channel=ALIPAY, idempotency_key=None
        )
    assert suspended.value.code == "account_suspended"


# -- the channels ---------------------------------------------------------------------


@pytest.mark.parametrize("channel", [WECHAT, ALIPAY])
async def test_a_channel_payment_is_confirmed_once_despite_duplicate_callbacks(
    world: World, channel: PaymentChannel
) -> None:
    order = await world.reserved(world.purchase(4_200))
    instruction = await world.pay_by(order, channel)
    assert world.event_types(order.payment_id) == ["PaymentInitiated"]

    first = await world.channel_pays(instruction)
    duplicate = await world.channel_notifies(instruction)

    assert first is not None and first.accepted and duplicate.accepted
    assert duplicate.body == first.body  # the channel's own "success"
    assert world.event_types(order.payment_id) == ["PaymentInitiated", "PaymentConfirmed"]
    assert world.balance(escrow(order.payment_id)) == 4_200
    assert world.balance(channel_clearing(channel)) == 4_200


@pytest.mark.parametrize("channel", [WECHAT, ALIPAY])
async def test_a_late_callback_for_a_cancelled_order_still_confirms_then_is_refunded(
    world: World, channel: PaymentChannel
) -> None:
    order = await world.reserved(world.purchase(3_000))
    instruction = await world.pay_by(order, channel)
    await world.channel_pays(instruction, deliver=False)  # the notification is lost
    world.later(minutes=20)
    # Ordering gave up at the deadline. Payment closes the trade at the
    # channel, which says it was paid: the money is captured and confirmed.
    await world.order_event(order.cancelled())
    assert world.event_types(order.payment_id) == ["PaymentInitiated", "PaymentConfirmed"]
    # The notification arrives late: nothing changes, the channel hears success.
    late = await world.channel_notifies(instruction)
    assert late.accepted
    assert world.event_types(order.payment_id) == ["PaymentInitiated", "PaymentConfirmed"]

    # Ordering (layer 2 failed) asks for the refund: back through the channel.
    await world.order_event(order.refund_requested("refund-1", reason=RefundReason.LATE_PAYMENT))

    refunded = world.last(PaymentRefunded, order.payment_id)
    assert (refunded.source, refunded.destination, refunded.amount) == (
        RefundSource.ESCROW,
        "original_channel",
        3_000,
    )
    assert world.balance(escrow(order.payment_id)) == 0
    assert world.balance(channel_clearing(channel)) == 0
    trade = await world.simulators[channel].trade(instruction.gateway_trade_no)
    assert trade.refunded == 3_000  # the channel sent it back to the payer


async def test_the_poller_finds_a_payment_whose_callback_never_came(world: World) -> None:
    order = await world.reserved(world.purchase(2_500))
    instruction = await world.pay_by(order, ALIPAY)
    await world.channel_pays(instruction, deliver=False)

    assert await world.service.poll_gateways() == 0  # within the grace period
    world.later(seconds=31)
    assert await world.service.poll_gateways() == 1

    assert world.event_types(order.payment_id) == ["PaymentInitiated", "PaymentConfirmed"]
    assert (await world.gateway_orders.get(order.payment_id)) is not None
    assert await world.service.poll_gateways() == 0  # paid trades are not polled again


async def test_an_unpaid_trade_is_closed_after_its_deadline(world: World) -> None:
    await world.identity_event(verified("buyer-1", KycTier.PHONE, 10_000))
    order = await world.reserved(world.purchase(9_000))
    instruction = await world.pay_by(order, WECHAT)
    world.later(minutes=16)

    await world.service.poll_gateways()

    failed = world.last(PaymentFailed, order.payment_id)
    assert failed.reason is PaymentFailure.EXPIRED
    gateway_order = await world.gateway_orders.get(order.payment_id)
    assert gateway_order is not None and gateway_order.status is GatewayOrderStatus.CLOSED
    assert await world.daily_spend.spent("buyer-1", world.clock().date()) == 0
    with pytest.raises(Exception, match="closed"):
        await world.channel_pays(instruction)


async def test_a_forged_callback_is_refused_and_changes_nothing(world: World) -> None:
    order = await world.reserved(world.purchase(5_000))
    instruction = await world.pay_by(order, WECHAT)
    notice = await world.simulators[WECHAT].pay(instruction.gateway_trade_no)
    signed = await world.simulators[WECHAT].payment_notice(notice.gateway_trade_no)

    tampered = signed.body.replace(b'"total":5000', b'"total":50')
    answer = await world.service.receive_payment_notice(WECHAT, signed.headers, tampered)
    cross_channel = await world.service.receive_payment_notice(ALIPAY, signed.headers, signed.body)

    assert answer.status_code == 401 and b"FAIL" in answer.body
    assert cross_channel.status_code == 401 and cross_channel.body == b"failure"
    assert world.event_types(order.payment_id) == ["PaymentInitiated"]
    assert world.journal.movements == {}


async def test_a_signed_callback_for_an_unknown_trade_is_refused(world: World) -> None:
    stranger = await world.simulators[ALIPAY].create_trade(
        "not-a-kami-trade", 100, "x", world.clock() + timedelta(minutes=5)
    )
    await world.simulators[ALIPAY].pay(stranger.gateway_trade_no)
    signed = await world.simulators[ALIPAY].payment_notice(stranger.gateway_trade_no)
    answer = await world.service.receive_payment_notice(ALIPAY, signed.headers, signed.body)
    assert answer.status_code == 404
    assert world.journal.movements == {}


# -- settlement and refunds --------------------------------------------------------------


async def test_delivery_settles_escrow_to_the_seller_less_the_fee(world: World) -> None:
    order = await world.reserved(world.purchase(10_000))
    await world.channel_pays(await world.pay_by(order, ALIPAY))
    await world.order_event(order.paid())

    await world.order_event(order.delivered())
    await world.order_event(order.delivered())  # redelivered: settles once

    settled = world.last(FundsSettled, order.payment_id)
    assert (settled.gross, settled.platform_fee, settled.net) == (10_000, 500, 9_500)
    assert world.event_types(order.payment_id).count("FundsSettled") == 1
    assert world.balance(escrow(order.payment_id)) == 0
    assert world.balance(seller_balance("seller-1")) == 9_500
    assert world.balance(platform_fees()) == 500
    # In the default mode completion settles nothing more.
    await world.order_event(order.completed())
    assert world.event_types(order.payment_id).count("FundsSettled") == 1


async def test_settlement_can_wait_for_the_guarantee_window() -> None:
    world = World(PaymentPolicy(settle_on="completed", platform_fee_bps=1_000))
    order = await world.reserved(world.purchase(3_000))
    await world.channel_pays(await world.pay_by(order, WECHAT))
    await world.order_event(order.delivered())
    assert "FundsSettled" not in world.event_types(order.payment_id)
    await world.order_event(order.completed())
    assert world.last(FundsSettled).platform_fee == 300
    await world.assert_books_balance()


async def test_a_refund_before_settlement_comes_from_escrow(world: World) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    order = await world.reserved(world.purchase(4_000))
    await world.pay_by_wallet(order)

    await world.order_event(order.refund_requested("refund-1"))
    await world.order_event(order.refund_requested("refund-1"))  # the same request again

    refunded = world.last(PaymentRefunded, order.payment_id)
    assert (refunded.source, refunded.destination) == (RefundSource.ESCROW, "wallet")
    assert world.event_types(order.payment_id).count("PaymentRefunded") == 1
    assert world.balance(buyer_wallet("buyer-1")) == 5_000
    assert world.balance(escrow(order.payment_id)) == 0
    # Nothing is left to settle.
    await world.order_event(order.delivered())
    assert "FundsSettled" not in world.event_types(order.payment_id)


async def test_a_refund_after_settlement_is_drawn_from_the_sellers_deposit(world: World) -> None:
    await world.funded_deposit("seller-1", 50_000)
    await world.funded_wallet("buyer-1", 6_000)
    order = await world.reserved(world.purchase(6_000))
    await world.pay_by_wallet(order)
    await world.order_event(order.delivered())

    # Ordering thought it was still in escrow: payment is the authority.
    await world.order_event(
        order.refund_requested(
            "claim-1", source=RefundSource.ESCROW, reason=RefundReason.CLAIM_UPHELD
        )
    )

    refunded = world.last(PaymentRefunded, order.payment_id)
    assert refunded.source is RefundSource.SELLER_DEPOSIT
    assert world.balance(seller_deposit("seller-1")) == 44_000
    assert world.balance(buyer_wallet("buyer-1")) == 6_000
    assert world.balance(seller_balance("seller-1")) == 5_700  # settled net stays
    changed = world.last(DepositChanged, "seller-1")
    assert (changed.direction, changed.amount, changed.balance, changed.cause) == (
        "debit",
        6_000,
        44_000,
        DepositChangeCause.REFUND_DRAWN,
    )
    assert changed.order_id == order.order_id


async def test_a_deposit_that_cannot_cover_a_refund_never_goes_negative(world: World) -> None:
    await world.funded_deposit("seller-1", 12_000)
    order = await world.reserved(world.purchase(15_000))
    await world.channel_pays(await world.pay_by(order, WECHAT))
    await world.order_event(order.delivered())

    await world.order_event(
        order.refund_requested(
            "claim-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )

    assert world.last(PaymentRefunded).amount == 15_000  # the buyer is made whole
    assert world.balance(seller_deposit("seller-1")) == 0
    assert world.balance(seller_receivable("seller-1")) == 3_000  # advanced by the platform
    below = world.last(DepositBelowMinimum, "seller-1")
    assert (below.balance, below.minimum, below.shortfall) == (0, 10_000, 10_000)
    view = await world.service.deposit("seller-1")
    assert (view.balance, view.owed, view.shortfall) == (0, 3_000, 10_000)
    assert await world.service.deposits_below_minimum() == 1
    # Topping up above the minimum takes the seller out of the count.
    await world.funded_deposit("seller-1", 20_000)
    assert await world.service.deposits_below_minimum() == 0


async def test_a_top_up_pays_back_what_the_seller_owes_before_the_deposit(world: World) -> None:
    await world.funded_deposit("seller-1", 12_000)
    order = await world.reserved(world.purchase(15_000))
    await world.channel_pays(await world.pay_by(order, WECHAT))
    await world.order_event(order.delivered())
    await world.order_event(
        order.refund_requested(
            "claim-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )
    assert world.balance(seller_receivable("seller-1")) == 3_000

    await world.funded_deposit("seller-1", 2_000)  # less than owed: all of it repays
    assert world.balance(seller_receivable("seller-1")) == 1_000
    assert world.balance(seller_deposit("seller-1")) == 0
    await world.funded_deposit("seller-1", 11_000)
    assert world.balance(seller_receivable("seller-1")) == 0
    assert world.balance(seller_deposit("seller-1")) == 10_000
    # One deposit line for the part that reached it: back at the minimum, no flapping.
    changed = world.last(DepositChanged, "seller-1")
    assert (changed.direction, changed.amount, changed.balance, changed.cause) == (
        "credit",
        10_000,
        10_000,
        DepositChangeCause.TOP_UP,
    )
    view = await world.service.deposit("seller-1")
    assert (view.balance, view.owed, view.shortfall) == (10_000, 0, 0)
    assert (await world.service.trial_balance()).total == 0


async def test_refunds_never_exceed_what_was_captured(world: World) -> None:
    order = await world.reserved(world.purchase(2_000))
    await world.channel_pays(await world.pay_by(order, ALIPAY))
    await world.order_event(order.refund_requested("r1", amount=1_500))
    with pytest.raises(Refused) as over:
        await world.order_event(order.refund_requested("r2", amount=501))
    assert over.value.code == "refund_exceeds_captured"
    await world.order_event(order.refund_requested("r3", amount=500))
    assert (await world.payment(order)).refunded == 2_000
    assert world.balance(escrow(order.payment_id)) == 0


# -- chargebacks ------------------------------------------------------------------------------


async def test_a_chargeback_after_settlement_is_recovered_from_the_deposit(world: World) -> None:
    await world.funded_deposit("seller-1", 30_000)
    order = await world.reserved(world.purchase(8_000))
    instruction = await world.pay_by(order, WECHAT)
    await world.channel_pays(instruction)
    await world.order_event(order.delivered())

    answer = await world.chargeback(instruction)
    duplicate = await world.chargeback(instruction)

    assert answer.accepted and duplicate.accepted
    reversed_ = world.last(PaymentReversed, order.payment_id)
    assert (reversed_.amount, reversed_.settled) == (8_000, True)
    assert world.event_types(order.payment_id).count("PaymentReversed") == 1
    # Until recovered the seller owes it; the channel took it from clearing.
    assert world.balance(seller_receivable("seller-1")) == 8_000
    assert world.balance(channel_clearing(WECHAT)) == 0

    # Ordering requests the recovery (docs/saga.md).
    await world.order_event(
        order.refund_requested(
            "cb-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CHARGEBACK
        )
    )

    recovered = world.last(PaymentRefunded, order.payment_id)
    assert (recovered.source, recovered.destination, recovered.reason) == (
        RefundSource.SELLER_DEPOSIT,
        "none",
        RefundReason.CHARGEBACK,
    )
    assert world.balance(seller_deposit("seller-1")) == 22_000
    assert world.balance(seller_receivable("seller-1")) == 0
    assert world.last(DepositChanged, "seller-1").cause is DepositChangeCause.CHARGEBACK_RECOVERY


async def test_a_chargeback_before_settlement_is_paid_from_escrow(world: World) -> None:
    order = await world.reserved(world.purchase(8_000))
    instruction = await world.pay_by(order, ALIPAY)
    await world.channel_pays(instruction)

    await world.chargeback(instruction)
    await world.order_event(order.delivered())  # too late: nothing left to settle
    await world.order_event(order.refund_requested("cb-1", reason=RefundReason.CHARGEBACK))

    assert world.last(PaymentReversed).settled is False
    assert "FundsSettled" not in world.event_types(order.payment_id)
    recovered = world.last(PaymentRefunded, order.payment_id)
    assert (recovered.source, recovered.destination) == (RefundSource.ESCROW, "none")
    assert world.balance(escrow(order.payment_id)) == 0
    assert world.balance(seller_receivable("seller-1")) == 0


async def test_a_chargeback_notice_before_the_payment_notice_captures_first(
    world: World,
) -> None:
    order = await world.reserved(world.purchase(1_000))
    instruction = await world.pay_by(order, WECHAT)
    await world.channel_pays(instruction, deliver=False)

    answer = await world.chargeback(instruction)

    assert answer.accepted
    assert world.event_types(order.payment_id) == [
        "PaymentInitiated",
        "PaymentConfirmed",
        "PaymentReversed",
    ]


# -- deposits and top-ups ---------------------------------------------------------------------


async def test_only_approved_sellers_top_up_a_deposit(world: World) -> None:
    with pytest.raises(Refused) as refused:
        await world.service.start_top_up(
            purpose=GatewayPurpose.DEPOSIT_TOP_UP,
            owner_id="seller-x",
            amount=1_000,
            channel=ALIPAY,
            idempotency_key=None,
        )
    assert refused.value.code == "seller_not_approved"
    await world.funded_deposit("seller-1", 25_000)
    changed = world.last(DepositChanged, "seller-1")
    assert (changed.direction, changed.balance, changed.cause) == (
        "credit",
        25_000,
        DepositChangeCause.TOP_UP,
    )


async def test_a_repeated_top_up_request_with_its_key_is_one_top_up(world: World) -> None:
    async def top_up(amount: int) -> str:
        outcome = await world.service.start_top_up(
            purpose=GatewayPurpose.WALLET_TOP_UP,
            owner_id="buyer-1",
            amount=amount,
            channel=WECHAT,
            idempotency_key="key-1",
        )
        return outcome.top_up.out_trade_no

    first = await top_up(1_000)
    assert await top_up(1_000) == first
    with pytest.raises(Refused) as reused:
        await top_up(2_000)
    assert reused.value.code == "idempotency_key_reused"


# -- crashes --------------------------------------------------------------------------------


async def test_the_sweeper_finishes_a_payment_a_crash_interrupted(world: World) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    order = await world.reserved(world.purchase(2_000))
    healthy = world.service.ledger
    world.service.ledger = Ledger(world.journal, clock=world.clock, crash_after_lines=1)

    with pytest.raises(SimulatedCrash):
        await world.pay_by_wallet(order)

    # The wallet was debited, escrow not credited, nothing confirmed.
    assert world.balance(buyer_wallet("buyer-1")) == 3_000
    assert world.event_types(order.payment_id) == ["PaymentInitiated"]
    world.service.ledger = healthy
    world.later(seconds=11)
    assert await world.service.sweep() == 1

    assert world.event_types(order.payment_id) == ["PaymentInitiated", "PaymentConfirmed"]
    assert world.balance(buyer_wallet("buyer-1")) == 3_000
    assert world.balance(escrow(order.payment_id)) == 2_000
    assert await world.service.sweep() == 0


async def test_a_retried_request_finishes_what_the_crashed_one_started(world: World) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    order = await world.reserved(world.purchase(2_000))
    healthy = world.service.ledger
    world.service.ledger = Ledger(world.journal, clock=world.clock, crash_after_lines=1)
    with pytest.raises(SimulatedCrash):
        await world.pay_by_wallet(order)
    world.service.ledger = healthy

    outcome = await world.pay_by_wallet(order)

    assert outcome.payment.status is PaymentStatus.CONFIRMED
    assert world.balance(buyer_wallet("buyer-1")) == 3_000
    assert world.event_types(order.payment_id).count("PaymentConfirmed") == 1


async def test_a_payment_waits_for_the_reservation_payment_has_not_heard_of_yet(
    world: World,
) -> None:
    """Ordering told the buyer the order is reserved; payment's consumer is
    a moment behind. The payment waits for it instead of refusing."""
    await world.funded_wallet("buyer-1", 5_000)
    order = world.purchase(1_000)
    await world.order_event(order.placed())
    paying = asyncio.create_task(world.pay_by_wallet(order))
    await asyncio.sleep(0.05)
    assert not paying.done()
    await world.order_event(order.reserved())
    outcome = await asyncio.wait_for(paying, timeout=2)
    assert outcome.payment.status is PaymentStatus.CONFIRMED
