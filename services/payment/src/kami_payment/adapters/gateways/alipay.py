"""The Alipay-like channel (`alipay`).

Notifications are `application/x-www-form-urlencoded`, modelled on Alipay's
asynchronous notifications: `notify_type` (`trade_status_sync`,
`trade_chargeback`), `out_trade_no`, `trade_no`, `trade_status`
(`TRADE_SUCCESS`...) and amounts as yuan strings (`total_amount=12.34`).
The signature is a form field:

    sign_type=HMAC-SHA256
    sign=hex(HMAC-SHA256(secret, "k1=v1&k2=v2..."))   # every other non-empty
                                                      # field, sorted by name

(Alipay signs with RSA2; Kami's simulated channel uses an HMAC shared secret,
`KAMI_PAYMENT_ALIPAY_SECRET`.) Kami answers the plain text `success`;
anything else makes the channel retry.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

from kami_events.catalogue.payment import PaymentChannel, ReversalReason
from kami_events.clock import Clock, utc_now
from kami_events.money import Money
from kami_payment.adapters.gateways.base import (
    CallbackAnswer,
    GatewayApi,
    NotificationRejected,
    PayInstruction,
    PaymentNotice,
    ReversalNotice,
    SignedNotice,
    TradeState,
)

CHANNEL = PaymentChannel.ALIPAY
SIGN_TYPE = "HMAC-SHA256"
APP_ID = "kami-local"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})


def signing_content(fields: Mapping[str, str]) -> str:
    return "&".join(
        f"{key}={fields[key]}"
        for key in sorted(fields)
        if key not in ("sign", "sign_type") and fields[key] != ""
    )


def sign(secret: bytes, fields: Mapping[str, str]) -> str:
    return hmac.new(secret, signing_content(fields).encode(), hashlib.sha256).hexdigest()


class AlipayAdapter:
    """Kami's side of the Alipay-like channel."""

    channel = CHANNEL

    def __init__(self, secret: bytes, api: GatewayApi) -> None:
        self._secret = secret
        self._api = api

    @property
    def api(self) -> GatewayApi:
        return self._api

    def pay_instruction(self, trade: TradeState, expires_at: datetime) -> PayInstruction:
        return PayInstruction(
            channel=CHANNEL,
            gateway_trade_no=trade.gateway_trade_no,
            expires_at=expires_at,
            fields={"pay_url": trade.pay_url},
        )

    def read_payment_notice(self, headers: Mapping[str, str], body: bytes) -> PaymentNotice:
        fields = self._verified_fields(body)
        if fields.get("notify_type") != "trade_status_sync":
            raise NotificationRejected("not a trade status notification")
        return PaymentNotice(
            out_trade_no=_required(fields, "out_trade_no"),
            channel_reference=_required(fields, "trade_no"),
            amount=_fen(_required(fields, "total_amount")),
            paid=fields.get("trade_status") in PAID_STATUSES,
        )

    def read_reversal_notice(self, headers: Mapping[str, str], body: bytes) -> ReversalNotice:
        fields = self._verified_fields(body)
        if fields.get("notify_type") != "trade_chargeback":
            raise NotificationRejected("not a chargeback notification")
        try:
            reason = ReversalReason(fields.get("chargeback_reason", "chargeback"))
        except ValueError:
            raise NotificationRejected("unknown chargeback reason") from None
        return ReversalNotice(
            out_trade_no=_required(fields, "out_trade_no"),
            channel_reference=_required(fields, "trade_no"),
            reversal_id=_required(fields, "chargeback_no"),
            amount=_fen(_required(fields, "chargeback_amount")),
            reason=reason,
        )

    def accepted(self) -> CallbackAnswer:
        return CallbackAnswer(200, b"success", "text/plain")

    def refused(self, status_code: int, reason: str) -> CallbackAnswer:
        return CallbackAnswer(status_code, b"failure", "text/plain")

    def _verified_fields(self, body: bytes) -> dict[str, str]:
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise NotificationRejected("not a form-encoded notification") from None
        fields = dict(pairs)
        if len(fields) != len(pairs):
            raise NotificationRejected("a field appears twice")
        if fields.get("sign_type") != SIGN_TYPE:
            raise NotificationRejected(f"sign_type must be {SIGN_TYPE}")
        given = fields.get("sign", "")
        if not hmac.compare_digest(sign(self._secret, fields).encode(), given.encode()):
            raise NotificationRejected("signature does not match")
        if fields.get("app_id") != APP_ID:
            raise NotificationRejected("notification for another app")
        return fields


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value or len(value) > 64:
        raise NotificationRejected(f"missing or oversized {name}")
    return value


def _fen(yuan: str) -> int:
    try:
        amount = Money.parse_yuan(yuan).amount
    except ValueError:
        raise NotificationRejected(f"not an amount: {yuan!r}") from None
    if amount <= 0:
        raise NotificationRejected("amount must be positive")
    return amount


class AlipayNotifier:
    """The channel's side: signs notifications as Alipay-like would send them.
    Used by the local simulator."""

    def __init__(self, secret: bytes, *, clock: Clock = utc_now) -> None:
        self._secret = secret
        self._clock = clock

    def payment_notice(self, trade: TradeState, paid_at: datetime) -> SignedNotice:
        return self._sign(
            {
                "notify_type": "trade_status_sync",
                "notify_id": f"{trade.gateway_trade_no}-paid",
                "out_trade_no": trade.out_trade_no,
                "trade_no": trade.channel_reference or trade.gateway_trade_no,
                "trade_status": "TRADE_SUCCESS",
                "total_amount": Money.fen(trade.amount).yuan(),
                "receipt_amount": Money.fen(trade.amount).yuan(),
                "gmt_payment": paid_at.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )

    def reversal_notice(self, trade: TradeState, reversal_id: str, amount: int) -> SignedNotice:
        return self._sign(
            {
                "notify_type": "trade_chargeback",
                "notify_id": f"{reversal_id}-chargeback",
                "out_trade_no": trade.out_trade_no,
                "trade_no": trade.channel_reference or trade.gateway_trade_no,
                "chargeback_no": reversal_id,
                "chargeback_amount": Money.fen(amount).yuan(),
                "chargeback_reason": ReversalReason.CHARGEBACK.value,
            }
        )

    def _sign(self, fields: dict[str, str]) -> SignedNotice:
        fields = {
            **fields,
            "app_id": APP_ID,
            "charset": "utf-8",
            "version": "1.0",
            "notify_time": self._clock().strftime("%Y-%m-%d %H:%M:%S"),
            "sign_type": SIGN_TYPE,
        }
        fields["sign"] = sign(self._secret, fields)
        return SignedNotice(
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            body=urlencode(fields).encode(),
        )
