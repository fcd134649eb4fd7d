"""In-memory stand-ins for the payment service's Mongo adapters, with the same
semantics (unique keys, conditional updates). Every method is atomic, as one
single-document write is; concurrency happens between awaits, as it does
against the real database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any
from uuid import uuid4

from kami_events.catalogue.identity import KycTier
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.catalogue.payment import PaymentChannel
from kami_payment.adapters.gateway_orders import GatewayOrder, GatewayOrderStatus
from kami_payment.adapters.gateways.base import TradeStatus
from kami_payment.adapters.gateways.simulator import SimulatedTrade
from kami_payment.adapters.journal import (
    JournalLine,
    LineInsert,
    LineKind,
    MovementState,
    StoredMovement,
)
from kami_payment.adapters.read_models import ResellerTerms, WalletCredential
from kami_payment.domain.ledger import Account, AccountType, Movement
from kami_payment.domain.parties import BuyerStanding, OrderStatus, OrderView, SellerAccount
from kami_payment.domain.wallet import PasswordFree


async def _yield() -> None:
    # Let other tasks run between reading and writing, as a network round trip would.
    await asyncio.sleep(0)


class InMemoryJournal:
    def __init__(self) -> None:
        self.movements: dict[str, StoredMovement] = {}
        self.lines_by_id: dict[str, tuple[LineKind, JournalLine | None]] = {}
        self.by_account: dict[Account, list[JournalLine]] = {}

    async def insert_movement(self, movement: Movement, now: datetime) -> StoredMovement:
        await _yield()
        existing = self.movements.get(movement.id)
        if existing is not None:
            return existing
        stored = StoredMovement(movement, MovementState.PENDING, False, now)
        self.movements[movement.id] = stored
        return replace(stored, fresh=True)

    async def get_movement(self, movement_id: str) -> StoredMovement | None:
        await _yield()
        return self.movements.get(movement_id)

    async def finish_movement(
        self, movement_id: str, state: MovementState, *, recorded: bool = False
    ) -> bool:
        stored = self.movements[movement_id]
        if stored.state is not MovementState.PENDING:
            return False
        self.movements[movement_id] = replace(
            stored, state=state, recorded=stored.recorded or recorded
        )
        return True

    async def mark_recorded(self, movement_id: str) -> None:
        self.movements[movement_id] = replace(self.movements[movement_id], recorded=True)

    async def unrecorded(
        self,
        *,
        created_before: datetime | None = None,
        payment_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredMovement]:
        found = [
            m
            for m in self.movements.values()
            if not m.recorded
            and (created_before is None or m.created_at < created_before)
            and (payment_id is None or m.movement.meta.get("payment_id") == payment_id)
        ]
        return sorted(found, key=lambda m: m.created_at)[:limit]

    async def count_in_flight(self) -> int:
        return sum(1 for m in self.movements.values() if m.state is MovementState.PENDING)

    async def line_kind(self, line_id: str) -> LineKind | None:
        await _yield()
        entry = self.lines_by_id.get(line_id)
        return entry[0] if entry else None

    async def last_line(
        self, account: Account, *, trust_remembered: bool = False
    ) -> JournalLine | None:
        await _yield()
        lines = self.by_account.get(account, [])
        return lines[-1] if lines else None

    async def insert_line(self, line: JournalLine) -> LineInsert:
        await _yield()
        if line.line_id in self.lines_by_id:
            return LineInsert.LINE_EXISTS
        lines = self.by_account.setdefault(line.account, [])
        if (lines[-1].seq if lines else 0) >= line.seq:
            return LineInsert.SEQ_TAKEN
        lines.append(line)
        self.lines_by_id[line.line_id] = (LineKind.POSTING, line)
        return LineInsert.INSERTED

    async def insert_rejection(
        self, line_id: str, movement_id: str, account: Account, now: datetime
    ) -> bool:
        await _yield()
        if line_id in self.lines_by_id:
            return False
        self.lines_by_id[line_id] = (LineKind.REJECTION, None)
        return True

    async def lines(
        self, accounts: Sequence[Account], *, limit: int, offset: int = 0
    ) -> list[JournalLine]:
        found = [line for a in accounts for line in self.by_account.get(a, [])]
        found.sort(key=lambda line: (line.at, line.seq), reverse=True)
        return found[offset : offset + limit]

    async def lines_after(self, account: Account, seq: int, limit: int) -> list[JournalLine]:
        return [line for line in self.by_account.get(account, []) if line.seq > seq][:limit]

    async def totals_by_type(self) -> dict[AccountType, int]:
        totals: dict[AccountType, int] = {}
        for account, lines in self.by_account.items():
            totals[account.type] = totals.get(account.type, 0) + sum(x.amount for x in lines)
        return totals

    def balance(self, account: Account) -> int:
        lines = self.by_account.get(account, [])
        return account.natural(lines[-1].balance_after) if lines else 0


class InMemoryResellerOrders:
    def __init__(self) -> None:
        self.terms: dict[str, ResellerTerms] = {}

    async def record(self, terms: ResellerTerms) -> None:
        self.terms.setdefault(terms.order_id, terms)

    async def get(self, order_id: str) -> ResellerTerms | None:
        return self.terms.get(order_id)


class InMemoryOrderBook:
    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}

    async def advance(self, order_id: str, status: OrderStatus, fields: dict[str, Any]) -> None:
        current = self.orders.get(order_id)
        if current is not None and current["rank"] >= status.rank:
            return
        self.orders[order_id] = {
            **(current or {}),
            **fields,
            "status": status.value,
            "rank": status.rank,
        }

    async def get(self, order_id: str) -> OrderView | None:
        doc = self.orders.get(order_id)
        if doc is None or "total" not in doc:
            return None
        return OrderView(
            order_id=order_id,
            buyer_id=doc["buyer_id"],
            seller_id=doc["seller_id"],
            total=doc["total"],
            status=OrderStatus(doc["status"]),
            payment_deadline=doc["payment_deadline"],
            reservation_expires_at=doc.get("reservation_expires_at"),
            traceparent=doc.get("traceparent"),
            discount=int(doc.get("discount") or 0),
            discount_funded_by=_funder(doc.get("discount_funded_by")),
        )


class InMemoryDepositStandings:
    def __init__(self) -> None:
        self.standings: dict[str, tuple[int, int, int]] = {}

    async def record(self, seller_id: str, version: int, balance: int, minimum: int) -> None:
        kept = self.standings.get(seller_id)
        if kept is None or kept[0] < version:
            self.standings[seller_id] = (version, balance, minimum)

    async def count_below_minimum(self) -> int:
        return sum(1 for _, balance, minimum in self.standings.values() if balance < minimum)


class InMemoryParties:
    def __init__(self) -> None:
        self.buyers: dict[str, dict[str, Any]] = {}
        self.sellers: dict[str, SellerAccount] = {}

    async def record_tier(self, user_id: str, tier: KycTier, daily_payment_limit: int) -> None:
        self.buyers.setdefault(user_id, {}).update(tier=tier, limit=daily_payment_limit)

    async def record_suspension(self, user_id: str, until: datetime | None) -> None:
        self.buyers.setdefault(user_id, {}).update(suspended=True, until=until)

    async def record_seller(
        self, user_id: str, shop_name: str, approved_at: datetime, category: str | None
    ) -> None:
        self.sellers[user_id] = SellerAccount(user_id, shop_name, approved_at, category)

    async def buyer(self, user_id: str, default_daily_limit: int) -> BuyerStanding:
        doc = self.buyers.get(user_id, {})
        return BuyerStanding(
            buyer_id=user_id,
            tier=doc.get("tier"),
            daily_payment_limit=doc.get("limit", default_daily_limit),
            suspended=doc.get("suspended", False),
            suspended_until=doc.get("until"),
        )

    async def seller(self, user_id: str) -> SellerAccount | None:
        return self.sellers.get(user_id)


class InMemoryDailySpend:
    def __init__(self) -> None:
        self.days: dict[tuple[str, date], dict[str, int]] = {}

    async def reserve(
        self, buyer_id: str, day: date, payment_id: str, amount: int, limit: int
    ) -> bool:
        payments = self.days.setdefault((buyer_id, day), {})
        if payment_id in payments:
            return True
        if sum(payments.values()) + amount > limit:
            return False
        payments[payment_id] = amount
        return True

    async def release(self, buyer_id: str, day: date, payment_id: str, amount: int) -> None:
        self.days.get((buyer_id, day), {}).pop(payment_id, None)

    async def spent(self, buyer_id: str, day: date) -> int:
        return sum(self.days.get((buyer_id, day), {}).values())


class InMemoryCredentials:
    def __init__(self) -> None:
        self.credentials: dict[str, WalletCredential] = {}
        self.slots: set[tuple[str, str, int]] = set()

    async def get(self, buyer_id: str) -> WalletCredential | None:
        return self.credentials.get(buyer_id)

    async def set_hash(self, buyer_id: str, password_hash: str) -> None:
        current = self.credentials.get(buyer_id)
        revision = current.revision + 1 if current is not None else 0
        self.credentials[buyer_id] = WalletCredential(
            buyer_id, password_hash, uuid4().hex, revision=revision
        )

    async def rehash(self, credential: WalletCredential, password_hash: str) -> bool:
        await _yield()
        current = self.credentials[credential.buyer_id]
        if current.revision != credential.revision:
            return False  # the revision after the checked one is taken
        self.credentials[credential.buyer_id] = WalletCredential(
            credential.buyer_id, password_hash, uuid4().hex, revision=credential.revision + 1
        )
        return True

    async def claim_attempt(self, credential: WalletCredential, max_attempts: int) -> int | None:
        for slot in range(1, max_attempts + 1):
            key = (credential.buyer_id, credential.generation, slot)
            await _yield()
            if key not in self.slots:
                self.slots.add(key)
                return slot
        return None

    async def new_generation(
        self, credential: WalletCredential, locked_until: datetime | None
    ) -> None:
        current = self.credentials[credential.buyer_id]
        if current.revision == credential.revision:  # a newer revision has its own
            self.credentials[credential.buyer_id] = replace(
                current, generation=uuid4().hex, locked_until=locked_until
            )


class InMemoryPasswordFreeSettings:
    def __init__(self) -> None:
        self.settings: dict[str, PasswordFree] = {}

    async def get(self, buyer_id: str) -> PasswordFree:
        return self.settings.get(buyer_id, PasswordFree())

    async def put(self, buyer_id: str, setting: PasswordFree, at: datetime) -> None:
        self.settings[buyer_id] = setting


class InMemoryGatewayOrders:
    def __init__(self) -> None:
        self.orders: dict[str, GatewayOrder] = {}

    async def open(self, order: GatewayOrder) -> GatewayOrder:
        return self.orders.setdefault(order.out_trade_no, order)

    async def attach_trade(self, out_trade_no: str, gateway_trade_no: str, pay_url: str) -> None:
        self.orders[out_trade_no] = self.orders[out_trade_no].with_trade(gateway_trade_no, pay_url)

    async def get(self, out_trade_no: str) -> GatewayOrder | None:
        return self.orders.get(out_trade_no)

    async def mark_paid(self, out_trade_no: str, amount: int, channel_reference: str) -> None:
        self.orders[out_trade_no] = replace(
            self.orders[out_trade_no],
            status=GatewayOrderStatus.PAID,
            captured_amount=amount,
            channel_reference=channel_reference,
        )

    async def mark_closed(self, out_trade_no: str) -> None:
        order = self.orders[out_trade_no]
        if order.status is GatewayOrderStatus.OPEN:
            self.orders[out_trade_no] = replace(order, status=GatewayOrderStatus.CLOSED)

    async def open_created_before(self, moment: datetime, limit: int = 100) -> list[GatewayOrder]:
        return [
            o
            for o in self.orders.values()
            if o.status is GatewayOrderStatus.OPEN and o.created_at < moment
        ][:limit]


class InMemoryTradeBook:
    def __init__(self) -> None:
        self.trades: dict[tuple[PaymentChannel, str], SimulatedTrade] = {}

    async def create(self, trade: SimulatedTrade) -> SimulatedTrade:
        return self.trades.setdefault((trade.channel, trade.out_trade_no), trade)

    async def by_out_trade_no(
        self, channel: PaymentChannel, out_trade_no: str
    ) -> SimulatedTrade | None:
        return self.trades.get((channel, out_trade_no))

    async def by_gateway_trade_no(
        self, channel: PaymentChannel, gateway_trade_no: str
    ) -> SimulatedTrade | None:
        return next(
            (
                t
                for t in self.trades.values()
                if t.channel is channel and t.gateway_trade_no == gateway_trade_no
            ),
            None,
        )

    async def decide(
        self, trade: SimulatedTrade, outcome: TradeStatus, at: datetime
    ) -> SimulatedTrade:
        current = self.trades[(trade.channel, trade.out_trade_no)]
        if current.status is TradeStatus.WAITING:
            current = replace(
                current, status=outcome, paid_at=at if outcome is TradeStatus.PAID else None
            )
            self.trades[(trade.channel, trade.out_trade_no)] = current
        return current

    async def add_refund(self, trade: SimulatedTrade, out_refund_no: str, amount: int) -> None:
        current = self.trades[(trade.channel, trade.out_trade_no)]
        if out_refund_no not in current.refund_numbers:
            self.trades[(trade.channel, trade.out_trade_no)] = replace(
                current,
                refunded=current.refunded + amount,
                refund_numbers=(*current.refund_numbers, out_refund_no),
            )

    async def set_reversal(
        self, trade: SimulatedTrade, reversal_id: str, amount: int
    ) -> SimulatedTrade:
        current = self.trades[(trade.channel, trade.out_trade_no)]
        if current.reversal_id is None:
            current = replace(current, reversal_id=reversal_id, reversed_amount=amount)
            self.trades[(trade.channel, trade.out_trade_no)] = current
        return current


def _funder(value: object) -> DiscountFunder | None:
    return DiscountFunder(value) if isinstance(value, str) else None
