"""Wiring: settings -> stores, cipher, HTTP clients -> handlers -> HTTP app."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from kami_events.clock import Clock, utc_now
from kami_events.repository import AggregateRepository
from kami_events.runtime import ServiceRuntime
from kami_reseller import consumers, handlers
from kami_reseller.adapters.cipher import SecretCipher
from kami_reseller.adapters.keys import HttpKeySource, KeySource
from kami_reseller.adapters.stores import Stores
from kami_reseller.api import install_refusal_handlers, operators, signed
from kami_reseller.domain.order import ResellerOrder
from kami_reseller.domain.reseller import Reseller
from kami_reseller.domain.webhooks import RetryPolicy
from kami_reseller.handlers import ResellerDeps
from kami_reseller.settings import ResellerSettings
from kami_web.app import create_app as create_service_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth

DESCRIPTION = """\
Resellers (分站/代理): shops that sell Kami's card keys under their own
prices, through an HMAC-signed API (docs/reseller.md).

**Operators** approve an identity user as a reseller and issue its API
credentials (a key id and a secret, the secret shown once and kept encrypted).

**Resellers** sign every `/v1` request with HMAC-SHA256 over the method, path,
query, timestamp, nonce and the body's SHA-256. A timestamp more than 5
minutes from the server's clock, a nonce used before, a body or query that
differs from what was signed, or an unknown or revoked key is a `401` whose
`code` says which. A reseller sees every listed, automatically delivered offer
at the offer's price plus its markup (its default, or one per offer), places
orders for its customers paid from its prepaid balance, fetches the keys once
delivered, and receives signed webhooks (`order.delivered`, `order.refunded`,
`order.cancelled`) retried with exponential backoff, every attempt visible
and re-sendable.

Every error is a 4xx (or 502 when delivery cannot be reached):
`{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(
    settings: ResellerSettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock = utc_now,
    keys: KeySource | None = None,
) -> FastAPI:
    settings = settings or ResellerSettings()  # from the environment
    auth = auth or AuthSettings()
    runtime = ServiceRuntime(settings, clock=clock)
    stores = Stores(runtime.db)
    runtime.on_start(stores.ensure_indexes)

    http = httpx.AsyncClient(timeout=settings.reseller_http_timeout_seconds)
    webhook_http = httpx.AsyncClient(
        timeout=settings.reseller_webhook_timeout_seconds, follow_redirects=False
    )
    deps = ResellerDeps(
        resellers=AggregateRepository(runtime.store, Reseller),
        orders=AggregateRepository(runtime.store, ResellerOrder),
        stores=stores,
        cipher=SecretCipher(settings.secret_key),
        keys=keys
        or HttpKeySource(
            http,
            base_url=settings.reseller_delivery_url,
            service_secret=auth.service_token_secret.get_secret_value(),
        ),
        http=webhook_http,
        retry=RetryPolicy(
            base_delay=timedelta(seconds=settings.reseller_webhook_base_delay_seconds),
            max_delay=timedelta(seconds=settings.reseller_webhook_max_delay_seconds),
            max_attempts=settings.reseller_webhook_max_attempts,
        ),
        clock=clock,
    )
    consumers.register(runtime.consumer, deps)

    async def send_webhooks() -> None:
        await handlers.send_due_webhooks(deps)

    async def sweep() -> None:
        await handlers.sweep_nonces(deps)

    runtime.every(
        "webhooks", timedelta(seconds=settings.reseller_webhook_poll_seconds), send_webhooks
    )
    runtime.every("nonce-sweep", timedelta(seconds=settings.reseller_nonce_sweep_seconds), sweep)

    app = create_service_app(
        runtime, [operators, signed], title="Kami reseller", description=DESCRIPTION
    )
    app.state.reseller = deps
    install_auth(app, TokenVerifier(auth, now=clock))
    install_refusal_handlers(app)

    async def close_http() -> None:
        await http.aclose()
        await webhook_http.aclose()

    app.router.add_event_handler("shutdown", close_http)
    return app
