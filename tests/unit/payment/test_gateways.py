"""Each channel's notifications: its own signature scheme and fields, verified
by its adapter; anything forged, tampered, stale or malformed is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest

from kami_events.catalogue.payment import PaymentChannel, ReversalReason
from kami_events.clock import ManualClock
from kami_payment.adapters.gateways.alipay import AlipayAdapter, AlipayNotifier, sign
from kami_payment.adapters.gateways.base import (
    NotificationRejected,
    SignedNotice,
    TradeState,
    TradeStatus,
)
from kami_payment.adapters.gateways.simulator import SimulatedGateway, SimulatorError
from kami_payment.adapters.gateways.wechat_pay import WechatPayAdapter, WechatPayNotifier
from tests.unit.payment.fakes import InMemoryTradeBook

SECRET = b"a-channel-secret-of-at-least-32-bytes!!"
NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
TRADE = TradeState(
    out_trade_no="0123456789abcdef0123456789abcdef",
    gateway_trade_no="trade-77",
    status=TradeStatus.PAID,
    amount=12_345,
    channel_reference="trade-77",
)


def wechat(clock: ManualClock | None = None) -> tuple[WechatPayAdapter, WechatPayNotifier]:
    clock = clock or ManualClock(NOW)
    api = SimulatedGateway(
        PaymentChannel.WECHAT_PAY, InMemoryTradeBook(), WechatPayNotifier(SECRET)
    )
    return WechatPayAdapter(SECRET, api, clock=clock), WechatPayNotifier(SECRET, clock=clock)


def alipay() -> tuple[AlipayAdapter, AlipayNotifier]:
    api = SimulatedGateway(PaymentChannel.ALIPAY, InMemoryTradeBook(), AlipayNotifier(SECRET))
    return AlipayAdapter(SECRET, api), AlipayNotifier(SECRET, clock=ManualClock(NOW))


def test_wechat_pay_notifications_are_read_in_fen_from_json() -> None:
    adapter, notifier = wechat()
    notice = adapter.read_payment_notice(*_parts(notifier.payment_notice(TRADE, NOW)))
    assert (notice.out_trade_no, notice.amount, notice.paid) == (TRADE.out_trade_no, 12_345, True)
    assert notice.channel_reference == "trade-77"
    assert json.loads(adapter.accepted().body) == {"code": "SUCCESS", "message": "OK"}


def test_alipay_notifications_are_read_from_a_form_with_yuan_amounts() -> None:
    adapter, notifier = alipay()
    signed = notifier.payment_notice(TRADE, NOW)
    assert dict(parse_qsl(signed.body.decode()))["total_amount"] == "123.45"
    notice = adapter.read_payment_notice(*_parts(signed))
    assert (notice.out_trade_no, notice.amount, notice.paid) == (TRADE.out_trade_no, 12_345, True)
    assert adapter.accepted().body == b"success"


def test_a_tampered_wechat_pay_amount_is_refused() -> None:
    adapter, notifier = wechat()
    signed = notifier.payment_notice(TRADE, NOW)
    tampered = signed.body.replace(b'"total":12345', b'"total":1')
    assert tampered != signed.body
    with pytest.raises(NotificationRejected, match="signature"):
        adapter.read_payment_notice(signed.headers, tampered)


def test_a_tampered_alipay_amount_is_refused() -> None:
    adapter, notifier = alipay()
    fields = dict(parse_qsl(notifier.payment_notice(TRADE, NOW).body.decode()))
    fields["total_amount"] = "0.01"
    with pytest.raises(NotificationRejected, match="signature"):
        adapter.read_payment_notice({}, urlencode(fields).encode())


@pytest.mark.parametrize("channel", ["wechat_pay", "alipay"])
def test_a_notification_signed_with_another_secret_is_refused(channel: str) -> None:
    forger_secret = b"not-the-channel-secret-at-all-0123456789"
    if channel == "wechat_pay":
        adapter_w, _ = wechat()
        forged = WechatPayNotifier(forger_secret, clock=ManualClock(NOW)).payment_notice(TRADE, NOW)
        with pytest.raises(NotificationRejected):
            adapter_w.read_payment_notice(*_parts(forged))
    else:
        adapter_a, _ = alipay()
        forged = AlipayNotifier(forger_secret, clock=ManualClock(NOW)).payment_notice(TRADE, NOW)
        with pytest.raises(NotificationRejected):
            adapter_a.read_payment_notice(*_parts(forged))


def test_one_channels_signature_means_nothing_to_the_other() -> None:
    wechat_adapter, _ = wechat()
    _, alipay_notifier = alipay()
    with pytest.raises(NotificationRejected):
        wechat_adapter.read_payment_notice(*_parts(alipay_notifier.payment_notice(TRADE, NOW)))


def test_a_replayed_wechat_pay_notification_outside_the_window_is_refused() -> None:
    clock = ManualClock(NOW)
    adapter, notifier = wechat(clock)
    signed = notifier.payment_notice(TRADE, NOW)
    clock.advance(timedelta(minutes=6))
    with pytest.raises(NotificationRejected, match="window"):
        adapter.read_payment_notice(*_parts(signed))


def test_missing_signature_headers_are_refused() -> None:
    adapter, notifier = wechat()
    signed = notifier.payment_notice(TRADE, NOW)
    with pytest.raises(NotificationRejected, match="missing"):
        adapter.read_payment_notice({"Content-Type": "application/json"}, signed.body)


def test_alipay_refuses_a_repeated_field_and_a_foreign_app() -> None:
    adapter, notifier = alipay()
    body = notifier.payment_notice(TRADE, NOW).body
    with pytest.raises(NotificationRejected, match="twice"):
        adapter.read_payment_notice({}, body + b"&out_trade_no=other")
    fields = dict(parse_qsl(body.decode()))
    fields["app_id"] = "someone-else"
    fields["sign"] = sign(SECRET, fields)
    with pytest.raises(NotificationRejected, match="another app"):
        adapter.read_payment_notice({}, urlencode(fields).encode())


def test_chargeback_notifications_of_both_channels() -> None:
    wechat_adapter, wechat_notifier = wechat()
    alipay_adapter, alipay_notifier = alipay()
    for adapter, notifier in ((wechat_adapter, wechat_notifier), (alipay_adapter, alipay_notifier)):
        notice = adapter.read_reversal_notice(
            *_parts(notifier.reversal_notice(TRADE, "cb-1", 12_000))
        )
        assert (notice.reversal_id, notice.amount, notice.reason) == (
            "cb-1",
            12_000,
            ReversalReason.CHARGEBACK,
        )
        # A payment notification is not a chargeback, even correctly signed.
        with pytest.raises(NotificationRejected):
            adapter.read_reversal_notice(*_parts(notifier.payment_notice(TRADE, NOW)))


async def test_the_simulated_channel_pays_once_and_never_after_expiry() -> None:
    clock = ManualClock(NOW)
    gateway = SimulatedGateway(
        PaymentChannel.ALIPAY, InMemoryTradeBook(), AlipayNotifier(SECRET, clock=clock), clock=clock
    )
    trade = await gateway.create_trade("out-1", 500, "order", NOW + timedelta(minutes=15))
    again = await gateway.create_trade("out-1", 500, "order", NOW + timedelta(minutes=15))
    assert again.gateway_trade_no == trade.gateway_trade_no
    with pytest.raises(SimulatorError):
        await gateway.create_trade("out-1", 600, "order", NOW + timedelta(minutes=15))
    late = await gateway.create_trade("out-2", 500, "order", NOW + timedelta(minutes=15))

    paid = await gateway.pay(trade.gateway_trade_no)
    assert paid.status is TradeStatus.PAID
    assert (await gateway.pay(trade.gateway_trade_no)).paid_at == paid.paid_at
    clock.advance(timedelta(minutes=16))
    with pytest.raises(SimulatorError, match="closed"):
        await gateway.pay(late.gateway_trade_no)
    state = await gateway.query_trade("out-2")
    assert state is not None and state.status is TradeStatus.CLOSED

    await gateway.refund("out-1", "r1", 300)
    await gateway.refund("out-1", "r1", 300)  # idempotent
    with pytest.raises(SimulatorError, match="exceeds"):
        await gateway.refund("out-1", "r2", 201)


def _parts(signed: SignedNotice) -> tuple[dict[str, str], bytes]:
    return dict(signed.headers), signed.body
