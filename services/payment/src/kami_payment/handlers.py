"""The payment service's command and event handlers: load, decide, move money, record.

Every money flow has the same shape:

1. load the `Payment` (or `Deposit`) and let it *plan* (`plan_refund`,
   `plan_settlement`...): the domain decides amounts, sources and refusals;
2. turn the plan into a ledger movement (`kami_payment.domain.movements`)
   and apply it (`kami_payment.ledger`: idempotent by movement id,
   crash-safe, never overdrawing);
3. *record* it (`PaymentService.record`): the event the movement realises
   (`PaymentConfirmed`, `FundsSettled`, `PaymentRefunded`, `PaymentReversed`,
   `DepositChanged`...), then mark the movement recorded.

Step 3 is idempotent (the aggregate records a capture, a settlement, a
refund id or a reversal once), so the ledger sweeper can run it for any
movement a crash left unrecorded, and a retried request or redelivered event
simply finishes what the first attempt started. Before planning anything for
a payment, its unrecorded movements are recorded first (`_caught_up`), so the
aggregate never plans against a ledger it has not seen.

Verification (DESIGN §3, docs/saga.md): payment checks layer 1 — the
channel's signature or the wallet's payment password, and the exact amount —
and, before moving a wallet's money, that the order still awaits payment.
Layers 2 and 3 are ordering's, on `PaymentConfirmed`; when they fail it
requests the refund. Money a channel captured is always confirmed (even for
an intent that had failed), so it is never lost: ordering refunds it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from uuid import NAMESPACE_URL, uuid4, uuid5

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.identity import IdentityVerified, SellerApproved, UserSuspended
from kami_events.catalogue.ordering import (
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderEvent,
    OrderPaid,
    OrderPlaced,
    OrderRefundRequested,
    OrderReserved,
)
from kami_events.catalogue.payment import (
    DepositChangeCause,
    PaymentChannel,
    PaymentFailure,
    ReversalReason,
)
from kami_events.catalogue.reseller import ResellerOrderRequested
from kami_events.changes import Changes
from kami_events.clock import Clock, utc_now
from kami_events.event import Event
from kami_events.repository import AggregateRepository
from kami_events.store import CommitContext, ConcurrencyError, EventStore
from kami_events.tracing import continue_trace
from kami_payment.adapters.gateway_orders import (
    GatewayOrder,
    GatewayOrders,
    GatewayOrderStatus,
    GatewayPurpose,
)
from kami_payment.adapters.gateways.base import (
    CallbackAnswer,
    GatewayAdapter,
    NotificationRejected,
    PayInstruction,
    TradeStatus,
)
from kami_payment.adapters.journal import JournalLine, StoredMovement
from kami_payment.adapters.read_models import (
    Credentials,
    DailySpend,
    DepositStandings,
    OrderBook,
    Parties,
    PasswordFreeSettings,
    ResellerOrders,
    ResellerTerms,
    WalletCredential,
)
from kami_payment.domain import movements
from kami_payment.domain.deposit import Deposit, DepositLine
from kami_payment.domain.ledger import (
    Account,
    AccountType,
    Movement,
    MovementPurpose,
    buyer_wallet,
    escrow,
    seller_balance,
    seller_deposit,
    seller_receivable,
)
from kami_payment.domain.parties import (
    BuyerStanding,
    DepositMinimums,
    OrderStatus,
    OrderView,
    order_not_found,
    payment_day,
)
from kami_payment.domain.payment import (
    Destination,
    Payment,
    PaymentStatus,
    RefundPlan,
    ReversalPlan,
    SettlementPlan,
    payment_id_for,
)
from kami_payment.domain.refusals import RefusalKind, Refused
from kami_payment.domain.wallet import (
    PasswordFree,
    PasswordFreeBounds,
    check_payment_password,
    password_required,
)
from kami_payment.ledger import Ledger, TrialBalance
from kami_payment.metrics import (
    CALLBACKS,
    GATEWAY_POLLS,
    PAYMENTS,
    REFUNDED_FEN,
    REFUNDS,
    SETTLED_FEN,
)
from kami_web.passwords import PasswordChecksBusy

log = logging.getLogger(__name__)

_TOP_UP_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/payment/top-up")

_DEPOSIT_CAUSES = {
    MovementPurpose.DEPOSIT_TOP_UP: DepositChangeCause.TOP_UP,
    MovementPurpose.REFUND: DepositChangeCause.REFUND_DRAWN,
    MovementPurpose.CHARGEBACK_RECOVERY: DepositChangeCause.CHARGEBACK_RECOVERY,
}


class PasswordHashing(Protocol):
    def admitted(self) -> AbstractAsyncContextManager[None]:
        """A place in the bounded pool of checks, or `PasswordChecksBusy`."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...


@dataclass(frozen=True)
class PaymentPolicy:
    platform_fee_bps: int = 500
    settle_on: Literal["delivered", "completed"] = "delivered"
    # The deposit minimum of a seller with no category, or one not listed below.
    deposit_minimum: int = 100_000
    # Per seller category (`SellerApproved.category`), in fen.
    deposit_minimums: Mapping[str, int] = field(default_factory=dict)
    default_daily_limit: int = 50_000
    password_max_attempts: int = 5
    password_lock: timedelta = timedelta(minutes=30)
    top_up_max: int = 5_000_000
    top_up_ttl: timedelta = timedelta(minutes=30)
    callback_grace: timedelta = timedelta(seconds=30)
    movement_grace_seconds: float = 10.0
    reservation_wait_seconds: float = 5.0
    password_free: PasswordFreeBounds = field(default_factory=PasswordFreeBounds)

    def minimums(self) -> DepositMinimums:
        return DepositMinimums(self.deposit_minimum, self.deposit_minimums)


@dataclass(frozen=True)
class PasswordCheck:
    ok: bool
    attempts_left: int = 0
    # Set when wallet payments are locked (by this check or before it).
    locked_until: datetime | None = None


@dataclass(frozen=True)
class PaymentOutcome:
    payment: Payment
    instruction: PayInstruction | None = None


@dataclass(frozen=True)
class TopUpOutcome:
    top_up: GatewayOrder
    instruction: PayInstruction


@dataclass(frozen=True)
class WalletView:
    buyer_id: str
    balance: int
    has_payment_password: bool
    locked_until: datetime | None
    daily_payment_limit: int
    spent_today: int


@dataclass(frozen=True)
class PasswordFreeView:
    setting: PasswordFree
    spent_today: int
    bounds: PasswordFreeBounds


@dataclass(frozen=True)
class DepositView:
    seller_id: str
    balance: int
    minimum: int
    owed: int
    seller_balance: int
    category: str | None = None

    @property
    def shortfall(self) -> int:
        return max(0, self.minimum - self.balance)


# How often a payment waiting for its order's reservation reads the order again.
RESERVATION_RECHECK_SECONDS = 0.5


class PaymentService:
    def __init__(
        self,
        *,
        store: EventStore,
        ledger: Ledger,
        orders: OrderBook,
        parties: Parties,
        daily_spend: DailySpend,
        credentials: Credentials,
        hasher: PasswordHashing,
        gateway_orders: GatewayOrders,
        gateways: Mapping[PaymentChannel, GatewayAdapter],
        policy: PaymentPolicy,
        standings: DepositStandings,
        password_free: PasswordFreeSettings,
        password_free_spend: DailySpend,
        clock: Clock = utc_now,
        reseller_orders: ResellerOrders | None = None,
    ) -> None:
        self.reseller_orders = reseller_orders
        # Requests waiting for an order's reservation, woken by the consumer.
        self.order_changes = Changes()
        self.payments = AggregateRepository(store, Payment)
        self.deposits = AggregateRepository(store, Deposit)
        self.ledger = ledger
        self.orders = orders
        self.parties = parties
        self.daily_spend = daily_spend
        self.credentials = credentials
        self.hasher = hasher
        self.gateway_orders = gateway_orders
        self.gateways = gateways
        self.policy = policy
        self.standings = standings
        self.password_free = password_free
        self.password_free_spend = password_free_spend
        self.clock = clock

    # -- what other services told us ------------------------------------------

    async def on_order_event(self, event: Event, context: CommitContext) -> None:
        try:
            await self._on_order_event(event, context)
        finally:
            self.order_changes.changed(getattr(event, "order_id", ""))

    async def _on_order_event(self, event: Event, context: CommitContext) -> None:
        match event:
            case OrderPlaced():
                await self.orders.advance(
                    event.order_id,
                    OrderStatus.PLACED,
                    {
                        "buyer_id": event.buyer_id,
                        "seller_id": event.seller_id,
                        "total": event.total,
                        "payment_deadline": event.payment_deadline,
                        "traceparent": context.traceparent,
                    },
                )
            case OrderReserved():
                await self.orders.advance(
                    event.order_id,
                    OrderStatus.RESERVED,
                    {
                        "buyer_id": event.buyer_id,
                        "seller_id": event.seller_id,
                        "total": event.total,
                        "discount": event.discount,
                        "discount_funded_by": (
                            event.discount_funded_by.value if event.discount_funded_by else None
                        ),
                        "payment_deadline": event.payment_deadline,
                        "reservation_expires_at": event.reservation_expires_at,
                        "traceparent": context.traceparent,
                    },
                )
                await self.pay_reseller_order(event.order_id, context)
            # The book keeps what decides whether an order can be paid: once
            # payment confirmed it, its own payment says so, and the saga's
            # later states change nothing payment decides (no write for them).
            case OrderPaid():
                pass
            case OrderDelivered():
                if self.policy.settle_on == "delivered":
                    await self.settle(event.order_id, context)
            case OrderCompleted():
                if self.policy.settle_on == "completed":
                    await self.settle(event.order_id, context)
            case OrderCancelled():
                await self._advance(event.order_id, OrderStatus.CANCELLED, event)
                await self.abandon_intent(event.order_id, context)
            case OrderRefundRequested():
                await self._advance(event.order_id, OrderStatus.REFUND_REQUESTED, event)
                await self.refund(event, context)
            case _:
                raise TypeError(f"payment does not handle {event.event_type}")

    async def on_reseller_order_requested(
        self, event: ResellerOrderRequested, context: CommitContext
    ) -> None:
        """Remember what the reseller pays; if ordering reserved the order first
        (the two topics race), pay it now."""
        if self.reseller_orders is None:
            return
        await self.reseller_orders.record(
            ResellerTerms(
                order_id=event.order_id,
                reseller_id=event.reseller_id,
                user_id=event.user_id,
                total=event.total,
                reseller_total=event.reseller_total,
            )
        )
        await self.pay_reseller_order(event.order_id, context)

    async def pay_reseller_order(self, order_id: str, context: CommitContext) -> None:
        """A reseller's order, reserved: capture the reseller price from its prepaid
        balance (offer price to escrow, margin to its margin account), or fail the
        payment (ordering then cancels and releases the keys). Idempotent: one
        payment per order, one capture movement per payment."""
        if self.reseller_orders is None:
            return
        terms = await self.reseller_orders.get(order_id)
        if terms is None:
            return  # not a reseller's order (or not known yet: its event pays it)
        order = await self.orders.get(order_id)
        if order is None or order.status is not OrderStatus.RESERVED:
            return
        if order.buyer_id != terms.user_id:
            return  # ordering placed it for someone else: never charge the reseller
        payment = await self.payments.get(payment_id_for(order_id))
        if payment is not None and payment.status is not PaymentStatus.INITIATED:
            return  # already captured or failed
        if payment is None:
            payment = await self._initiate(order, PaymentChannel.WALLET, context)
        # The reseller price was computed from the offer price the reseller service
        # saw; if the order's total (ordering's price) is higher, the margin would
        # be negative: the reseller is not charged more than it agreed to.
        reseller_total = max(terms.reseller_total, 0)
        if reseller_total < order.total:
            await self._fail(
                payment.id,
                PaymentFailure.AMOUNT_MISMATCH,
                "the offer's price rose above the reseller's price",
                context,
            )
            return

        async def plan(movement_id: str) -> Movement:
            return movements.reseller_capture(
                movement_id, payment, reseller_id=terms.reseller_id, reseller_total=reseller_total
            )

        stored = await self.ledger.execute_attempts(
            f"capture:{payment.id}", plan, replan_on_rejection=False, finish=False, plan_first=True
        )
        assert stored is not None
        await self.record(stored, context)
        if not stored.applied:
            await self._fail(
                payment.id,
                PaymentFailure.INSUFFICIENT_FUNDS,
                "the reseller's prepaid balance is too low",
                context,
            )

    async def _advance(self, order_id: str, status: OrderStatus, event: OrderEvent) -> None:
        fields = {"buyer_id": event.buyer_id, "seller_id": event.seller_id}
        await self.orders.advance(order_id, status, fields)

    async def on_identity_event(self, event: Event) -> None:
        match event:
            case IdentityVerified():
                await self.parties.record_tier(event.user_id, event.tier, event.daily_payment_limit)
            case UserSuspended():
                await self.parties.record_suspension(event.user_id, event.until)
            case SellerApproved():
                await self.parties.record_seller(
                    event.user_id, event.shop_name, self.clock(), event.category
                )
            case _:
                raise TypeError(f"payment does not handle {event.event_type}")

    # -- paying an order --------------------------------------------------------

    async def pay(
        self,
        *,
        buyer_id: str,
        order_id: str,
        channel: PaymentChannel,
        payment_password: str | None,
        request_id: str,
    ) -> PaymentOutcome:
        """`POST /payments`: start (or continue) paying an order."""
        if channel is not PaymentChannel.WALLET and channel not in self.gateways:
            raise Refused(
                "channel_unavailable",
                f"Channel {channel.value} is not offered; use wallet, "
                + ", ".join(c.value for c in self.gateways),
                RefusalKind.INVALID,
            )
        order = await self._order_to_pay(order_id)
        if order is None or order.buyer_id != buyer_id:
            raise order_not_found(order_id)
        # Paying is part of the order's purchase: it joins the order's trace.
        with continue_trace(order.traceparent, "pay order", {"kami.order_id": order_id}):
            return await self._pay(order, channel, payment_password, request_id)

    async def _order_to_pay(self, order_id: str) -> OrderView | None:
        """The order as payment knows it. Ordering told the buyer it is
        reserved, and payment's consumer may be a moment behind: an order
        payment knows only as placed is waited for (woken by the consumer,
        read again each `RESERVATION_RECHECK_SECONDS` for another replica's),
        up to `reservation_wait_seconds`, instead of sending the buyer away."""
        return await self.order_changes.read_until(
            order_id,
            lambda: self.orders.get(order_id),
            lambda order: order is None or order.status is not OrderStatus.PLACED,
            timeout=self.policy.reservation_wait_seconds,
            recheck=RESERVATION_RECHECK_SECONDS,
        )

    async def _pay(
        self,
        order: OrderView,
        channel: PaymentChannel,
        payment_password: str | None,
        request_id: str,
    ) -> PaymentOutcome:
        order_id, buyer_id = order.order_id, order.buyer_id
        context = CommitContext(
            correlation_id=order_id, causation_id=request_id, traceparent=order.traceparent
        )
        payment = await self.payments.get(payment_id_for(order_id))
        if payment is not None:
            if payment.status is PaymentStatus.CONFIRMED:
                return PaymentOutcome(payment)  # already paid: the same answer again
            self._check_open(payment, channel)
        order.check_payable_by(buyer_id, self.clock())
        if payment is None:
            payment = await self._initiate(order, channel, context)
        buyer = await self.parties.buyer(buyer_id, self.policy.default_daily_limit)
        if buyer.is_suspended(self.clock()):
            await self._fail(payment.id, PaymentFailure.BUYER_SUSPENDED, "buyer suspended", context)
            raise Refused(
                "buyer_suspended",
                "Your account is suspended: it cannot pay.",
                RefusalKind.FORBIDDEN,
            )
        if channel is PaymentChannel.WALLET:
            return await self._pay_from_wallet(payment, buyer, payment_password, context)
        return await self._pay_by_gateway(payment, buyer, context)

    @staticmethod
    def _check_open(payment: Payment, channel: PaymentChannel) -> None:
        if payment.status is PaymentStatus.FAILED:
            reason = payment.failure.value if payment.failure else "failed"
            raise Refused(
                "payment_failed",
                f"Paying this order failed ({reason}); the order will be cancelled.",
            )
        if payment.channel is not channel:
            raise Refused(
                "channel_already_chosen",
                f"This order's payment was started with {payment.channel.value}; finish it there.",
            )

    async def _initiate(
        self, order: OrderView, channel: PaymentChannel, context: CommitContext
    ) -> Payment:
        payment = Payment.initiate(
            order_id=order.order_id,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            amount=order.total,  # always the order's total, never a figure from the client
            channel=channel,
            expires_at=order.payment_deadline,
            discount=order.discount,
            discount_funded_by=order.discount_funded_by,
        )
        try:
            await self.payments.save(payment, context)
        except ConcurrencyError:
            # A concurrent request created it first: continue with that one.
            existing = await self.payments.get(payment.id)
            assert existing is not None
            self._check_open(existing, channel)
            return existing
        return payment

    async def _pay_from_wallet(
        self,
        payment: Payment,
        buyer: BuyerStanding,
        password: str | None,
        context: CommitContext,
    ) -> PaymentOutcome:
        if password:
            await self._check_second_factor(payment, buyer.buyer_id, password, context)
            password_free_at = None
        else:
            password_free_at = await self._waive_second_factor(payment)
        try:
            counted_at = await self._count_against_limit(payment, buyer, context)
        except Refused:
            if password_free_at is not None:
                await self.password_free_spend.release(
                    payment.buyer_id, payment_day(password_free_at), payment.id, payment.amount
                )
            raise

        async def plan(movement_id: str) -> Movement:
            return movements.wallet_capture(
                movement_id, payment, counted_at=counted_at, password_free_at=password_free_at
            )

        stored = await self.ledger.execute_attempts(
            f"capture:{payment.id}", plan, replan_on_rejection=False, finish=False, plan_first=True
        )
        assert stored is not None
        await self.record(stored, context)
        if not stored.applied:
            balance = await self.ledger.balance(buyer_wallet(buyer.buyer_id))
            raise Refused(
                "insufficient_funds",
                f"Your wallet holds {balance} fen and this order costs {payment.amount} fen; "
                "top up and pay again before the payment deadline.",
            )
        return PaymentOutcome(await self._load(payment.id))

    async def _check_second_factor(
        self, payment: Payment, buyer_id: str, password: str, context: CommitContext
    ) -> None:
        """Layer 1 for the wallet: the payment password. Each wrong one is a 403
        saying how many tries are left; the last one fails the payment
        (`second_factor_failed`) and locks wallet payments for a while."""
        credential = await self.credentials.get(buyer_id)
        if credential is None:
            raise Refused(
                "payment_password_not_set",
                "Set a payment password first (PUT /wallet/payment-password).",
            )
        check = await self._check_password(credential, password)
        if check.ok:
            return
        if check.locked_until is not None:
            await self._fail(
                payment.id,
                PaymentFailure.SECOND_FACTOR_FAILED,
                f"{self.policy.password_max_attempts} wrong payment passwords",
                context,
            )
            raise Refused(
                "payment_password_locked",
                "Too many wrong payment passwords: wallet payments are locked until "
                f"{check.locked_until.isoformat()}.",
                RefusalKind.FORBIDDEN,
            )
        raise Refused(
            "wrong_payment_password",
            f"Wrong payment password; {check.attempts_left} attempt(s) left before this "
            "payment fails.",
            RefusalKind.FORBIDDEN,
        )

    async def _waive_second_factor(self, payment: Payment) -> datetime:
        """A wallet payment without the password: allowed within the buyer's
        password-free setting, counted against its daily cap (the same
        race-safe journal as the daily limit), else a 422 asking for the
        password with nothing changed. Returns when it was counted."""
        setting = await self.password_free.get(payment.buyer_id)
        refusal = setting.refusal_for(payment.amount)
        if refusal is not None:
            raise refusal
        now = self.clock()
        credential = await self.credentials.get(payment.buyer_id)
        if credential is not None and credential.locked(now):
            # Wrong passwords locked the wallet: no way around it without one.
            raise Refused(
                "payment_password_locked",
                "Too many wrong payment passwords: wallet payments are locked until "
                f"{credential.locked_until.isoformat() if credential.locked_until else ''}.",
                RefusalKind.FORBIDDEN,
            )
        day = payment_day(now)
        if not await self.password_free_spend.reserve(
            payment.buyer_id, day, payment.id, payment.amount, setting.daily_cap
        ):
            spent = await self.password_free_spend.spent(payment.buyer_id, day)
            raise setting.over_cap(payment.amount, spent)
        return now

    @asynccontextmanager
    async def _password_check_admitted(self) -> AsyncIterator[None]:
        """A place in the bounded pool of argon2 checks, taken before anything
        (an attempt slot) changes, or a 429 the buyer may simply retry."""
        try:
            async with self.hasher.admitted():
                yield
        except PasswordChecksBusy as busy:
            raise Refused(
                "payment_password_checks_busy",
                f"Too many payment passwords are being checked right now; nothing was done, "
                f"retry in {busy.retry_after} s.",
                RefusalKind.BUSY,
                retry_after=busy.retry_after,
            ) from None

    async def _check_password(self, credential: WalletCredential, password: str) -> PasswordCheck:
        async with self._password_check_admitted():
            return await self._check_password_admitted(credential, password)

    async def _check_password_admitted(
        self, credential: WalletCredential, password: str
    ) -> PasswordCheck:
        """Check a payment password, at most `password_max_attempts` times per run
        of attempts however many race: each takes a numbered slot first, and one
        finding no slot free is refused unchecked. A right password starts a
        new run; a wrong one in the last slot locks wallet payments."""
        now = self.clock()
        if credential.locked(now):
            return PasswordCheck(ok=False, locked_until=credential.locked_until)
        limit = self.policy.password_max_attempts
        slot = await self.credentials.claim_attempt(credential, limit)
        if slot is None:
            # Every slot is held by attempts racing this one: not checked at all.
            raise Refused(
                "payment_password_busy",
                "Too many payment attempts at once; retry in a moment.",
            )
        if await self.hasher.verify(credential.password_hash, password):
            await self.credentials.new_generation(credential, locked_until=None)
            if self.hasher.needs_rehash(credential.password_hash):
                # Hashed under older parameters: store it under today's. Only as
                # the revision after the one just checked, so a password changed
                # meanwhile is never overwritten (then the rehash is dropped).
                await self.credentials.rehash(credential, await self.hasher.hash(password))
            return PasswordCheck(ok=True)
        if slot >= limit:
            until = now + self.policy.password_lock
            await self.credentials.new_generation(credential, locked_until=until)
            return PasswordCheck(ok=False, locked_until=until)
        return PasswordCheck(ok=False, attempts_left=limit - slot)

    async def _count_against_limit(
        self, payment: Payment, buyer: BuyerStanding, context: CommitContext
    ) -> datetime:
        """Count the payment against today's limit of the buyer's tier, or fail
        it. Returns the moment it was counted at (its day is the one to release)."""
        now = self.clock()
        day = payment_day(now)
        if await self.daily_spend.reserve(
            buyer.buyer_id, day, payment.id, payment.amount, buyer.daily_payment_limit
        ):
            return now
        spent = await self.daily_spend.spent(buyer.buyer_id, day)
        tier = buyer.tier.value if buyer.tier else "none"
        message = (
            f"Paying {payment.amount} fen would bring today's payments to "
            f"{spent + payment.amount} fen, over the daily limit of "
            f"{buyer.daily_payment_limit} fen for verification tier {tier}."
        )
        await self._fail(payment.id, PaymentFailure.DAILY_LIMIT_EXCEEDED, message, context)
        raise Refused("daily_limit_exceeded", message, RefusalKind.FORBIDDEN)

    async def _pay_by_gateway(
        self, payment: Payment, buyer: BuyerStanding, context: CommitContext
    ) -> PaymentOutcome:
        adapter = self._adapter(payment.channel)
        gateway_order = await self.gateway_orders.get(payment.id)
        if gateway_order is None:
            await self._count_against_limit(payment, buyer, context)
            gateway_order = await self.gateway_orders.open(
                GatewayOrder(
                    out_trade_no=payment.id,
                    channel=payment.channel,
                    purpose=GatewayPurpose.ORDER_PAYMENT,
                    owner_id=payment.buyer_id,
                    amount=payment.amount,
                    created_at=self.clock(),
                    expires_at=payment.expires_at or self.clock(),
                    payment_id=payment.id,
                    order_id=payment.order_id,
                )
            )
        instruction = await self._create_trade(
            adapter, gateway_order, f"Kami order {payment.order_id}"
        )
        return PaymentOutcome(payment, instruction)

    async def _create_trade(
        self, adapter: GatewayAdapter, order: GatewayOrder, description: str
    ) -> PayInstruction:
        trade = await adapter.api.create_trade(
            order.out_trade_no, order.amount, description, order.expires_at
        )
        if order.gateway_trade_no != trade.gateway_trade_no:
            await self.gateway_orders.attach_trade(
                order.out_trade_no, trade.gateway_trade_no, trade.pay_url
            )
        return adapter.pay_instruction(trade, order.expires_at)

    async def set_payment_password(
        self, buyer_id: str, new_password: str, current_password: str | None
    ) -> None:
        """`PUT /wallet/payment-password`: set it, or change it with the current one."""
        check_payment_password(new_password)
        credential = await self.credentials.get(buyer_id)
        if credential is not None:
            if not current_password:
                raise Refused(
                    "current_password_required",
                    "Changing the payment password needs the current one.",
                    RefusalKind.INVALID,
                )
            check = await self._check_password(credential, current_password)
            if check.locked_until is not None:
                raise Refused(
                    "payment_password_locked",
                    "Too many wrong payment passwords: locked until "
                    f"{check.locked_until.isoformat()}.",
                    RefusalKind.FORBIDDEN,
                )
            if not check.ok:
                raise Refused(
                    "wrong_payment_password",
                    f"The current payment password is wrong; {check.attempts_left} "
                    "attempt(s) left.",
                    RefusalKind.FORBIDDEN,
                )
        async with self._password_check_admitted():
            password_hash = await self.hasher.hash(new_password)
        await self.credentials.set_hash(buyer_id, password_hash)

    async def password_free_setting(self, buyer_id: str) -> PasswordFreeView:
        """`GET /wallet/password-free`."""
        return PasswordFreeView(
            setting=await self.password_free.get(buyer_id),
            spent_today=await self.password_free_spend.spent(buyer_id, payment_day(self.clock())),
            bounds=self.policy.password_free,
        )

    async def set_password_free(
        self,
        buyer_id: str,
        *,
        enabled: bool,
        per_payment_limit: int | None,
        daily_cap: int | None,
        payment_password: str | None,
    ) -> PasswordFreeView:
        """`PUT /wallet/password-free`: turning it on or changing its limits
        takes the payment password; turning it off only the buyer's session."""
        if not enabled:
            await self.password_free.put(buyer_id, PasswordFree(), self.clock())
            return await self.password_free_setting(buyer_id)
        # The limits first: a refused setting costs no password attempt.
        setting = PasswordFree.enabled_with(per_payment_limit, daily_cap, self.policy.password_free)
        if not payment_password:
            raise password_required(
                "Turning on or changing password-free payments needs your payment password."
            )
        credential = await self.credentials.get(buyer_id)
        if credential is None:
            raise Refused(
                "payment_password_not_set",
                "Set a payment password first (PUT /wallet/payment-password).",
            )
        check = await self._check_password(credential, payment_password)
        if check.locked_until is not None:
            raise Refused(
                "payment_password_locked",
                f"Too many wrong payment passwords: locked until {check.locked_until.isoformat()}.",
                RefusalKind.FORBIDDEN,
            )
        if not check.ok:
            raise Refused(
                "wrong_payment_password",
                f"Wrong payment password; {check.attempts_left} attempt(s) left.",
                RefusalKind.FORBIDDEN,
            )
        await self.password_free.put(buyer_id, setting, self.clock())
        return await self.password_free_setting(buyer_id)

    # -- channel notifications --------------------------------------------------

    async def receive_payment_notice(
        self, channel: PaymentChannel, headers: Mapping[str, str], body: bytes
    ) -> CallbackAnswer:
        """`POST /callbacks/{channel}`: a channel says a trade was paid. Verified,
        matched to a trade Kami created, idempotent: a duplicate changes
        nothing and is still answered with success."""
        adapter = self._adapter(channel)
        try:
            notice = adapter.read_payment_notice(headers, body)
        except NotificationRejected as exc:
            log.warning("refused a %s payment notification: %s", channel.value, exc)
            CALLBACKS.labels(channel.value, "payment", "rejected").inc()
            return adapter.refused(401, str(exc))
        order = await self.gateway_orders.get(notice.out_trade_no)
        if order is None or order.channel is not channel:
            CALLBACKS.labels(channel.value, "payment", "unknown_trade").inc()
            return adapter.refused(404, f"unknown trade {notice.out_trade_no}")
        if not notice.paid:
            CALLBACKS.labels(channel.value, "payment", "not_paid").inc()
            return adapter.accepted()
        outcome = await self._capture(order, notice.amount, notice.channel_reference)
        CALLBACKS.labels(channel.value, "payment", outcome).inc()
        return adapter.accepted()

    async def _capture(
        self, order: GatewayOrder, amount: int, channel_reference: str
    ) -> Literal["captured", "duplicate"]:
        """Money a channel captured for `order` enters the ledger (once)."""
        purpose, credited, meta = self._capture_target(order)
        repays = None
        if purpose is MovementPurpose.DEPOSIT_TOP_UP:
            # A seller that owes (a refund its deposit could not cover) pays
            # that back first: its offers return only once the deposit, net of
            # the debt, is back at the minimum.
            receivable = seller_receivable(order.owner_id)
            repays = (receivable, await self.ledger.balance(receivable))
        movement = movements.gateway_capture(
            purpose=purpose,
            channel=order.channel,
            out_trade_no=order.out_trade_no,
            amount=amount,
            credited=credited,
            channel_reference=channel_reference,
            meta=meta,
            repays=repays,
        )
        existing = await self.ledger.get(movement.id)
        stored = await self.ledger.execute(movement, finish=False)
        if order.status is not GatewayOrderStatus.PAID:
            await self.gateway_orders.mark_paid(order.out_trade_no, amount, channel_reference)
        view = await self.orders.get(order.order_id) if order.order_id else None
        traceparent = view.traceparent if view else None
        context = CommitContext(
            correlation_id=order.order_id or order.out_trade_no,
            causation_id=f"{order.channel.value}:{channel_reference}",
            traceparent=traceparent,
        )
        # A channel's callback about an order's payment joins the order's trace.
        with continue_trace(traceparent, "capture payment", {"kami.channel": order.channel.value}):
            await self.record(stored, context)
        return "duplicate" if existing is not None else "captured"

    def _capture_target(
        self, order: GatewayOrder
    ) -> tuple[MovementPurpose, Account, dict[str, str | int | None]]:
        if order.purpose is GatewayPurpose.ORDER_PAYMENT:
            assert order.payment_id is not None
            return (
                MovementPurpose.PAYMENT_CAPTURE,
                escrow(order.payment_id),
                {"payment_id": order.payment_id, "order_id": order.order_id},
            )
        if order.purpose is GatewayPurpose.WALLET_TOP_UP:
            return (
                MovementPurpose.WALLET_TOP_UP,
                buyer_wallet(order.owner_id),
                {"owner_id": order.owner_id},
            )
        return (
            MovementPurpose.DEPOSIT_TOP_UP,
            seller_deposit(order.owner_id),
            {"owner_id": order.owner_id, "seller_id": order.owner_id},
        )

    async def receive_reversal_notice(
        self, channel: PaymentChannel, headers: Mapping[str, str], body: bytes
    ) -> CallbackAnswer:
        """`POST /callbacks/{channel}/reversal`: the channel took a payment back."""
        adapter = self._adapter(channel)
        try:
            notice = adapter.read_reversal_notice(headers, body)
        except NotificationRejected as exc:
            log.warning("refused a %s reversal notification: %s", channel.value, exc)
            CALLBACKS.labels(channel.value, "reversal", "rejected").inc()
            return adapter.refused(401, str(exc))
        order = await self.gateway_orders.get(notice.out_trade_no)
        if (
            order is None
            or order.channel is not channel
            or order.purpose is not GatewayPurpose.ORDER_PAYMENT
            or order.payment_id is None
        ):
            CALLBACKS.labels(channel.value, "reversal", "unknown_trade").inc()
            return adapter.refused(404, f"unknown payment trade {notice.out_trade_no}")
        payment_id = order.payment_id
        if order.status is not GatewayOrderStatus.PAID:
            # Out of order: the payment's own notification has not come yet.
            state = await adapter.api.query_trade(order.out_trade_no)
            if state is None or state.status is not TradeStatus.PAID:
                CALLBACKS.labels(channel.value, "reversal", "too_early").inc()
                return adapter.refused(409, "the payment is not captured yet; retry later")
            reference = state.channel_reference or notice.channel_reference
            await self._capture(order, state.amount, reference)

        async def plan(movement_id: str) -> Movement | None:
            payment = await self._caught_up(payment_id)
            reversal = payment.plan_reversal(notice.amount)
            if reversal is None:
                return None
            return movements.reversal(
                movement_id, payment, reversal, notice.reason, notice.channel_reference
            )

        try:
            stored = await self.ledger.execute_attempts(
                f"reversal:{payment_id}", plan, replan_on_rejection=True, finish=False
            )
        except Refused as exc:
            log.error("refused a %s reversal of %s: %s", channel.value, payment_id, exc.message)
            CALLBACKS.labels(channel.value, "reversal", "refused").inc()
            return adapter.refused(409, exc.message)
        if stored is None or stored.recorded:
            CALLBACKS.labels(channel.value, "reversal", "duplicate").inc()
            return adapter.accepted()
        payment = await self._load(payment_id)
        context = CommitContext(
            correlation_id=payment.order_id, causation_id=f"{channel.value}:{notice.reversal_id}"
        )
        await self.record(stored, context)
        CALLBACKS.labels(channel.value, "reversal", "reversed").inc()
        return adapter.accepted()

    # -- settlement and refunds (from ordering's events) -----------------------

    async def settle(self, order_id: str, context: CommitContext) -> None:
        """Escrow → seller balance, less the platform's fee (`FundsSettled`)."""
        payment_id = payment_id_for(order_id)
        if await self.payments.get(payment_id) is None:
            raise LookupError(f"order {order_id} was never paid through payment")

        async def plan(movement_id: str) -> Movement | None:
            payment = await self._caught_up(payment_id)
            settlement = payment.plan_settlement(self.policy.platform_fee_bps)
            if settlement is None:
                return None
            return movements.settlement(movement_id, payment, settlement)

        stored = await self.ledger.execute_attempts(
            f"settle:{payment_id}", plan, replan_on_rejection=True, finish=False, plan_first=True
        )
        if stored is not None:
            await self.record(stored, context)

    async def refund(self, request: OrderRefundRequested, context: CommitContext) -> None:
        """Money back to the buyer (or a chargeback recovered from the seller),
        once per `refund_id`, never more than was captured. Payment decides
        the source: escrow until settled, the seller's deposit after."""
        payment_id = request.payment_id
        payment = await self._caught_up(payment_id)
        if request.refund_id in payment.refunds:
            return
        without_movement: RefundPlan | None = None

        async def plan(movement_id: str) -> Movement | None:
            nonlocal without_movement
            payment = await self._caught_up(payment_id)
            if request.refund_id in payment.refunds:
                return None
            decision = payment.plan_refund(request.refund_id, request.amount, request.reason)
            if not decision.moves_money:
                without_movement = decision
                return None
            available = 0
            if decision.source is RefundSource.SELLER_DEPOSIT:
                available = await self.ledger.balance(seller_deposit(payment.seller_id))
            try:
                return movements.refund(movement_id, payment, decision, available)
            except movements.NothingToDraw:
                # The deposit is empty: the whole chargeback stays owed by the seller.
                without_movement = decision
                return None

        stored = await self.ledger.execute_attempts(
            f"refund:{request.refund_id}", plan, replan_on_rejection=True, finish=False
        )
        if stored is not None:
            await self.record(stored, context)
        elif without_movement is not None:
            decision = without_movement
            if await self._update_payment(payment_id, lambda p: p.record_refund(decision), context):
                _count_refund(decision)

    async def abandon_intent(self, order_id: str, context: CommitContext) -> None:
        """The order was cancelled: an unpaid intent can no longer be paid.
        A gateway trade is closed at the channel first — if the buyer paid in
        the meantime, the money is captured instead (and ordering refunds it)."""
        payment_id = payment_id_for(order_id)
        payment = await self.payments.get(payment_id)
        if payment is None or payment.status is not PaymentStatus.INITIATED:
            return
        order = await self.gateway_orders.get(payment_id)
        if order is None:
            await self._fail(
                payment_id, PaymentFailure.ORDER_NOT_PAYABLE, "the order was cancelled", context
            )
            return
        await self._close_gateway_order(order, PaymentFailure.ORDER_NOT_PAYABLE)

    async def _close_gateway_order(self, order: GatewayOrder, reason: PaymentFailure) -> None:
        adapter = self._adapter(order.channel)
        state = await adapter.api.close_trade(order.out_trade_no)
        if state is not None and state.status is TradeStatus.PAID:
            await self._capture(
                order, state.amount, state.channel_reference or state.gateway_trade_no
            )
            return
        await self.gateway_orders.mark_closed(order.out_trade_no)
        if order.purpose is GatewayPurpose.ORDER_PAYMENT and order.payment_id is not None:
            context = CommitContext(
                correlation_id=order.order_id or order.out_trade_no,
                causation_id=f"close:{order.out_trade_no}",
            )
            await self._fail(order.payment_id, reason, "the channel trade was closed", context)
            await self.daily_spend.release(
                order.owner_id, payment_day(order.created_at), order.payment_id, order.amount
            )

    # -- top-ups -----------------------------------------------------------------

    async def start_top_up(
        self,
        *,
        purpose: Literal[GatewayPurpose.WALLET_TOP_UP, GatewayPurpose.DEPOSIT_TOP_UP],
        owner_id: str,
        amount: int,
        channel: PaymentChannel,
        idempotency_key: str | None,
    ) -> TopUpOutcome:
        """`POST /wallet/top-ups` and `POST /deposits/top-ups`: a gateway trade
        whose signed callback credits the wallet or the deposit."""
        if purpose is GatewayPurpose.DEPOSIT_TOP_UP and await self.parties.seller(owner_id) is None:
            raise Refused(
                "seller_not_approved",
                "Only approved sellers keep a deposit.",
                RefusalKind.FORBIDDEN,
            )
        # A suspended account moves no money in either (fraud, chargebacks).
        standing = await self.parties.buyer(owner_id, self.policy.default_daily_limit)
        if standing.is_suspended(self.clock()):
            raise Refused(
                "account_suspended",
                "Your account is suspended: it cannot top up.",
                RefusalKind.FORBIDDEN,
            )
        if channel not in self.gateways:
            raise Refused(
                "channel_unavailable",
                "Top up through " + " or ".join(c.value for c in self.gateways) + ".",
                RefusalKind.INVALID,
            )
        if not 0 < amount <= self.policy.top_up_max:
            raise Refused(
                "invalid_amount",
                f"A top-up is 1 to {self.policy.top_up_max} fen.",
                RefusalKind.INVALID,
            )
        out_trade_no = (
            uuid5(_TOP_UP_NAMESPACE, f"{purpose.value}:{owner_id}:{idempotency_key}").hex
            if idempotency_key
            else uuid4().hex
        )
        now = self.clock()
        order = await self.gateway_orders.open(
            GatewayOrder(
                out_trade_no=out_trade_no,
                channel=channel,
                purpose=purpose,
                owner_id=owner_id,
                amount=amount,
                created_at=now,
                expires_at=now + self.policy.top_up_ttl,
            )
        )
        if (order.owner_id, order.purpose, order.amount, order.channel) != (
            owner_id,
            purpose,
            amount,
            channel,
        ):
            raise Refused(
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different top-up.",
            )
        what = "wallet" if purpose is GatewayPurpose.WALLET_TOP_UP else "deposit"
        instruction = await self._create_trade(self._adapter(channel), order, f"Kami {what} top-up")
        reloaded = await self.gateway_orders.get(out_trade_no)
        assert reloaded is not None
        return TopUpOutcome(reloaded, instruction)

    async def top_up(self, owner_id: str, top_up_id: str) -> GatewayOrder:
        order = await self.gateway_orders.get(top_up_id)
        if (
            order is None
            or order.owner_id != owner_id
            or order.purpose is GatewayPurpose.ORDER_PAYMENT
        ):
            raise Refused(
                "top_up_not_found", f"No top-up {top_up_id} of yours.", RefusalKind.NOT_FOUND
            )
        return order

    # -- recording what the ledger did -------------------------------------------

    async def record(self, stored: StoredMovement, context: CommitContext | None = None) -> None:
        """Record the event a movement realises (idempotent), then finish it
        as recorded (one write, `Ledger.finish`).

        The live path calls this right after applying a movement's lines; the
        sweeper calls it for movements a crash left unfinished or unrecorded."""
        if stored.recorded:
            return
        stored = await self.ledger.decide(stored)
        movement = stored.movement
        meta = movement.meta
        order_id = meta.get("order_id")
        context = context or CommitContext(
            correlation_id=order_id if isinstance(order_id, str) else movement.id,
            causation_id=movement.id,
        )
        if stored.applied:
            await self._record_applied(stored, context)
            for account in movement.touches(AccountType.SELLER_DEPOSIT):
                await self.sync_deposit(account.owner, context)
        elif movement.purpose is MovementPurpose.PAYMENT_CAPTURE and "limit_counted_at" in meta:
            # A wallet short of funds: the payment no longer counts against today.
            payment = await self._load(stored.meta_str("payment_id"))
            counted_at = datetime.fromisoformat(stored.meta_str("limit_counted_at"))
            await self.daily_spend.release(
                payment.buyer_id, payment_day(counted_at), payment.id, payment.amount
            )
            if "password_free_counted_at" in meta:
                waived_at = datetime.fromisoformat(stored.meta_str("password_free_counted_at"))
                await self.password_free_spend.release(
                    payment.buyer_id, payment_day(waived_at), payment.id, payment.amount
                )
        await self.ledger.finish(stored, recorded=True)

    async def _record_applied(self, stored: StoredMovement, context: CommitContext) -> None:
        movement = stored.movement
        match movement.purpose:
            case MovementPurpose.PAYMENT_CAPTURE:
                amount = stored.meta_int("amount")
                reference = stored.meta_str("channel_reference")
                payment_id = stored.meta_str("payment_id")
                waived = bool(movement.meta.get("second_factor_waived"))
                if await self._update_payment(
                    payment_id,
                    lambda p: p.record_capture(amount, reference, second_factor_waived=waived),
                    context,
                ):
                    payment = await self._load(payment_id)
                    outcome = (
                        "confirmed"
                        if payment.status is PaymentStatus.CONFIRMED
                        else str(payment.failure)
                    )
                    PAYMENTS.labels(payment.channel.value, outcome).inc()
            case MovementPurpose.SETTLEMENT:
                plan = SettlementPlan(
                    gross=stored.meta_int("gross"),
                    fee=stored.meta_int("fee"),
                    promotion=_meta_int_or_zero(stored, "promotion"),
                )
                if await self._update_payment(
                    stored.meta_str("payment_id"), lambda p: p.record_settlement(plan), context
                ):
                    SETTLED_FEN.labels("net").inc(plan.net)
                    SETTLED_FEN.labels("fee").inc(plan.fee)
                    if plan.promotion:
                        SETTLED_FEN.labels("promotion").inc(plan.promotion)
            case MovementPurpose.REFUND | MovementPurpose.CHARGEBACK_RECOVERY:
                plan_ = _refund_plan_of(stored)
                payment_id = stored.meta_str("payment_id")
                if plan_.destination == "original_channel":
                    payment = await self._load(payment_id)
                    # The channel sends the money back to the payer (idempotent by refund id).
                    await self._adapter(payment.channel).api.refund(
                        payment.id, plan_.refund_id, plan_.amount
                    )
                if await self._update_payment(
                    payment_id, lambda p: p.record_refund(plan_), context
                ):
                    _count_refund(plan_)
            case MovementPurpose.REVERSAL:
                reversal = ReversalPlan(
                    amount=stored.meta_int("amount"),
                    settled=bool(stored.meta_int("settled")),
                    promotion=_meta_int_or_zero(stored, "promotion"),
                )
                reason = ReversalReason(stored.meta_str("reason"))
                reference = stored.meta_str("channel_reference")
                await self._update_payment(
                    stored.meta_str("payment_id"),
                    lambda p: p.record_reversal(reversal, reason, reference),
                    context,
                )
            case MovementPurpose.WALLET_TOP_UP | MovementPurpose.DEPOSIT_TOP_UP:
                pass  # the wallet needs no event; a deposit's is `sync_deposit`'s

    async def sync_deposit(self, seller_id: str, context: CommitContext) -> None:
        """Publish the deposit account's new journal lines as `DepositChanged`
        (and `DepositBelowMinimum`), in order, each exactly once."""
        account = seller_deposit(seller_id)
        minimum = await self._deposit_minimum(seller_id)
        for _ in range(10):
            deposit = await self.deposits.get(seller_id) or Deposit(seller_id)
            lines = await self.ledger.lines_after(account, deposit.mirrored_lines)
            if not lines:
                return
            for line in lines:
                deposit.mirror(_deposit_line(line), minimum)
            try:
                await self.deposits.save(deposit, context)
            except ConcurrencyError:
                continue  # another writer mirrored some lines: reload and continue
            await self.standings.record(
                seller_id, deposit.version, deposit.balance, deposit.minimum
            )
            return
        raise ConcurrencyError(f"deposit {seller_id} kept changing while being mirrored")

    async def sweep(self) -> int:
        """The ledger sweeper: finish and record movements a crash left behind."""
        finished = 0
        for stored in await self.ledger.unfinished(
            older_than_seconds=self.policy.movement_grace_seconds
        ):
            try:
                await self.record(stored)
                finished += 1
            except Exception:
                log.exception("the sweeper could not finish movement %s", stored.id)
        return finished

    async def poll_gateways(self) -> int:
        """Query the channel for every trade whose callback has not come: paid
        ones are captured (as the callback would have), expired ones closed."""
        now = self.clock()
        handled = 0
        for order in await self.gateway_orders.open_created_before(
            now - self.policy.callback_grace
        ):
            adapter = self.gateways.get(order.channel)
            if adapter is None:
                continue
            try:
                state = await adapter.api.query_trade(order.out_trade_no)
                if state is not None and state.status is TradeStatus.PAID:
                    GATEWAY_POLLS.labels(order.channel.value, "paid").inc()
                    await self._capture(
                        order, state.amount, state.channel_reference or state.gateway_trade_no
                    )
                elif (state is not None and state.status is TradeStatus.CLOSED) or (
                    now >= order.expires_at
                ):
                    GATEWAY_POLLS.labels(order.channel.value, "closed").inc()
                    await self._close_gateway_order(order, PaymentFailure.EXPIRED)
                else:
                    GATEWAY_POLLS.labels(order.channel.value, "waiting").inc()
                    continue
                handled += 1
            except Exception:
                log.exception("polling %s trade %s failed", order.channel.value, order.out_trade_no)
        return handled

    # -- reads ---------------------------------------------------------------------

    async def payment(self, payment_id: str) -> Payment | None:
        return await self.payments.get(payment_id)

    async def payment_of_order(self, order_id: str) -> Payment | None:
        return await self.payments.get(payment_id_for(order_id))

    async def wallet(self, buyer_id: str) -> WalletView:
        credential = await self.credentials.get(buyer_id)
        buyer = await self.parties.buyer(buyer_id, self.policy.default_daily_limit)
        now = self.clock()
        return WalletView(
            buyer_id=buyer_id,
            balance=await self.ledger.balance(buyer_wallet(buyer_id)),
            has_payment_password=credential is not None,
            locked_until=credential.locked_until
            if credential is not None and credential.locked(now)
            else None,
            daily_payment_limit=buyer.daily_payment_limit,
            spent_today=await self.daily_spend.spent(buyer_id, payment_day(now)),
        )

    async def deposit(self, seller_id: str) -> DepositView:
        seller = await self.parties.seller(seller_id)
        if seller is None:
            raise Refused(
                "seller_not_approved",
                "Only approved sellers keep a deposit.",
                RefusalKind.FORBIDDEN,
            )
        return DepositView(
            seller_id=seller_id,
            balance=await self.ledger.balance(seller_deposit(seller_id)),
            minimum=self.policy.minimums().for_category(seller.category),
            owed=await self.ledger.balance(seller_receivable(seller_id)),
            seller_balance=await self.ledger.balance(seller_balance(seller_id)),
            category=seller.category,
        )

    async def _deposit_minimum(self, seller_id: str) -> int:
        """The seller's own minimum, by the category it was approved for."""
        seller = await self.parties.seller(seller_id)
        return self.policy.minimums().for_category(seller.category if seller else None)

    async def statement(
        self, accounts: list[Account], *, limit: int, offset: int
    ) -> list[JournalLine]:
        return await self.ledger.statement(accounts, limit=limit, offset=offset)

    async def trial_balance(self) -> TrialBalance:
        return await self.ledger.trial_balance()

    async def deposits_below_minimum(self) -> int:
        """Sellers whose deposit is below the minimum now (offers delisted)."""
        return await self.standings.count_below_minimum()

    # -- helpers -------------------------------------------------------------------

    def _adapter(self, channel: PaymentChannel) -> GatewayAdapter:
        adapter = self.gateways.get(channel)
        if adapter is None:
            raise Refused(
                "channel_unavailable", f"No channel {channel.value}.", RefusalKind.NOT_FOUND
            )
        return adapter

    async def _load(self, payment_id: str) -> Payment:
        payment = await self.payments.get(payment_id)
        if payment is None:
            raise LookupError(f"no payment {payment_id}")
        return payment

    async def _caught_up(self, payment_id: str) -> Payment:
        """The payment with every movement of it recorded."""
        for stored in await self.ledger.unfinished(payment_id=payment_id):
            await self.record(stored)
        return await self._load(payment_id)

    async def _fail(
        self, payment_id: str, reason: PaymentFailure, detail: str, context: CommitContext
    ) -> None:
        if await self._update_payment(payment_id, lambda p: p.fail(reason, detail), context):
            payment = await self._load(payment_id)
            PAYMENTS.labels(payment.channel.value, reason.value).inc()

    async def _update_payment(
        self,
        payment_id: str,
        decide: Callable[[Payment], object],
        context: CommitContext,
    ) -> bool:
        """Load, decide, save; retried on a concurrent write. True if it saved events."""
        for _ in range(10):
            payment = await self._load(payment_id)
            decide(payment)
            if not payment.pending_events:
                return False
            try:
                await self.payments.save(payment, context)
                return True
            except ConcurrencyError:
                continue
        raise ConcurrencyError(f"payment {payment_id} kept changing")


def _refund_plan_of(stored: StoredMovement) -> RefundPlan:
    destination: Destination
    match stored.meta_str("destination"):
        case "original_channel":
            destination = "original_channel"
        case "wallet":
            destination = "wallet"
        case _:
            destination = "none"
    return RefundPlan(
        refund_id=stored.meta_str("refund_id"),
        amount=stored.meta_int("amount"),
        source=RefundSource(stored.meta_str("source")),
        reason=RefundReason(stored.meta_str("reason")),
        destination=destination,
        moves_money=True,
        promotion=_meta_int_or_zero(stored, "promotion"),
    )


def _meta_int_or_zero(stored: StoredMovement, key: str) -> int:
    """A meta figure movements stored before it existed do not carry."""
    return stored.meta_int(key) if key in stored.movement.meta else 0


def _count_refund(plan: RefundPlan) -> None:
    REFUNDS.labels(plan.source.value, plan.reason.value).inc()
    REFUNDED_FEN.labels(plan.source.value).inc(plan.amount)


def _deposit_line(line: JournalLine) -> DepositLine:
    return DepositLine(
        seq=line.seq,
        amount=line.amount,
        balance=line.account.natural(line.balance_after),
        cause=_DEPOSIT_CAUSES.get(line.purpose, DepositChangeCause.ADJUSTMENT),
        order_id=line.order_id,
    )
