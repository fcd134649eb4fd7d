"""Payment channel callbacks that lie: forged (another secret, no signature),
tampered (a signed notice altered), stale (a captured notice replayed after
its window), misdirected (to the other channel, for an unknown trade) — each
refused, and none changes the ledger, the wallet, the payment or the order.
A genuine notice delivered again is a duplicate that changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from kami_events.catalogue.payment import PaymentChannel
from kami_events.clock import utc_now
from kami_market import order_state, until
from kami_payment.adapters.gateways.alipay import AlipayNotifier
from kami_payment.adapters.gateways.base import SignedNotice, TradeState, TradeStatus
from kami_payment.adapters.gateways.wechat_pay import WechatPayNotifier
from tests.security.world import BUYER, World, not_yet_known, place

SECRET_SETTING = {
    PaymentChannel.ALIPAY: "KAMI_PAYMENT_ALIPAY_SECRET",
    PaymentChannel.WECHAT_PAY: "KAMI_PAYMENT_WECHAT_PAY_SECRET",
}


def notifier(channel: PaymentChannel, secret: bytes, *, at_offset: timedelta = timedelta(0)) -> Any:
    def clock() -> Any:
        return utc_now() + at_offset

    if channel is PaymentChannel.ALIPAY:
        return AlipayNotifier(secret, clock=clock)
    return WechatPayNotifier(secret, clock=clock)


def tampered(channel: PaymentChannel, notice: SignedNotice, amount: int) -> SignedNotice:
    """The same signed notice with its amount changed (the signature kept)."""
    if channel is PaymentChannel.ALIPAY:
        fields = dict(parse_qsl(notice.body.decode()))
        fields["total_amount"] = f"{amount / 100:.2f}"
        return SignedNotice(notice.headers, urlencode(fields).encode())
    body = json.loads(notice.body)
    body["resource"]["amount"]["total"] = amount
    return SignedNotice(notice.headers, json.dumps(body, separators=(",", ":")).encode())


async def snapshot(world: World, order_id: str) -> dict[str, Any]:
    """What a callback could change: the order, its payment (captured,
    refunded, settled), the buyer's wallet and statement. (The ledger's
    totals move with every other order in flight; the audit after the test
    checks they balance.)"""
    order = await world.call(BUYER, "ordering", "GET", f"/orders/{order_id}")
    payment = await world.call(BUYER, "payment", "GET", f"/orders/{order_id}/payment")
    wallet = await world.call(BUYER, "payment", "GET", "/wallet")
    statement = await world.call(BUYER, "payment", "GET", "/wallet/statement")
    order_body = order.json()
    return {
        "order": (order_body["state"], order_body["version"], order_body["paid_amount"]),
        "payment": payment.json(),
        "wallet": wallet.json()["balance"],
        "statement": statement.json()["lines"],
    }


async def settled_snapshot(world: World, order_id: str) -> dict[str, Any]:
    """A snapshot once two in a row agree (other sessions' money may still be
    settling when we start)."""
    previous = await snapshot(world, order_id)
    while True:
        current = await snapshot(world, order_id)
        if current == previous:
            return current
        previous = current


@pytest.mark.parametrize("channel", [PaymentChannel.ALIPAY, PaymentChannel.WECHAT_PAY])
async def test_lying_callbacks_are_refused_and_change_nothing(
    audited: World, channel: PaymentChannel
) -> None:
    world = audited
    buyer = world.people[BUYER]
    order_id = await place(buyer, world.ids["offer"])
    await order_state(buyer, order_id, "RESERVED")
    started = await until(
        lambda: world.call(
            BUYER, "payment", "POST", "/payments", json={"order_id": order_id, "channel": channel}
        ),
        lambda r: not not_yet_known(r),
        what="payment to learn the order",
    )
    assert started.status_code == 200, started.text
    pay = started.json()["pay"]
    trade_body = (
        await world.client("payment").get(
            f"/simulator/{channel.value}/trades/{pay['gateway_trade_no']}"
        )
    ).json()
    trade = TradeState(
        out_trade_no=trade_body["out_trade_no"],
        gateway_trade_no=trade_body["gateway_trade_no"],
        status=TradeStatus.PAID,
        amount=trade_body["amount"],
    )
    secret = world.platform.secrets()[SECRET_SETTING[channel]].encode()
    genuine = notifier(channel, secret)
    other = PaymentChannel.WECHAT_PAY if channel is PaymentChannel.ALIPAY else PaymentChannel.ALIPAY
    unknown_trade = TradeState("no-such-trade", "gw-none", TradeStatus.PAID, trade.amount)
    lies: dict[str, tuple[str, SignedNotice, int]] = {
        "signed with another secret": (
            channel.value,
            notifier(channel, b"an-attacker-s-guess-of-the-secret!!").payment_notice(
                trade, utc_now()
            ),
            401,
        ),
        "unsigned": (channel.value, SignedNotice({}, b"{}"), 401),
        "amount raised after signing": (
            channel.value,
            tampered(channel, genuine.payment_notice(trade, utc_now()), trade.amount * 100),
            401,
        ),
        "amount lowered after signing": (
            channel.value,
            tampered(channel, genuine.payment_notice(trade, utc_now()), 1),
            401,
        ),
        "sent to the other channel": (
            other.value,
            genuine.payment_notice(trade, utc_now()),
            401,
        ),
        "genuine, for a trade Kami never opened": (
            channel.value,
            genuine.payment_notice(unknown_trade, utc_now()),
            404,
        ),
        "reversal signed with another secret": (
            f"{channel.value}/reversal",
            notifier(channel, b"an-attacker-s-guess-of-the-secret!!").reversal_notice(
                trade, "cb-1", trade.amount
            ),
            401,
        ),
    }
    if channel is PaymentChannel.WECHAT_PAY:
        # A notice captured on the wire and replayed after its window.
        lies["replayed ten minutes later"] = (
            channel.value,
            notifier(channel, secret, at_offset=-timedelta(minutes=10)).payment_notice(
                trade, utc_now()
            ),
            401,
        )

    before = await settled_snapshot(world, order_id)
    assert before["order"][0] == "RESERVED"
    for lie, (target, notice, status) in lies.items():
        answer = await world.client("payment").post(
            f"/callbacks/{target}", content=notice.body, headers=dict(notice.headers)
        )
        assert answer.status_code == status, f"{lie}: {answer.status_code} {answer.text}"
    assert await snapshot(world, order_id) == before, "a refused callback changed something"
    await order_state(buyer, order_id, "RESERVED")

    # The control: the buyer really pays; the channel's notice is accepted.
    paid = await world.client("payment").post(pay["simulator_pay"])
    assert paid.json()["callback"]["status_code"] == 200, paid.text
    await order_state(buyer, order_id, "DELIVERED")
    await until(
        lambda: world.call(BUYER, "payment", "GET", f"/orders/{order_id}/payment"),
        lambda r: r.json()["settled"] is True,
        what="the payment to be settled with the seller (at delivery)",
    )
    after_payment = await settled_snapshot(world, order_id)
    assert after_payment["payment"]["captured"] == trade.amount

    # The genuine notice again, re-signed by the channel and as a new
    # delivery: accepted as duplicates, nothing moves.
    for _ in range(3):
        notice = genuine.payment_notice(trade, utc_now())
        again = await world.client("payment").post(
            f"/callbacks/{channel.value}", content=notice.body, headers=dict(notice.headers)
        )
        assert again.status_code == 200, again.text
    resent = await world.client("payment").post(
        f"/simulator/{channel.value}/notify/{pay['gateway_trade_no']}"
    )
    assert resent.json()["callback"]["status_code"] == 200, resent.text
    assert await snapshot(world, order_id) == after_payment, "a duplicate notice moved money"
