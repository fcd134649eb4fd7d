"""Wiring: settings -> stores, counters, HTTP clients -> handlers -> HTTP app."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from kami_aftersales import consumers, handlers
from kami_aftersales.adapters.counters import IssueCounters
from kami_aftersales.adapters.stores import Stores
from kami_aftersales.adapters.timeline import HttpOrderTimelines, OrderTimelines
from kami_aftersales.adapters.verification import (
    HttpKeyVerification,
    KeyRedaction,
    KeyVerification,
)
from kami_aftersales.api import install_refusal_handler, router
from kami_aftersales.domain.analytics import FlagPolicy, Seller
from kami_aftersales.domain.rules import RulesPolicy
from kami_aftersales.domain.ticket import SlaPolicy, Ticket
from kami_aftersales.handlers import AftersalesDeps
from kami_aftersales.settings import AftersalesSettings
from kami_events.clock import Clock, utc_now
from kami_events.repository import AggregateRepository
from kami_events.runtime import ServiceRuntime
from kami_web.app import create_app as create_service_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth

DESCRIPTION = """\
After-sales: the arrival guarantee's claims, tickets, their automatic rules
and escalation, compensations, and issue analytics.

**Buyers** open a ticket about a paid order (`POST /tickets`): not received,
invalid / used / expired key, wrong product or amount, other; with a
description and evidence (image URLs). Simple cases are decided at once: a
"not received" whose keys are in the vault is pointed there and notified
again; a faulty key inside the guarantee window that the issuer's verifier
calls used or invalid is refunded at once (from escrow, or from the seller's
deposit once settled) and voided, or, if the buyer asked for a replacement
(`preferred_remedy`) and the offer's pool has keys, replaced from the pool
(refunded after all if the pool runs dry first). Everything else waits for
an agent.

**Support agents** work `GET /queue` (higher after-sales priority first, then
oldest), see each order's timeline across services, and resolve: full or
partial refund, a replacement key from the pool, or reject with a reason. A
ticket not decided within its level's SLA escalates (agent → senior agent →
operator).

**Operators** read the most frequent issues (`GET /reports/issues?window=24h|7d`)
and a seller's rolling rates; sellers over the thresholds are flagged
(`SellerFlagged`) and demoted or delisted by catalog.

Every error is a 4xx: `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(
    settings: AftersalesSettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock = utc_now,
    verifier: KeyVerification | None = None,
    redactor: KeyRedaction | None = None,
    timelines: OrderTimelines | None = None,
) -> FastAPI:
    settings = settings or AftersalesSettings()  # from the environment
    auth = auth or AuthSettings()
    runtime = ServiceRuntime(settings, clock=clock)
    stores = Stores(runtime.db)
    runtime.on_start(stores.ensure_indexes)
    counters = IssueCounters.in_database(runtime.db)
    runtime.on_start(counters.ensure_indexes)

    http = httpx.AsyncClient(timeout=settings.aftersales_http_timeout_seconds)
    delivery = HttpKeyVerification(
        http,
        base_url=settings.aftersales_delivery_url,
        service_secret=auth.service_token_secret.get_secret_value(),
    )
    deps = AftersalesDeps(
        tickets=AggregateRepository(runtime.store, Ticket),
        sellers=AggregateRepository(runtime.store, Seller),
        stores=stores,
        counters=counters,
        verifier=verifier or delivery,
        redactor=redactor or delivery,
        timelines=timelines or HttpOrderTimelines(http, base_url=settings.aftersales_ordering_url),
        rules=RulesPolicy(auto_refund_max=settings.aftersales_auto_refund_max),
        sla=SlaPolicy(
            agent=timedelta(minutes=settings.aftersales_agent_sla_minutes),
            senior_agent=timedelta(minutes=settings.aftersales_senior_agent_sla_minutes),
            operator=timedelta(minutes=settings.aftersales_operator_sla_minutes),
        ),
        flags=FlagPolicy(
            warning_bp=settings.aftersales_flag_warning_bp,
            critical_bp=settings.aftersales_flag_critical_bp,
            min_orders=settings.aftersales_flag_min_orders,
            window_days=settings.aftersales_flag_window_days,
        ),
        clock=clock,
    )
    consumers.register(runtime.consumer, deps)

    async def escalate() -> None:
        await handlers.escalate_overdue(deps)

    async def review() -> None:
        await handlers.review_flagged(deps)

    async def gauges() -> None:
        await handlers.refresh_gauges(deps)

    runtime.every(
        "sla-escalation", timedelta(seconds=settings.aftersales_sla_poll_seconds), escalate
    )
    runtime.every("flag-review", timedelta(seconds=settings.aftersales_flag_review_seconds), review)
    runtime.every("ticket-gauges", timedelta(seconds=settings.aftersales_metrics_seconds), gauges)

    app = create_service_app(runtime, [router], title="Kami aftersales", description=DESCRIPTION)
    app.state.aftersales = deps
    install_auth(app, TokenVerifier(auth, now=clock))
    install_refusal_handler(app)

    async def close_http() -> None:
        await http.aclose()

    app.router.add_event_handler("shutdown", close_http)
    return app
