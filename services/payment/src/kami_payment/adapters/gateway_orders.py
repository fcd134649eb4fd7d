"""Kami's record of everything it asked a channel to collect (`gateway_orders`).

One document per `out_trade_no`, written *before* the channel is asked to
create the trade: a callback for a trade Kami never recorded is unknown and
refused, and the poller finds every trade whose callback never came.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.catalogue.payment import PaymentChannel
from kami_events.mongo import Document


class GatewayPurpose(StrEnum):
    ORDER_PAYMENT = "order_payment"
    WALLET_TOP_UP = "wallet_top_up"
    DEPOSIT_TOP_UP = "deposit_top_up"


class GatewayOrderStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    CLOSED = "closed"


@dataclass(frozen=True)
class GatewayOrder:
    out_trade_no: str
    channel: PaymentChannel
    purpose: GatewayPurpose
    owner_id: str
    amount: int
    created_at: datetime
    expires_at: datetime
    status: GatewayOrderStatus = GatewayOrderStatus.OPEN
    payment_id: str | None = None
    order_id: str | None = None
    gateway_trade_no: str | None = None
    pay_url: str | None = None
    captured_amount: int | None = None
    channel_reference: str | None = None

    def with_trade(self, gateway_trade_no: str, pay_url: str) -> GatewayOrder:
        return replace(self, gateway_trade_no=gateway_trade_no, pay_url=pay_url)


class GatewayOrders(Protocol):
    async def open(self, order: GatewayOrder) -> GatewayOrder:
        """Record a new gateway order, or return the one already under its number."""

    async def attach_trade(
        self, out_trade_no: str, gateway_trade_no: str, pay_url: str
    ) -> None: ...

    async def get(self, out_trade_no: str) -> GatewayOrder | None: ...

    async def mark_paid(self, out_trade_no: str, amount: int, channel_reference: str) -> None: ...

    async def mark_closed(self, out_trade_no: str) -> None:
        """Open → closed (a paid order stays paid)."""

    async def open_created_before(
        self, moment: datetime, limit: int = 100
    ) -> list[GatewayOrder]: ...


class MongoGatewayOrders:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._orders: AsyncCollection[Document] = database["gateway_orders"]

    async def ensure_indexes(self) -> None:
        await self._orders.create_index(
            [("status", ASCENDING), ("created_at", ASCENDING)], name="open_by_age"
        )

    async def open(self, order: GatewayOrder) -> GatewayOrder:
        try:
            await self._orders.insert_one(_document(order))
        except DuplicateKeyError:
            existing = await self.get(order.out_trade_no)
            assert existing is not None
            return existing
        return order

    async def attach_trade(self, out_trade_no: str, gateway_trade_no: str, pay_url: str) -> None:
        await self._orders.update_one(
            {"_id": out_trade_no},
            {"$set": {"gateway_trade_no": gateway_trade_no, "pay_url": pay_url}},
        )

    async def get(self, out_trade_no: str) -> GatewayOrder | None:
        doc = await self._orders.find_one({"_id": out_trade_no})
        return _order(doc) if doc else None

    async def mark_paid(self, out_trade_no: str, amount: int, channel_reference: str) -> None:
        await self._orders.update_one(
            {"_id": out_trade_no},
            {
                "$set": {
                    "status": GatewayOrderStatus.PAID.value,
                    "captured_amount": amount,
                    "channel_reference": channel_reference,
                }
            },
        )

    async def mark_closed(self, out_trade_no: str) -> None:
        await self._orders.update_one(
            {"_id": out_trade_no, "status": GatewayOrderStatus.OPEN.value},
            {"$set": {"status": GatewayOrderStatus.CLOSED.value}},
        )

    async def open_created_before(self, moment: datetime, limit: int = 100) -> list[GatewayOrder]:
        cursor = (
            self._orders.find(
                {"status": GatewayOrderStatus.OPEN.value, "created_at": {"$lt": moment}}
            )
            .sort("created_at", ASCENDING)
            .limit(limit)
        )
        return [_order(doc) async for doc in cursor]


def _document(order: GatewayOrder) -> Document:
    return {
        "_id": order.out_trade_no,
        "channel": order.channel.value,
        "purpose": order.purpose.value,
        "owner_id": order.owner_id,
        "amount": order.amount,
        "created_at": order.created_at,
        "expires_at": order.expires_at,
        "status": order.status.value,
        "payment_id": order.payment_id,
        "order_id": order.order_id,
        "gateway_trade_no": order.gateway_trade_no,
        "pay_url": order.pay_url,
        "captured_amount": order.captured_amount,
        "channel_reference": order.channel_reference,
    }


def _order(doc: dict[str, Any]) -> GatewayOrder:
    return GatewayOrder(
        out_trade_no=doc["_id"],
        channel=PaymentChannel(doc["channel"]),
        purpose=GatewayPurpose(doc["purpose"]),
        owner_id=doc["owner_id"],
        amount=int(doc["amount"]),
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        status=GatewayOrderStatus(doc["status"]),
        payment_id=doc.get("payment_id"),
        order_id=doc.get("order_id"),
        gateway_trade_no=doc.get("gateway_trade_no"),
        pay_url=doc.get("pay_url"),
        captured_amount=doc.get("captured_amount"),
        channel_reference=doc.get("channel_reference"),
    )
