"""Wiring: the payment service's runtime, stores, channels, routes and pollers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kami_events.catalogue.payment import PaymentChannel
from kami_events.clock import Clock, utc_now
from kami_events.runtime import ServiceRuntime
from kami_payment import api, metrics, simulator_api
from kami_payment.adapters.gateway_orders import MongoGatewayOrders
from kami_payment.adapters.gateways.alipay import AlipayAdapter, AlipayNotifier
from kami_payment.adapters.gateways.base import GatewayAdapter
from kami_payment.adapters.gateways.simulator import MongoTradeBook, SimulatedGateway
from kami_payment.adapters.gateways.wechat_pay import WechatPayAdapter, WechatPayNotifier
from kami_payment.adapters.journal import MongoJournal
from kami_payment.adapters.read_models import (
    MongoCredentials,
    MongoDailySpend,
    MongoDepositStandings,
    MongoOrderBook,
    MongoParties,
    MongoPasswordFreeSettings,
    MongoResellerOrders,
)
from kami_payment.consumers import register_consumers
from kami_payment.domain.refusals import Refused
from kami_payment.domain.wallet import PasswordFreeBounds
from kami_payment.handlers import PaymentPolicy, PaymentService
from kami_payment.ledger import Ledger
from kami_payment.settings import PaymentSettings
from kami_web.app import create_app as create_web_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth
from kami_web.errors import error_body
from kami_web.passwords import Argon2Parameters, CheckPoolLimits, PasswordHasher


@dataclass(frozen=True)
class PaymentComponents:
    service: PaymentService
    simulators: dict[PaymentChannel, SimulatedGateway]
    journal: MongoJournal
    gateway_orders: MongoGatewayOrders
    daily_spend: MongoDailySpend
    password_free_spend: MongoDailySpend
    credentials: MongoCredentials
    trade_book: MongoTradeBook

    async def ensure_indexes(self) -> None:
        await self.journal.ensure_indexes()
        await self.gateway_orders.ensure_indexes()
        await self.daily_spend.ensure_indexes()
        await self.password_free_spend.ensure_indexes()
        await self.credentials.ensure_indexes()
        await self.trade_book.ensure_indexes()


def policy_from(settings: PaymentSettings) -> PaymentPolicy:
    return PaymentPolicy(
        platform_fee_bps=settings.payment_platform_fee_bps,
        settle_on=settings.payment_settle_on,
        deposit_minimum=settings.payment_deposit_minimum,
        deposit_minimums=dict(settings.payment_deposit_minimums),
        default_daily_limit=settings.payment_default_daily_limit,
        password_max_attempts=settings.payment_password_max_attempts,
        password_lock=timedelta(minutes=settings.payment_password_lock_minutes),
        top_up_max=settings.payment_top_up_max,
        top_up_ttl=timedelta(minutes=settings.payment_top_up_ttl_minutes),
        callback_grace=timedelta(seconds=settings.payment_callback_grace_seconds),
        movement_grace_seconds=settings.payment_movement_grace_seconds,
        reservation_wait_seconds=settings.payment_reservation_wait_seconds,
        password_free=PasswordFreeBounds(
            max_per_payment=settings.payment_password_free_max_per_payment,
            max_daily_cap=settings.payment_password_free_max_daily_cap,
        ),
    )


def build_components(
    runtime: ServiceRuntime, settings: PaymentSettings, clock: Clock = utc_now
) -> PaymentComponents:
    """Every adapter on the runtime's database, the channels on the simulator."""
    db = runtime.db
    # The simulated channels keep their books apart, as real channels would.
    trade_book = MongoTradeBook(runtime.mongo[settings.payment_simulator_database])
    wechat_secret = settings.payment_wechat_pay_secret.get_secret_value().encode()
    alipay_secret = settings.payment_alipay_secret.get_secret_value().encode()
    simulators = {
        PaymentChannel.WECHAT_PAY: SimulatedGateway(
            PaymentChannel.WECHAT_PAY,
            trade_book,
            WechatPayNotifier(wechat_secret, clock=clock),
            clock=clock,
        ),
        PaymentChannel.ALIPAY: SimulatedGateway(
            PaymentChannel.ALIPAY,
            trade_book,
            AlipayNotifier(alipay_secret, clock=clock),
            clock=clock,
        ),
    }
    # No real channel contract exists yet: the channels' server APIs are the
    # simulator's. A deployment with real channels plugs HTTPS clients here.
    gateways: dict[PaymentChannel, GatewayAdapter] = {
        PaymentChannel.WECHAT_PAY: WechatPayAdapter(
            wechat_secret, simulators[PaymentChannel.WECHAT_PAY], clock=clock
        ),
        PaymentChannel.ALIPAY: AlipayAdapter(alipay_secret, simulators[PaymentChannel.ALIPAY]),
    }
    journal = MongoJournal(db)
    gateway_orders = MongoGatewayOrders(db)
    daily_spend = MongoDailySpend(db)
    password_free_spend = MongoDailySpend(db, "password_free_spend")
    credentials = MongoCredentials(db)
    service = PaymentService(
        store=runtime.store,
        ledger=Ledger(journal, clock=clock),
        orders=MongoOrderBook(db),
        parties=MongoParties(db),
        daily_spend=daily_spend,
        credentials=credentials,
        hasher=PasswordHasher(
            Argon2Parameters(
                time_cost=settings.payment_argon2_time_cost,
                memory_cost_kib=settings.payment_argon2_memory_kib,
                parallelism=settings.payment_argon2_parallelism,
            ),
            CheckPoolLimits(
                concurrency=settings.payment_password_checks_concurrency,
                max_queued=settings.payment_password_checks_max_queued,
                max_wait_seconds=settings.payment_password_checks_max_wait_seconds,
            ),
            metrics.PASSWORD_CHECKS,
        ),
        gateway_orders=gateway_orders,
        gateways=gateways,
        policy=policy_from(settings),
        standings=MongoDepositStandings(db),
        password_free=MongoPasswordFreeSettings(db),
        password_free_spend=password_free_spend,
        clock=clock,
        reseller_orders=MongoResellerOrders(db),
    )
    return PaymentComponents(
        service,
        simulators,
        journal,
        gateway_orders,
        daily_spend,
        password_free_spend,
        credentials,
        trade_book,
    )


def create_app(
    settings: PaymentSettings | None = None,
    *,
    clock: Clock = utc_now,
    auth: AuthSettings | None = None,
) -> FastAPI:
    settings = settings or PaymentSettings()  # secrets from the environment
    runtime = ServiceRuntime(settings, clock=clock)
    components = build_components(runtime, settings, clock)
    service = components.service
    register_consumers(runtime.consumer, service)
    runtime.on_start(components.ensure_indexes)
    runtime.every(
        "gateway-poller",
        timedelta(seconds=settings.payment_gateway_poll_seconds),
        service.poll_gateways,
    )
    sweep_every = timedelta(seconds=settings.payment_sweep_seconds)
    runtime.every("ledger-sweeper", sweep_every, service.sweep)

    async def refresh_gauges() -> None:
        await service.trial_balance()  # sets the ledger gauges
        metrics.DEPOSITS_BELOW_MINIMUM.set(await service.deposits_below_minimum())

    runtime.every(
        "payment-metrics", timedelta(seconds=settings.payment_metrics_seconds), refresh_gauges
    )

    routers = [api.router]
    if settings.payment_simulator_enabled:
        routers.append(simulator_api.router)
    app = create_web_app(
        runtime,
        routers,
        title="Kami payment",
        description="Payment intents, channels, the double-entry ledger, wallets, deposits, "
        "refunds and settlement.",
    )
    install_auth(app, TokenVerifier(auth or AuthSettings(), now=clock))
    app.state.payment_service = service
    app.state.payment_simulators = components.simulators
    app.state.payment_simulator_enabled = settings.payment_simulator_enabled
    app.state.payment_components = components

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return JSONResponse(
            error_body(exc.code, exc.message),
            status_code=api.REFUSAL_STATUS[exc.kind],
            headers=headers,
        )

    return app
