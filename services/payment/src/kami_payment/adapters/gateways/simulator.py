"""LOCAL STAND-IN FOR THE REAL PAYMENT GATEWAYS. Not part of Kami in production.

The local platform has no WeChat Pay or Alipay, so this module plays them: it
keeps the channels' trades (in its own database, as the channel's own books
would be), implements their server API (`GatewayApi`: create, query, close,
refund) and, when a "buyer pays" (`pay`), produces the notification the
channel would send, signed by the channel's notifier with the channel's copy
of the shared secret. The HTTP routes under `/simulator/...`
(`kami_payment.simulator_api`) let a person or a test pay, re-send a
notification (a duplicate or a late one), or raise a chargeback; they exist
only while `KAMI_PAYMENT_SIMULATOR_ENABLED` is true.

Like a real channel it refuses to pay a trade after its `expires_at` (it
closes it instead), pays a trade once, and refunds at most what was paid.
Its books are insert-only (docs/storage.md): a trade's outcome (paid or
closed) and its chargeback are each one document under a unique key, so a
payment racing a close is decided once; refunds are one document per refund
number.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import uuid4

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.catalogue.payment import PaymentChannel
from kami_events.clock import Clock, utc_now
from kami_events.mongo import Document
from kami_payment.adapters.gateways.base import SignedNotice, TradeState, TradeStatus


class SimulatorError(Exception):
    """The simulated channel refuses the operation (as the real one would answer an error)."""


@dataclass(frozen=True)
class SimulatedTrade:
    channel: PaymentChannel
    out_trade_no: str
    gateway_trade_no: str
    amount: int
    description: str
    status: TradeStatus
    created_at: datetime
    expires_at: datetime
    pay_url: str
    paid_at: datetime | None = None
    refunded: int = 0
    refund_numbers: tuple[str, ...] = field(default_factory=tuple)
    reversal_id: str | None = None
    reversed_amount: int = 0

    def state(self) -> TradeState:
        return TradeState(
            out_trade_no=self.out_trade_no,
            gateway_trade_no=self.gateway_trade_no,
            status=self.status,
            amount=self.amount,
            pay_url=self.pay_url,
            channel_reference=self.gateway_trade_no if self.status is TradeStatus.PAID else None,
        )


class TradeBook(Protocol):
    """The simulated channel's own books."""

    async def create(self, trade: SimulatedTrade) -> SimulatedTrade:
        """Store a new trade, or return the one with the same `out_trade_no`."""

    async def by_out_trade_no(
        self, channel: PaymentChannel, out_trade_no: str
    ) -> SimulatedTrade | None: ...

    async def by_gateway_trade_no(
        self, channel: PaymentChannel, gateway_trade_no: str
    ) -> SimulatedTrade | None: ...

    async def decide(
        self, trade: SimulatedTrade, outcome: TradeStatus, at: datetime
    ) -> SimulatedTrade:
        """End a waiting trade as paid or closed; the first decision wins and
        the trade is returned as decided."""

    async def add_refund(self, trade: SimulatedTrade, out_refund_no: str, amount: int) -> None:
        """Record a refund once per refund number."""

    async def set_reversal(
        self, trade: SimulatedTrade, reversal_id: str, amount: int
    ) -> SimulatedTrade:
        """Record the trade's one chargeback; the first wins and is returned."""


class Notifier(Protocol):
    def payment_notice(self, trade: TradeState, paid_at: datetime) -> SignedNotice: ...

    def reversal_notice(self, trade: TradeState, reversal_id: str, amount: int) -> SignedNotice: ...


_PAY_URLS = {
    PaymentChannel.WECHAT_PAY: "weixin://wxpay/bizpayurl?pr={trade_no}",
    PaymentChannel.ALIPAY: "https://openapi.alipay.example/gateway.do?trade_no={trade_no}",
}
_TRADE_PREFIX = {PaymentChannel.WECHAT_PAY: "wx", PaymentChannel.ALIPAY: "ali"}


class SimulatedGateway:
    """One simulated channel: its server API plus what its buyers and its risk
    department do (pay, chargeback)."""

    def __init__(
        self,
        channel: PaymentChannel,
        book: TradeBook,
        notifier: Notifier,
        *,
        clock: Clock = utc_now,
    ) -> None:
        if channel not in _PAY_URLS:
            raise ValueError(f"no simulator for {channel}")
        self.channel = channel
        self._book = book
        self._notifier = notifier
        self._clock = clock

    # -- the channel's server API (what Kami's adapter calls) ------------------

    async def create_trade(
        self, out_trade_no: str, amount: int, description: str, expires_at: datetime
    ) -> TradeState:
        trade_no = f"{_TRADE_PREFIX[self.channel]}{uuid4().hex}"
        trade = await self._book.create(
            SimulatedTrade(
                channel=self.channel,
                out_trade_no=out_trade_no,
                gateway_trade_no=trade_no,
                amount=amount,
                description=description[:128],
                status=TradeStatus.WAITING,
                created_at=self._clock(),
                expires_at=expires_at,
                pay_url=_PAY_URLS[self.channel].format(trade_no=trade_no),
            )
        )
        if trade.amount != amount:
            raise SimulatorError(f"out_trade_no {out_trade_no} was created for another amount")
        return trade.state()

    async def query_trade(self, out_trade_no: str) -> TradeState | None:
        trade = await self._book.by_out_trade_no(self.channel, out_trade_no)
        if trade is None:
            return None
        return (await self._close_if_expired(trade)).state()

    async def close_trade(self, out_trade_no: str) -> TradeState | None:
        trade = await self._book.by_out_trade_no(self.channel, out_trade_no)
        if trade is not None and trade.status is TradeStatus.WAITING:
            trade = await self._book.decide(trade, TradeStatus.CLOSED, self._clock())
        return trade.state() if trade else None

    async def refund(self, out_trade_no: str, out_refund_no: str, amount: int) -> None:
        trade = await self._book.by_out_trade_no(self.channel, out_trade_no)
        if trade is None or trade.status is not TradeStatus.PAID:
            raise SimulatorError(f"trade {out_trade_no} is not paid")
        if out_refund_no in trade.refund_numbers:
            return
        # Checked, not decided, here: a real channel enforces it; Kami's own ledger
        # never asks for more than it captured.
        if trade.refunded + trade.reversed_amount + amount > trade.amount:
            raise SimulatorError(f"refund {out_refund_no} exceeds what {out_trade_no} paid")
        await self._book.add_refund(trade, out_refund_no, amount)

    # -- what happens at the channel (the /simulator routes) -------------------

    async def pay(self, gateway_trade_no: str) -> SimulatedTrade:
        """The buyer pays the trade in the channel's app."""
        trade = await self._close_if_expired(await self._trade(gateway_trade_no))
        if trade.status is TradeStatus.WAITING:
            trade = await self._book.decide(trade, TradeStatus.PAID, self._clock())
        if trade.status is TradeStatus.CLOSED:
            raise SimulatorError(f"trade {gateway_trade_no} is closed")
        return trade

    async def payment_notice(self, gateway_trade_no: str) -> SignedNotice:
        """The notification of a paid trade, signed now (each delivery is signed afresh)."""
        trade = await self._trade(gateway_trade_no)
        if trade.status is not TradeStatus.PAID or trade.paid_at is None:
            raise SimulatorError(f"trade {gateway_trade_no} is not paid")
        return self._notifier.payment_notice(trade.state(), trade.paid_at)

    async def chargeback(self, gateway_trade_no: str, amount: int | None = None) -> SignedNotice:
        """The buyer's bank takes the money back; the channel notifies Kami
        (asked again, it notifies the same chargeback again)."""
        trade = await self._trade(gateway_trade_no)
        if trade.status is not TradeStatus.PAID:
            raise SimulatorError(f"trade {gateway_trade_no} is not paid")
        if trade.reversal_id is None:
            taken = trade.amount - trade.refunded if amount is None else amount
            if taken <= 0 or taken > trade.amount - trade.refunded:
                raise SimulatorError(f"nothing left to charge back on {gateway_trade_no}")
            trade = await self._book.set_reversal(trade, f"cb{uuid4().hex}", taken)
        assert trade.reversal_id is not None
        return self._notifier.reversal_notice(
            trade.state(), trade.reversal_id, trade.reversed_amount
        )

    async def trade(self, gateway_trade_no: str) -> SimulatedTrade:
        return await self._trade(gateway_trade_no)

    async def _trade(self, gateway_trade_no: str) -> SimulatedTrade:
        trade = await self._book.by_gateway_trade_no(self.channel, gateway_trade_no)
        if trade is None:
            raise SimulatorError(f"no {self.channel.value} trade {gateway_trade_no}")
        return trade

    async def _close_if_expired(self, trade: SimulatedTrade) -> SimulatedTrade:
        if trade.status is TradeStatus.WAITING and self._clock() >= trade.expires_at:
            return await self._book.decide(trade, TradeStatus.CLOSED, self._clock())
        return trade


class MongoTradeBook:
    """`simulated_trades` holds each trade as created (never updated);
    `simulated_trade_facts` what happened to it since, one document each under
    a unique key: `<trade>|outcome`, `<trade>|reversal`, `<trade>|refund|<no>`."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._trades: AsyncCollection[Document] = database["simulated_trades"]
        self._facts: AsyncCollection[Document] = database["simulated_trade_facts"]

    async def ensure_indexes(self) -> None:
        await self._trades.create_index(
            [("channel", ASCENDING), ("gateway_trade_no", ASCENDING)],
            unique=True,
            name="gateway_trade_no_unique",
        )
        await self._facts.create_index("trade", name="trade")

    async def create(self, trade: SimulatedTrade) -> SimulatedTrade:
        try:
            await self._trades.insert_one(
                {
                    "_id": _key(trade.channel, trade.out_trade_no),
                    "channel": trade.channel.value,
                    "out_trade_no": trade.out_trade_no,
                    "gateway_trade_no": trade.gateway_trade_no,
                    "amount": trade.amount,
                    "description": trade.description,
                    "created_at": trade.created_at,
                    "expires_at": trade.expires_at,
                    "pay_url": trade.pay_url,
                }
            )
        except DuplicateKeyError:
            existing = await self.by_out_trade_no(trade.channel, trade.out_trade_no)
            assert existing is not None
            return existing
        return trade

    async def by_out_trade_no(
        self, channel: PaymentChannel, out_trade_no: str
    ) -> SimulatedTrade | None:
        doc = await self._trades.find_one({"_id": _key(channel, out_trade_no)})
        return await self._with_facts(doc) if doc else None

    async def by_gateway_trade_no(
        self, channel: PaymentChannel, gateway_trade_no: str
    ) -> SimulatedTrade | None:
        doc = await self._trades.find_one(
            {"channel": channel.value, "gateway_trade_no": gateway_trade_no}
        )
        return await self._with_facts(doc) if doc else None

    async def decide(
        self, trade: SimulatedTrade, outcome: TradeStatus, at: datetime
    ) -> SimulatedTrade:
        await self._record(trade, "outcome", {"status": outcome.value, "at": at})
        return await self._reload(trade)

    async def add_refund(self, trade: SimulatedTrade, out_refund_no: str, amount: int) -> None:
        await self._record(
            trade, f"refund|{out_refund_no}", {"number": out_refund_no, "amount": amount}
        )

    async def set_reversal(
        self, trade: SimulatedTrade, reversal_id: str, amount: int
    ) -> SimulatedTrade:
        await self._record(trade, "reversal", {"reversal_id": reversal_id, "amount": amount})
        return await self._reload(trade)

    async def _record(self, trade: SimulatedTrade, fact: str, fields: Document) -> None:
        key = _key(trade.channel, trade.out_trade_no)
        # A duplicate key: it already happened, and the first one stands.
        with contextlib.suppress(DuplicateKeyError):
            await self._facts.insert_one(
                {"_id": f"{key}|{fact}", "trade": key, "fact": fact.split("|")[0], **fields}
            )

    async def _reload(self, trade: SimulatedTrade) -> SimulatedTrade:
        reloaded = await self.by_out_trade_no(trade.channel, trade.out_trade_no)
        assert reloaded is not None
        return reloaded

    async def _with_facts(self, doc: dict[str, Any]) -> SimulatedTrade:
        facts = await self._facts.find({"trade": doc["_id"]}).to_list()
        outcome = next((f for f in facts if f["fact"] == "outcome"), None)
        reversal = next((f for f in facts if f["fact"] == "reversal"), None)
        refunds = [f for f in facts if f["fact"] == "refund"]
        status = TradeStatus(outcome["status"]) if outcome else TradeStatus.WAITING
        return SimulatedTrade(
            channel=PaymentChannel(doc["channel"]),
            out_trade_no=doc["out_trade_no"],
            gateway_trade_no=doc["gateway_trade_no"],
            amount=int(doc["amount"]),
            description=doc["description"],
            status=status,
            created_at=doc["created_at"],
            expires_at=doc["expires_at"],
            pay_url=doc["pay_url"],
            paid_at=outcome["at"] if outcome and status is TradeStatus.PAID else None,
            refunded=sum(int(f["amount"]) for f in refunds),
            refund_numbers=tuple(f["number"] for f in refunds),
            reversal_id=reversal["reversal_id"] if reversal else None,
            reversed_amount=int(reversal["amount"]) if reversal else 0,
        )


def _key(channel: PaymentChannel, out_trade_no: str) -> str:
    return f"{channel.value}:{out_trade_no}"
