"""The WeChat-Pay-like channel (`wechat_pay`).

Notifications are JSON, modelled on WeChat Pay API v3: an envelope with
`event_type` (`TRANSACTION.SUCCESS`, `TRANSACTION.CHARGEBACK`) around a
`resource` carrying `out_trade_no`, `transaction_id` and an integer `amount`
in fen. The signature travels in headers:

    Wechatpay-Timestamp: <unix seconds>
    Wechatpay-Nonce:     <random string>
    Wechatpay-Signature: base64(HMAC-SHA256(secret, "<timestamp>\\n<nonce>\\n<body>\\n"))

(WeChat signs with RSA; Kami's simulated channel uses an HMAC shared secret,
`KAMI_PAYMENT_WECHAT_PAY_SECRET`.) A timestamp more than five minutes off is
refused, so a captured notification cannot be replayed later; redeliveries
are signed afresh. Kami answers `{"code": "SUCCESS"}` with 200, anything else
makes the channel retry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kami_events.catalogue.payment import PaymentChannel, ReversalReason
from kami_events.clock import Clock, utc_now
from kami_payment.adapters.gateways.base import (
    CallbackAnswer,
    GatewayApi,
    NotificationRejected,
    PayInstruction,
    PaymentNotice,
    ReversalNotice,
    SignedNotice,
    TradeState,
    lower_keys,
)

CHANNEL = PaymentChannel.WECHAT_PAY
TIMESTAMP_HEADER = "Wechatpay-Timestamp"
NONCE_HEADER = "Wechatpay-Nonce"
SIGNATURE_HEADER = "Wechatpay-Signature"
MAX_CLOCK_SKEW = timedelta(minutes=5)

M = TypeVar("M", bound=BaseModel)


def signature(secret: bytes, timestamp: str, nonce: str, body: bytes) -> str:
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Amount(_Wire):
    total: int = Field(gt=0, strict=True)
    currency: Literal["CNY"]


class _Transaction(_Wire):
    out_trade_no: str = Field(min_length=1, max_length=64)
    transaction_id: str = Field(min_length=1, max_length=64)
    trade_state: str
    amount: _Amount


class _ChargebackAmount(_Wire):
    chargeback: int = Field(gt=0, strict=True)
    currency: Literal["CNY"]


class _Chargeback(_Wire):
    out_trade_no: str = Field(min_length=1, max_length=64)
    transaction_id: str = Field(min_length=1, max_length=64)
    chargeback_id: str = Field(min_length=1, max_length=64)
    amount: _ChargebackAmount
    reason: ReversalReason


class _PaymentEnvelope(_Wire):
    id: str
    event_type: Literal["TRANSACTION.SUCCESS"]
    resource: _Transaction


class _ChargebackEnvelope(_Wire):
    id: str
    event_type: Literal["TRANSACTION.CHARGEBACK"]
    resource: _Chargeback


class WechatPayAdapter:
    """Kami's side of the WeChat-Pay-like channel."""

    channel = CHANNEL

    def __init__(self, secret: bytes, api: GatewayApi, *, clock: Clock = utc_now) -> None:
        self._secret = secret
        self._api = api
        self._clock = clock

    @property
    def api(self) -> GatewayApi:
        return self._api

    def pay_instruction(self, trade: TradeState, expires_at: datetime) -> PayInstruction:
        return PayInstruction(
            channel=CHANNEL,
            gateway_trade_no=trade.gateway_trade_no,
            expires_at=expires_at,
            fields={"code_url": trade.pay_url},
        )

    def read_payment_notice(self, headers: Mapping[str, str], body: bytes) -> PaymentNotice:
        self._verify(headers, body)
        envelope = _parse(_PaymentEnvelope, body)
        resource = envelope.resource
        return PaymentNotice(
            out_trade_no=resource.out_trade_no,
            channel_reference=resource.transaction_id,
            amount=resource.amount.total,
            paid=resource.trade_state == "SUCCESS",
        )

    def read_reversal_notice(self, headers: Mapping[str, str], body: bytes) -> ReversalNotice:
        self._verify(headers, body)
        resource = _parse(_ChargebackEnvelope, body).resource
        return ReversalNotice(
            out_trade_no=resource.out_trade_no,
            channel_reference=resource.transaction_id,
            reversal_id=resource.chargeback_id,
            amount=resource.amount.chargeback,
            reason=resource.reason,
        )

    def accepted(self) -> CallbackAnswer:
        return CallbackAnswer(200, b'{"code":"SUCCESS","message":"OK"}', "application/json")

    def refused(self, status_code: int, reason: str) -> CallbackAnswer:
        body = json.dumps({"code": "FAIL", "message": reason}).encode()
        return CallbackAnswer(status_code, body, "application/json")

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        lowered = lower_keys(headers)
        timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
        nonce = lowered.get(NONCE_HEADER.lower(), "")
        given = lowered.get(SIGNATURE_HEADER.lower(), "")
        if not (timestamp and nonce and given):
            raise NotificationRejected("missing signature headers")
        expected = signature(self._secret, timestamp, nonce, body)
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise NotificationRejected("signature does not match")
        try:
            sent_at = datetime.fromtimestamp(int(timestamp), tz=self._clock().tzinfo)
        except (ValueError, OverflowError):
            raise NotificationRejected("timestamp is not unix seconds") from None
        if abs(self._clock() - sent_at) > MAX_CLOCK_SKEW:
            raise NotificationRejected("timestamp outside the accepted window")


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise NotificationRejected(f"unreadable notification: {exc.error_count()} errors") from None


class WechatPayNotifier:
    """The channel's side: signs notifications as WeChat-Pay-like would send them.
    Used by the local simulator."""

    def __init__(self, secret: bytes, *, clock: Clock = utc_now) -> None:
        self._secret = secret
        self._clock = clock

    def payment_notice(self, trade: TradeState, paid_at: datetime) -> SignedNotice:
        body = {
            "id": f"{trade.gateway_trade_no}-success",
            "create_time": self._clock().isoformat(),
            "event_type": "TRANSACTION.SUCCESS",
            "resource_type": "transaction",
            "resource": {
                "out_trade_no": trade.out_trade_no,
                "transaction_id": trade.channel_reference or trade.gateway_trade_no,
                "trade_state": "SUCCESS",
                "success_time": paid_at.isoformat(),
                "amount": {"total": trade.amount, "payer_total": trade.amount, "currency": "CNY"},
            },
        }
        return self._sign(body)

    def reversal_notice(self, trade: TradeState, reversal_id: str, amount: int) -> SignedNotice:
        body = {
            "id": f"{reversal_id}-chargeback",
            "create_time": self._clock().isoformat(),
            "event_type": "TRANSACTION.CHARGEBACK",
            "resource_type": "chargeback",
            "resource": {
                "out_trade_no": trade.out_trade_no,
                "transaction_id": trade.channel_reference or trade.gateway_trade_no,
                "chargeback_id": reversal_id,
                "amount": {"chargeback": amount, "currency": "CNY"},
                "reason": ReversalReason.CHARGEBACK.value,
            },
        }
        return self._sign(body)

    def _sign(self, body_object: object) -> SignedNotice:
        body = json.dumps(body_object, separators=(",", ":")).encode()
        timestamp = str(int(self._clock().timestamp()))
        nonce = secrets.token_hex(16)
        return SignedNotice(
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                NONCE_HEADER: nonce,
                SIGNATURE_HEADER: signature(self._secret, timestamp, nonce, body),
            },
            body=body,
        )
