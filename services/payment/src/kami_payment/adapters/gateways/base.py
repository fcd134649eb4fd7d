"""What the payment service needs from an external channel, whatever its wire format.

A channel is two things to Kami:

- its server API, which Kami calls (`GatewayApi`: create, query, close a
  trade, refund). Production adapters would call the channel over HTTPS; the
  local platform plugs in `kami_payment.adapters.gateways.simulator`;
- its asynchronous notifications, which the channel sends to Kami's callback
  URL. Each channel signs them its own way with its own secret; its adapter
  (`GatewayAdapter`) verifies and reads them, and answers in the format the
  channel expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from kami_events.catalogue.payment import PaymentChannel, ReversalReason


class NotificationRejected(Exception):
    """A notification that is not authentic or not readable: never acted upon."""


class TradeStatus(StrEnum):
    WAITING = "waiting"
    PAID = "paid"
    CLOSED = "closed"


@dataclass(frozen=True)
class TradeState:
    """A trade as the channel reports it."""

    out_trade_no: str
    gateway_trade_no: str
    status: TradeStatus
    amount: int
    pay_url: str = ""
    channel_reference: str | None = None


@dataclass(frozen=True)
class PaymentNotice:
    """A verified "trade paid" notification."""

    out_trade_no: str
    channel_reference: str
    amount: int
    paid: bool


@dataclass(frozen=True)
class ReversalNotice:
    """A verified notification that the channel took a payment back (chargeback)."""

    out_trade_no: str
    channel_reference: str
    reversal_id: str
    amount: int
    reason: ReversalReason


@dataclass(frozen=True)
class PayInstruction:
    """What the buyer's client needs to pay at the channel."""

    channel: PaymentChannel
    gateway_trade_no: str
    expires_at: datetime
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallbackAnswer:
    """The HTTP answer a channel expects from a callback URL."""

    status_code: int
    body: bytes
    media_type: str

    @property
    def accepted(self) -> bool:
        return self.status_code == 200


@dataclass(frozen=True)
class SignedNotice:
    """A notification as it travels: headers and body, signed by the channel."""

    headers: Mapping[str, str]
    body: bytes


class GatewayApi(Protocol):
    """A channel's server API as Kami calls it."""

    async def create_trade(
        self, out_trade_no: str, amount: int, description: str, expires_at: datetime
    ) -> TradeState:
        """Create (or return the existing) trade for `out_trade_no`."""

    async def query_trade(self, out_trade_no: str) -> TradeState | None: ...

    async def close_trade(self, out_trade_no: str) -> TradeState | None:
        """Close an unpaid trade; a paid one stays paid (and is returned as such)."""

    async def refund(self, out_trade_no: str, out_refund_no: str, amount: int) -> None:
        """Send `amount` back to the payer; idempotent by `out_refund_no`."""


class GatewayAdapter(Protocol):
    channel: PaymentChannel

    def pay_instruction(self, trade: TradeState, expires_at: datetime) -> PayInstruction: ...

    @property
    def api(self) -> GatewayApi: ...

    def read_payment_notice(self, headers: Mapping[str, str], body: bytes) -> PaymentNotice:
        """Verify and read a payment notification; raises `NotificationRejected`."""

    def read_reversal_notice(self, headers: Mapping[str, str], body: bytes) -> ReversalNotice:
        """Verify and read a reversal notification; raises `NotificationRejected`."""

    def accepted(self) -> CallbackAnswer: ...

    def refused(self, status_code: int, reason: str) -> CallbackAnswer: ...


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}
