"""The payment service on fakes, with a script-like vocabulary for tests:
given an order, when the buyer pays, then these events and these balances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from kami_events.catalogue.identity import IdentityVerified, SellerApproved, UserSuspended
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.catalogue.payment import PaymentChannel
from kami_events.clock import ManualClock
from kami_events.event import Event
from kami_events.store import CommitContext
from kami_events.testing import InMemoryEventStore
from kami_payment.adapters.gateway_orders import GatewayPurpose
from kami_payment.adapters.gateways.alipay import AlipayAdapter, AlipayNotifier
from kami_payment.adapters.gateways.base import CallbackAnswer, GatewayAdapter, PayInstruction
from kami_payment.adapters.gateways.simulator import SimulatedGateway
from kami_payment.adapters.gateways.wechat_pay import WechatPayAdapter, WechatPayNotifier
from kami_payment.domain.ledger import Account
from kami_payment.domain.payment import Payment
from kami_payment.handlers import PaymentOutcome, PaymentPolicy, PaymentService
from kami_payment.ledger import Ledger
from kami_web.passwords import Argon2Parameters, PasswordHasher
from tests.unit.payment.fakes import (
    InMemoryCredentials,
    InMemoryDailySpend,
    InMemoryDepositStandings,
    InMemoryGatewayOrders,
    InMemoryJournal,
    InMemoryOrderBook,
    InMemoryParties,
    InMemoryPasswordFreeSettings,
    InMemoryResellerOrders,
    InMemoryTradeBook,
)
from tests.unit.payment.scenario import Purchase, seller_approved

WECHAT_SECRET = b"wechat-secret-for-tests-0123456789abcdef"
ALIPAY_SECRET = b"alipay-secret-for-tests-0123456789abcdef"
PIN = "258036"
# 12:00 in Shanghai.
START = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_cost_kib=8, parallelism=1)

TEST_POLICY = PaymentPolicy(
    platform_fee_bps=500,
    deposit_minimum=10_000,
    default_daily_limit=50_000,
    password_max_attempts=3,
)


class World:
    def __init__(self, policy: PaymentPolicy = TEST_POLICY) -> None:
        self.clock = ManualClock(START)
        self.store = InMemoryEventStore(producer="payment", clock=self.clock)
        self.journal = InMemoryJournal()
        self.ledger = Ledger(self.journal, clock=self.clock)
        self.orders = InMemoryOrderBook()
        self.parties = InMemoryParties()
        self.daily_spend = InMemoryDailySpend()
        self.standings = InMemoryDepositStandings()
        self.credentials = InMemoryCredentials()
        self.password_free = InMemoryPasswordFreeSettings()
        self.password_free_spend = InMemoryDailySpend()
        self.reseller_orders = InMemoryResellerOrders()
        self.hasher = PasswordHasher(CHEAP_ARGON2)
        self.gateway_orders = InMemoryGatewayOrders()
        self.trade_book = InMemoryTradeBook()
        self.simulators = {
            PaymentChannel.WECHAT_PAY: SimulatedGateway(
                PaymentChannel.WECHAT_PAY,
                self.trade_book,
                WechatPayNotifier(WECHAT_SECRET, clock=self.clock),
                clock=self.clock,
            ),
            PaymentChannel.ALIPAY: SimulatedGateway(
                PaymentChannel.ALIPAY,
                self.trade_book,
                AlipayNotifier(ALIPAY_SECRET, clock=self.clock),
                clock=self.clock,
            ),
        }
        gateways: dict[PaymentChannel, GatewayAdapter] = {
            PaymentChannel.WECHAT_PAY: WechatPayAdapter(
                WECHAT_SECRET, self.simulators[PaymentChannel.WECHAT_PAY], clock=self.clock
            ),
            PaymentChannel.ALIPAY: AlipayAdapter(
                ALIPAY_SECRET, self.simulators[PaymentChannel.ALIPAY]
            ),
        }
        self.service = PaymentService(
            store=self.store,
            ledger=self.ledger,
            orders=self.orders,
            parties=self.parties,
            daily_spend=self.daily_spend,
            credentials=self.credentials,
            hasher=self.hasher,
            gateway_orders=self.gateway_orders,
            gateways=gateways,
            policy=policy,
            standings=self.standings,
            password_free=self.password_free,
            password_free_spend=self.password_free_spend,
            clock=self.clock,
            reseller_orders=self.reseller_orders,
        )

    # -- given ------------------------------------------------------------------

    def purchase(
        self,
        total: int,
        *,
        buyer: str = "buyer-1",
        seller: str = "seller-1",
        discount: int = 0,
        funded_by: DiscountFunder | None = None,
    ) -> Purchase:
        return Purchase(
            f"order-{uuid4().hex[:8]}", buyer, seller, total, self.clock(), discount, funded_by
        )

    async def reserved(self, purchase: Purchase) -> Purchase:
        await self.order_event(purchase.placed())
        await self.order_event(purchase.reserved())
        return purchase

    async def order_event(self, event: Event) -> None:
        order_id = getattr(event, "order_id")  # noqa: B009 - every order event has it
        await self.service.on_order_event(
            event, CommitContext(correlation_id=order_id, causation_id=str(uuid4()))
        )

    async def identity_event(
        self, event: IdentityVerified | SellerApproved | UserSuspended
    ) -> None:
        await self.service.on_identity_event(event)

    async def funded_wallet(self, buyer: str, amount: int, pin: str = PIN) -> None:
        """The buyer set a payment password and topped up through WeChat Pay."""
        if await self.credentials.get(buyer) is None:
            await self.service.set_payment_password(buyer, pin, None)
        outcome = await self.service.start_top_up(
            purpose=GatewayPurpose.WALLET_TOP_UP,
            owner_id=buyer,
            amount=amount,
            channel=PaymentChannel.WECHAT_PAY,
            idempotency_key=None,
        )
        answer = await self.channel_pays(outcome.instruction)
        assert answer is not None and answer.accepted

    async def funded_deposit(self, seller: str, amount: int) -> None:
        if seller not in self.parties.sellers:  # identity approves a seller once
            await self.identity_event(seller_approved(seller))
        outcome = await self.service.start_top_up(
            purpose=GatewayPurpose.DEPOSIT_TOP_UP,
            owner_id=seller,
            amount=amount,
            channel=PaymentChannel.ALIPAY,
            idempotency_key=None,
        )
        answer = await self.channel_pays(outcome.instruction)
        assert answer is not None and answer.accepted

    # -- when ---------------------------------------------------------------------

    async def pay_by_wallet(self, purchase: Purchase, pin: str | None = PIN) -> PaymentOutcome:
        return await self.service.pay(
            buyer_id=purchase.buyer_id,
            order_id=purchase.order_id,
            channel=PaymentChannel.WALLET,
            payment_password=pin,
            request_id=str(uuid4()),
        )

    async def pay_by(self, purchase: Purchase, channel: PaymentChannel) -> PayInstruction:
        outcome = await self.service.pay(
            buyer_id=purchase.buyer_id,
            order_id=purchase.order_id,
            channel=channel,
            payment_password=None,
            request_id=str(uuid4()),
        )
        assert outcome.instruction is not None
        return outcome.instruction

    async def channel_pays(
        self, instruction: PayInstruction, *, deliver: bool = True
    ) -> CallbackAnswer | None:
        """The buyer pays in the channel's app; the channel notifies Kami (or not)."""
        simulator = self.simulators[instruction.channel]
        await simulator.pay(instruction.gateway_trade_no)
        if not deliver:
            return None
        return await self.channel_notifies(instruction)

    async def channel_notifies(self, instruction: PayInstruction) -> CallbackAnswer:
        simulator = self.simulators[instruction.channel]
        notice = await simulator.payment_notice(instruction.gateway_trade_no)
        return await self.service.receive_payment_notice(
            instruction.channel, notice.headers, notice.body
        )

    async def chargeback(self, instruction: PayInstruction) -> CallbackAnswer:
        simulator = self.simulators[instruction.channel]
        notice = await simulator.chargeback(instruction.gateway_trade_no)
        return await self.service.receive_reversal_notice(
            instruction.channel, notice.headers, notice.body
        )

    # -- then -----------------------------------------------------------------------

    def events(self, aggregate_id: str | None = None) -> list[Event]:
        return [
            e.payload
            for e in self.store.committed
            if aggregate_id is None or e.aggregate_id == aggregate_id
        ]

    def event_types(self, aggregate_id: str | None = None) -> list[str]:
        return [e.event_type for e in self.events(aggregate_id)]

    def last(self, event_type: type[Any], aggregate_id: str | None = None) -> Any:
        matching = [e for e in self.events(aggregate_id) if isinstance(e, event_type)]
        assert matching, f"no {event_type.__name__} in {self.event_types(aggregate_id)}"
        return matching[-1]

    async def payment(self, purchase: Purchase) -> Payment:
        payment = await self.service.payment(purchase.payment_id)
        assert payment is not None
        return payment

    def balance(self, account: Account) -> int:
        return self.journal.balance(account)

    async def assert_books_balance(self) -> None:
        """DESIGN §9 (2): the ledger sums to zero, nothing left half-applied."""
        trial = await self.ledger.trial_balance()
        assert trial.movements_in_flight == 0, trial
        assert trial.total == 0, trial.totals
        assert not await self.journal.unrecorded(), "movements left unrecorded"

    def later(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))
