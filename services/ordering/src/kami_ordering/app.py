"""Wiring: settings -> runtime, repository, read models -> handlers ->
consumers, pollers and the HTTP app."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from kami_events.changes import Changes
from kami_events.clock import Clock, utc_now
from kami_events.repository import AggregateRepository
from kami_events.runtime import ServiceRuntime
from kami_ordering import metrics
from kami_ordering.adapters.catalog_view import MongoOfferCatalog
from kami_ordering.adapters.order_requests import MongoOrderRequests
from kami_ordering.adapters.order_views import MongoOrderViews, MongoSettlements
from kami_ordering.adapters.quotas import MongoQuotaClaims
from kami_ordering.adapters.repository import OrderRepository
from kami_ordering.adapters.status_reads import count_status_reads
from kami_ordering.adapters.timeline import MongoTimeline
from kami_ordering.api import Ordering, router
from kami_ordering.consumers import register_consumers
from kami_ordering.domain.order import OrderState
from kami_ordering.domain.promotions import Coupon, OfferPricing
from kami_ordering.handlers import OrderPlacement, PurchaseSaga
from kami_ordering.order_changes import OrderStatus
from kami_ordering.promotions import Promotions
from kami_ordering.promotions_api import router as promotions_router
from kami_ordering.settings import OrderingSettings
from kami_web.app import create_app as create_service_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth

DESCRIPTION = """\
Orders and the purchase saga (the orchestrator of docs/saga.md).

`POST /orders` places an order at the offer's current price; it needs an
`Idempotency-Key` header, and the same request with the same key returns the
same order (`200`, `Idempotent-Replayed: true`), while a different request
under a used key is refused (`409 idempotency_key_reused`).

An order goes `PLACED → RESERVED → PAID → DELIVERED → COMPLETED`, or ends
`CANCELLED` (nothing paid) or `REFUNDED` (through `REFUNDING`). `GET
/orders/{id}` shows its state, amounts, keys and deadlines; `GET
/orders/{id}/timeline` everything every service said about it.

Waiting for a state is a long poll, not a polling loop: `GET
/orders/{id}?wait_for=DELIVERED&timeout=20` answers as soon as the order is
DELIVERED or past it, or can no longer get there (cancelled, refunding,
refunded), else after `timeout` seconds (at most 30) with the order as it is.

Every error is a 4xx: `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(
    settings: OrderingSettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    settings = settings or OrderingSettings()  # from the environment
    auth = auth or AuthSettings()
    timers = settings.timers()

    count_status_reads()  # before the runtime creates its MongoDB client
    runtime = ServiceRuntime(settings, clock=clock)
    changes = Changes()
    repository = OrderRepository(runtime.store, on_change=changes.changed)
    catalog = MongoOfferCatalog(runtime.db, trust_seconds=settings.read_model_trust_seconds)
    views = MongoOrderViews(runtime.db)
    requests = MongoOrderRequests(runtime.db, clock)
    timeline = MongoTimeline(runtime.db)
    quotas = MongoQuotaClaims(runtime.db, clock)
    pricing = AggregateRepository(runtime.store, OfferPricing)
    coupons = AggregateRepository(runtime.store, Coupon)
    for setup in (
        views.ensure_indexes,
        requests.ensure_indexes,
        timeline.ensure_indexes,
        quotas.ensure_indexes,
    ):
        runtime.on_start(setup)

    saga = PurchaseSaga(
        repository=repository,
        views=views,
        settlements=MongoSettlements(runtime.db),
        clock=clock,
        timers=timers,
        quotas=quotas,
    )
    placement = OrderPlacement(
        repository=repository,
        catalog=catalog,
        requests=requests,
        views=views,
        clock=clock,
        timers=timers,
        pricing=pricing,
        coupons=coupons,
        quotas=quotas,
    )
    register_consumers(
        runtime.consumer,
        saga=saga,
        catalog=catalog,
        timeline=timeline,
        repository=repository,
        placement=placement,
    )

    async def fire_deadlines() -> None:
        await saga.fire_due_deadlines(settings.ordering_deadline_batch_size)

    async def refresh_saga_gauges() -> None:
        counts = await views.count_by_state()
        for state in OrderState:
            metrics.ORDERS_BY_STATE.labels(state.value).set(counts.get(state.value, 0))
        overdue_before = clock() - timedelta(seconds=settings.ordering_overdue_after_seconds)
        metrics.SAGAS_PAST_DEADLINE.set(await views.count_past_deadline(overdue_before))

    runtime.every(
        "order-deadlines",
        timedelta(seconds=settings.ordering_deadline_poll_seconds),
        fire_deadlines,
    )
    runtime.every(
        "saga-gauges",
        timedelta(seconds=settings.ordering_metrics_refresh_seconds),
        refresh_saga_gauges,
    )

    app = create_service_app(
        runtime, [router, promotions_router], title="Kami ordering", description=DESCRIPTION
    )
    app.state.promotions = Promotions(
        catalog=catalog, pricing=pricing, coupons=coupons, quotas=quotas, clock=clock
    )
    app.state.ordering = Ordering(
        placement=placement,
        saga=saga,
        repository=repository,
        status=OrderStatus(
            repository, changes, recheck_seconds=settings.ordering_wait_recheck_seconds
        ),
        views=views,
        timeline=timeline,
        timers=timers,
        clock=clock,
        overdue_after=timedelta(seconds=settings.ordering_overdue_after_seconds),
    )
    # Tokens expire by the wall clock, whatever clock the saga runs on.
    install_auth(app, TokenVerifier(auth))
    return app
