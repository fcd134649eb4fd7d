"""The payment service on FerretDB, over HTTP: the buyer, the seller, the
operator, the simulated channels and ordering's events. Every test ends with
the trial balance at zero (the `payment` fixture checks it)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode
from uuid import uuid4

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.identity import KycTier, Role
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.catalogue.payment import (
    DepositBelowMinimum,
    DepositChanged,
    PaymentChannel,
)
from kami_payment.adapters.gateways.alipay import AlipayNotifier
from kami_payment.adapters.gateways.base import TradeState, TradeStatus
from tests.integration.payment.conftest import PIN, PaymentHarness
from tests.unit.payment.scenario import Purchase, seller_approved, verified


def purchase(total: int, buyer: str | None = None, seller: str | None = None) -> Purchase:
    return Purchase(
        order_id=f"order-{uuid4().hex[:12]}",
        buyer_id=buyer or f"buyer-{uuid4().hex[:8]}",
        seller_id=seller or f"seller-{uuid4().hex[:8]}",
        total=total,
        placed_at=datetime.now(UTC),
    )


async def reserved(payment: PaymentHarness, order: Purchase) -> Purchase:
    assert await payment.feed(order.placed()) == "handled"
    assert await payment.feed(order.reserved()) == "handled"
    return order


async def test_wallet_happy_path_with_statement_and_ledger(payment: PaymentHarness) -> None:
    order = await reserved(payment, purchase(12_000))
    await payment.funded_wallet(order.buyer_id, 20_000)
    headers = payment.auth(order.buyer_id, Role.BUYER)

    paid = await payment.pay(order.buyer_id, order.order_id, "wallet", payment_password=PIN)

    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert (body["status"], body["amount"], body["captured"]) == ("confirmed", 12_000, 12_000)
    assert await payment.payment_events(order.payment_id) == [
        "PaymentInitiated",
        "PaymentConfirmed",
    ]
    wallet = (await payment.client.get("/wallet", headers=headers)).json()
    assert (wallet["balance"], wallet["spent_today"]) == (8_000, 12_000)
    statement = (await payment.client.get("/wallet/statement", headers=headers)).json()
    assert [(line["change"], line["balance"]) for line in statement["lines"]] == [
        (-12_000, 8_000),
        (20_000, 20_000),
    ]
    assert statement["lines"][0]["order_id"] == order.order_id
    own = await payment.client.get(f"/orders/{order.order_id}/payment", headers=headers)
    assert own.json()["payment_id"] == order.payment_id
    stranger = await payment.client.get(
        f"/payments/{order.payment_id}", headers=payment.auth("someone", Role.BUYER)
    )
    assert stranger.status_code == 404
    trial = await payment.trial_balance()
    assert trial["totals"]["escrow"] == -12_000
    assert trial["totals"]["channel_clearing"] == 20_000


async def test_wrong_password_and_missing_password_are_clear_4xx(
    payment: PaymentHarness,
) -> None:
    order = await reserved(payment, purchase(1_000))
    await payment.funded_wallet(order.buyer_id, 5_000)

    missing = await payment.pay(order.buyer_id, order.order_id, "wallet")
    wrong = await payment.pay(order.buyer_id, order.order_id, "wallet", payment_password="975310")

    assert (missing.status_code, missing.json()["error"]["code"]) == (
        422,
        "payment_password_required",
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "wrong_payment_password")
    assert "4 attempt(s) left" in wrong.json()["error"]["message"]


async def test_concurrent_wallet_payments_never_overdraw(payment: PaymentHarness) -> None:
    buyer = f"buyer-{uuid4().hex[:8]}"
    orders = [await reserved(payment, purchase(3_000, buyer=buyer)) for _ in range(5)]
    await payment.funded_wallet(buyer, 10_000)

    responses = await asyncio.gather(
        *(payment.pay(buyer, o.order_id, "wallet", payment_password=PIN) for o in orders)
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 409, 409]
    refused = [r.json()["error"]["code"] for r in responses if r.status_code == 409]
    assert refused == ["insufficient_funds", "insufficient_funds"]
    wallet = await payment.client.get("/wallet", headers=payment.auth(buyer, Role.BUYER))
    assert wallet.json()["balance"] == 1_000


async def test_a_cancelled_order_is_refused_for_the_wallet(payment: PaymentHarness) -> None:
    order = await reserved(payment, purchase(1_000))
    await payment.funded_wallet(order.buyer_id, 5_000)
    await payment.feed(order.cancelled())
    await payment.feed(order.reserved())  # an older event replayed: the order stays cancelled

    refused = await payment.pay(order.buyer_id, order.order_id, "wallet", payment_password=PIN)

    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "order_not_payable")
    assert await payment.payment_events(order.payment_id) == []
    wallet = await payment.client.get("/wallet", headers=payment.auth(order.buyer_id, Role.BUYER))
    assert wallet.json()["balance"] == 5_000


async def test_the_daily_limit_by_tier_refuses_with_a_reason(payment: PaymentHarness) -> None:
    order = await reserved(payment, purchase(6_000))
    await payment.feed(verified(order.buyer_id, KycTier.PHONE, 5_000), producer="identity")

    refused = await payment.pay(order.buyer_id, order.order_id, "alipay")

    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "daily_limit_exceeded" and "5000 fen" in error["message"]
    assert await payment.payment_events(order.payment_id) == [
        "PaymentInitiated",
        "PaymentFailed",
    ]


async def test_each_channel_with_a_duplicated_and_a_late_callback(
    payment: PaymentHarness,
) -> None:
    for channel in ("wechat_pay", "alipay"):
        prompt = await reserved(payment, purchase(4_000))
        late = await reserved(payment, purchase(2_500))

        started = await payment.pay(prompt.buyer_id, prompt.order_id, channel)
        assert started.status_code == 200, started.text
        pay = started.json()["pay"]
        assert pay["code_url" if channel == "wechat_pay" else "pay_url"]
        trade_no = pay["gateway_trade_no"]
        first = await payment.client.post(pay["simulator_pay"])
        duplicate = await payment.client.post(f"/simulator/{channel}/notify/{trade_no}")
        assert first.json()["callback"]["status_code"] == 200
        assert duplicate.json()["callback"] == first.json()["callback"]
        assert await payment.payment_events(prompt.payment_id) == [
            "PaymentInitiated",
            "PaymentConfirmed",
        ]

        late_pay = (await payment.pay(late.buyer_id, late.order_id, channel)).json()["pay"]
        lost = await payment.client.post(late_pay["simulator_pay"], params={"deliver": "false"})
        assert lost.json()["callback"] is None
        assert await payment.payment_events(late.payment_id) == ["PaymentInitiated"]
        arrived = await payment.client.post(
            f"/simulator/{channel}/notify/{late_pay['gateway_trade_no']}"
        )
        assert arrived.json()["callback"]["status_code"] == 200
        assert await payment.payment_events(late.payment_id) == [
            "PaymentInitiated",
            "PaymentConfirmed",
        ]
    trial = await payment.trial_balance()
    assert trial["totals"]["escrow"] == -2 * (4_000 + 2_500)


async def test_the_poller_captures_a_payment_whose_callback_never_came(
    payment: PaymentHarness,
) -> None:
    order = await reserved(payment, purchase(3_300))
    pay = (await payment.pay(order.buyer_id, order.order_id, "wechat_pay")).json()["pay"]
    await payment.client.post(pay["simulator_pay"], params={"deliver": "false"})

    assert await payment.service.poll_gateways() == 1

    assert await payment.payment_events(order.payment_id) == [
        "PaymentInitiated",
        "PaymentConfirmed",
    ]


async def test_forged_and_tampered_callbacks_are_refused_and_change_nothing(
    payment: PaymentHarness,
) -> None:
    order = await reserved(payment, purchase(5_000))
    pay = (await payment.pay(order.buyer_id, order.order_id, "alipay")).json()["pay"]
    trade = TradeState(
        out_trade_no=order.payment_id,
        gateway_trade_no=pay["gateway_trade_no"],
        status=TradeStatus.PAID,
        amount=5_000,
    )
    forged = AlipayNotifier(b"a-forger-guessing-the-secret-0123456789").payment_notice(
        trade, datetime.now(UTC)
    )
    genuine_secret = payment.settings.payment_alipay_secret.get_secret_value().encode()
    genuine = AlipayNotifier(genuine_secret).payment_notice(trade, datetime.now(UTC))
    fields = dict(parse_qsl(genuine.body.decode()))
    fields["total_amount"] = "0.01"

    answers = [
        await payment.client.post("/callbacks/alipay", content=forged.body),
        await payment.client.post("/callbacks/alipay", content=urlencode(fields).encode()),
        await payment.client.post("/callbacks/wechat_pay", content=genuine.body),
        await payment.client.post("/callbacks/alipay", content=b"not a form at all"),
    ]

    assert [a.status_code for a in answers] == [401, 401, 401, 401]
    assert answers[0].text == "failure"
    assert answers[2].json()["code"] == "FAIL"
    assert await payment.payment_events(order.payment_id) == ["PaymentInitiated"]
    trial = await payment.trial_balance()
    assert all(total == 0 for total in trial["totals"].values())
    # The genuine one is accepted.
    accepted = await payment.client.post("/callbacks/alipay", content=genuine.body)
    assert (accepted.status_code, accepted.text) == (200, "success")


async def test_a_captured_payment_for_a_cancelled_order_is_refunded(
    payment: PaymentHarness,
) -> None:
    order = await reserved(payment, purchase(2_000))
    pay = (await payment.pay(order.buyer_id, order.order_id, "wechat_pay")).json()["pay"]
    await payment.client.post(pay["simulator_pay"], params={"deliver": "false"})

    await payment.feed(order.cancelled())  # payment closes the trade: it was paid
    late = order.refund_requested(f"refund-{uuid4().hex[:8]}", reason=RefundReason.LATE_PAYMENT)
    await payment.feed(late)

    assert await payment.payment_events(order.payment_id) == [
        "PaymentInitiated",
        "PaymentConfirmed",
        "PaymentRefunded",
    ]
    trade = await payment.client.get(f"/simulator/wechat_pay/trades/{pay['gateway_trade_no']}")
    assert trade.json()["refunded"] == 2_000
    assert (await payment.trial_balance())["totals"]["escrow"] == 0


async def test_settlement_then_refunds_from_escrow_and_from_the_deposit(
    payment: PaymentHarness,
) -> None:
    seller = f"seller-{uuid4().hex[:8]}"
    seller_headers = payment.auth(seller, Role.SELLER)
    refused = await payment.client.post(
        "/deposits/top-ups", json={"amount": 30_000, "channel": "alipay"}, headers=seller_headers
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "seller_not_approved")
    await payment.feed(seller_approved(seller), producer="identity")
    top_up = await payment.client.post(
        "/deposits/top-ups", json={"amount": 30_000, "channel": "alipay"}, headers=seller_headers
    )
    await payment.client.post(top_up.json()["pay"]["simulator_pay"])

    refunded_early = await reserved(payment, purchase(5_000, seller=seller))
    settled = await reserved(payment, purchase(10_000, seller=seller))
    for order in (refunded_early, settled):
        await payment.funded_wallet(order.buyer_id, order.total)
        response = await payment.pay(order.buyer_id, order.order_id, "wallet", payment_password=PIN)
        assert response.json()["status"] == "confirmed"

    await payment.feed(refunded_early.refund_requested("refund-escrow"))
    await payment.feed(settled.delivered())
    await payment.feed(
        settled.refund_requested(
            "refund-deposit", source=RefundSource.ESCROW, reason=RefundReason.CLAIM_UPHELD
        )
    )

    assert await payment.payment_events(refunded_early.payment_id) == [
        "PaymentInitiated",
        "PaymentConfirmed",
        "PaymentRefunded",
    ]
    assert await payment.payment_events(settled.payment_id) == [
        "PaymentInitiated",
        "PaymentConfirmed",
        "FundsSettled",
        "PaymentRefunded",
    ]
    deposit = (await payment.client.get("/deposits/me", headers=seller_headers)).json()
    assert (deposit["balance"], deposit["seller_balance"], deposit["owed"]) == (20_000, 9_500, 0)
    changes = [e for e in await payment.deposit_events(seller) if isinstance(e, DepositChanged)]
    assert [(c.direction, c.amount, c.balance) for c in changes] == [
        ("credit", 30_000, 30_000),
        ("debit", 10_000, 20_000),
    ]
    statement = (await payment.client.get("/sellers/me/statement", headers=seller_headers)).json()[
        "lines"
    ]
    assert {(line["account_type"], line["change"]) for line in statement} == {
        ("seller_deposit", 30_000),
        ("seller_balance", 9_500),
        ("seller_deposit", -10_000),
    }
    for wallet_owner in (refunded_early.buyer_id, settled.buyer_id):
        wallet = await payment.client.get("/wallet", headers=payment.auth(wallet_owner, Role.BUYER))
        assert (
            wallet.json()["balance"]
            == {
                refunded_early.buyer_id: 5_000,
                settled.buyer_id: 10_000,
            }[wallet_owner]
        )
    totals = (await payment.trial_balance())["totals"]
    assert totals["platform_fees"] == -500


async def test_a_platform_funded_discount_is_paid_at_settlement_and_taken_back_by_a_refund(
    payment: PaymentHarness,
) -> None:
    seller = f"seller-{uuid4().hex[:8]}"
    seller_headers = payment.auth(seller, Role.SELLER)
    await payment.feed(seller_approved(seller), producer="identity")
    top_up = await payment.client.post(
        "/deposits/top-ups", json={"amount": 30_000, "channel": "alipay"}, headers=seller_headers
    )
    await payment.client.post(top_up.json()["pay"]["simulator_pay"])
    coupon = purchase(8_000, seller=seller)
    order = await reserved(
        payment, replace(coupon, discount=2_000, discount_funded_by=DiscountFunder.PLATFORM)
    )
    await payment.funded_wallet(order.buyer_id, 8_000)
    paid = await payment.pay(order.buyer_id, order.order_id, "wallet", payment_password=PIN)
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert (body["amount"], body["discount"], body["discount_funded_by"]) == (
        8_000,
        2_000,
        "platform",
    )

    await payment.feed(order.delivered())

    # The seller gets the price before the discount less the fee on it; the
    # platform's promotion expense pays the difference, in the same entry.
    totals = (await payment.trial_balance())["totals"]
    assert (totals["seller_balance"], totals["platform_fees"]) == (-9_500, -500)
    assert totals["platform_promotions"] == 2_000

    await payment.feed(
        order.refund_requested(
            "claim-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )

    # The buyer has back what they paid, the seller's deposit gave back the
    # price, and the promotion is undone.
    trial = await payment.trial_balance()
    assert trial["total"] == 0
    assert trial["totals"]["platform_promotions"] == 0
    deposit = (await payment.client.get("/deposits/me", headers=seller_headers)).json()
    assert (deposit["balance"], deposit["seller_balance"], deposit["owed"]) == (20_000, 9_500, 0)
    wallet = await payment.client.get("/wallet", headers=payment.auth(order.buyer_id, Role.BUYER))
    assert wallet.json()["balance"] == 8_000


async def test_a_chargeback_is_recovered_from_the_deposit(payment: PaymentHarness) -> None:
    seller = f"seller-{uuid4().hex[:8]}"
    await payment.feed(seller_approved(seller), producer="identity")
    top_up = await payment.client.post(
        "/deposits/top-ups",
        json={"amount": 12_000, "channel": "wechat_pay"},
        headers=payment.auth(seller, Role.SELLER),
    )
    await payment.client.post(top_up.json()["pay"]["simulator_pay"])
    order = await reserved(payment, purchase(8_000, seller=seller))
    pay = (await payment.pay(order.buyer_id, order.order_id, "alipay")).json()["pay"]
    await payment.client.post(pay["simulator_pay"])
    await payment.feed(order.delivered())

    chargeback = await payment.client.post(
        f"/simulator/alipay/chargeback/{pay['gateway_trade_no']}", json={}
    )
    assert chargeback.json()["callback"] == {"status_code": 200, "body": "success"}
    await payment.feed(
        order.refund_requested(
            "cb-recovery", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CHARGEBACK
        )
    )

    assert await payment.payment_events(order.payment_id) == [
        "PaymentInitiated",
        "PaymentConfirmed",
        "FundsSettled",
        "PaymentReversed",
        "PaymentRefunded",
    ]
    deposit = (
        await payment.client.get("/deposits/me", headers=payment.auth(seller, Role.SELLER))
    ).json()
    assert (deposit["balance"], deposit["owed"], deposit["below_minimum"]) == (4_000, 0, True)
    events = await payment.deposit_events(seller)
    below = [e for e in events if isinstance(e, DepositBelowMinimum)]
    assert [(b.balance, b.shortfall) for b in below] == [(4_000, 6_000)]
    totals = (await payment.trial_balance())["totals"]
    # The channel took the 80 yuan back: clearing holds only the deposit top-up.
    assert totals["channel_clearing"] == 12_000


async def test_a_seller_is_held_to_the_minimum_of_its_category(payment: PaymentHarness) -> None:
    premium, plain = f"seller-{uuid4().hex[:8]}", f"seller-{uuid4().hex[:8]}"
    await payment.feed(seller_approved(premium, category="premium"), producer="identity")
    await payment.feed(seller_approved(plain, category="books"), producer="identity")
    for seller in (premium, plain):
        top_up = await payment.client.post(
            "/deposits/top-ups",
            json={"amount": 15_000, "channel": "alipay"},
            headers=payment.auth(seller, Role.SELLER),
        )
        await payment.client.post(top_up.json()["pay"]["simulator_pay"])

    views = {
        seller: (
            await payment.client.get("/deposits/me", headers=payment.auth(seller, Role.SELLER))
        ).json()
        for seller in (premium, plain)
    }
    assert [
        (v["category"], v["balance"], v["minimum"], v["below_minimum"], v["shortfall"])
        for v in (views[premium], views[plain])
    ] == [("premium", 15_000, 20_000, True, 5_000), ("books", 15_000, 10_000, False, 0)]
    # What catalog reads to delist or relist: each seller's own minimum.
    for seller, minimum in ((premium, 20_000), (plain, 10_000)):
        (changed,) = [
            e for e in await payment.deposit_events(seller) if isinstance(e, DepositChanged)
        ]
        assert (changed.balance, changed.minimum) == (15_000, minimum)


async def test_metrics_name_ledger_totals_and_refunds(payment: PaymentHarness) -> None:
    order = await reserved(payment, purchase(1_500))
    pay = (await payment.pay(order.buyer_id, order.order_id, "wechat_pay")).json()["pay"]
    await payment.client.post(pay["simulator_pay"])
    await payment.feed(order.refund_requested(f"r-{uuid4().hex[:6]}"))
    await payment.trial_balance()

    metrics = (await payment.client.get("/metrics")).text

    assert 'kami_ledger_balance_fen{account_type="escrow"} 0.0' in metrics
    assert 'kami_payment_refunds_total{reason="delivery_failed",source="escrow"}' in metrics
    assert "kami_payment_callbacks_total" in metrics
    assert PaymentChannel.WECHAT_PAY.value in metrics
