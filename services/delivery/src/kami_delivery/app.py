"""Wiring: settings -> stores, cipher, inventory client -> handlers -> HTTP app."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from kami_delivery import consumers
from kami_delivery.adapters.cipher import VaultCipher, decode_vault_key
from kami_delivery.adapters.inventory import HttpInventory
from kami_delivery.adapters.issuers import IssuerDirectory, SimulatedIssuer
from kami_delivery.adapters.mongo import DeliveryStores
from kami_delivery.adapters.ports import Inventory, SmsSender
from kami_delivery.adapters.sms import RecordingSmsSender
from kami_delivery.api import install_rejection_handler, router
from kami_delivery.domain.delivery import Delivery
from kami_delivery.domain.queue import RetryPolicy
from kami_delivery.handlers import DeliveryDeps, DeliveryPolicy, expire_overdue_manual_deliveries
from kami_delivery.settings import DeliverySettings
from kami_delivery.worker import DeliveryLane
from kami_events.clock import Clock, utc_now
from kami_events.repository import AggregateRepository
from kami_events.runtime import ServiceRuntime
from kami_web.app import create_app as create_service_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth

DESCRIPTION = """\
Delivers paid orders' keys to their buyers, keeps each buyer's encrypted key
vault, and notifies them.

**Automatic offers**: on `OrderPaid` the order joins the priority lane
(higher verification tiers first, then oldest); a worker takes its keys from
inventory, seals them into the buyer's vault (AES-256-GCM) and emits
`KeyDelivered`, or `DeliveryFailed` when inventory reports a key blocked,
voided or expired. **Manual offers**: the seller sees the order with the
buyer's fields under `GET /seller/deliveries` and submits the keys before the
SLA deadline, or the delivery fails and the order is refunded. **Replacement
keys** (after-sales): on inventory's `ReplacementKeysAllocated` the new keys
are sealed into the buyer's vault in place of the faulty ones, which are
voided there (`KeyReplaced`), and the buyer is told.

**Buyers**: `GET /vault` lists my keys masked; `POST /vault/{key_id}/reveal`
and `GET /vault/export?format=csv|txt` give plaintext, to the owner only, and
every one is audited. `POST /orders/{order_id}/arrival` confirms arrival.

Every error is a 4xx: `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(
    settings: DeliverySettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock = utc_now,
    inventory: Inventory | None = None,
    sms: SmsSender | None = None,
) -> FastAPI:
    settings = settings or DeliverySettings()  # from the environment
    auth = auth or AuthSettings()
    runtime = ServiceRuntime(settings, clock=clock)
    stores = DeliveryStores(runtime.db, trust_seconds=settings.read_model_trust_seconds)
    runtime.on_start(stores.ensure_indexes)

    http = httpx.AsyncClient(timeout=settings.delivery_inventory_timeout_seconds)
    if inventory is None:
        inventory = HttpInventory(
            http,
            base_url=settings.delivery_inventory_url,
            service_secret=auth.service_token_secret.get_secret_value(),
        )
    if sms is None:
        recorder = RecordingSmsSender(runtime.db["sms_messages"], clock=clock)
        runtime.on_start(recorder.ensure_indexes)
        sms = recorder

    deps = DeliveryDeps(
        deliveries=AggregateRepository(runtime.store, Delivery),
        inventory=inventory,
        sealer=VaultCipher(decode_vault_key(settings.delivery_vault_key.get_secret_value())),
        vault=stores.vault,
        queue=stores.queue,
        manual_tasks=stores.manual_tasks,
        orders=stores.orders,
        buyers=stores.buyers,
        offers=stores.offers,
        messages=stores.messages,
        sms=sms,
        audit=stores.audit,
        policy=DeliveryPolicy(
            manual_sla=timedelta(minutes=settings.delivery_manual_sla_minutes),
            lease=timedelta(seconds=settings.delivery_lane_lease_seconds),
            retry=RetryPolicy(
                max_attempts=settings.delivery_max_attempts,
                base_delay=timedelta(seconds=settings.delivery_retry_base_seconds),
                max_delay=timedelta(seconds=settings.delivery_retry_max_seconds),
            ),
        ),
        clock=clock,
        issuers=IssuerDirectory(
            {IssuerDirectory.ANY: SimulatedIssuer()}
            if settings.delivery_issuer_simulator_enabled
            else {}
        ),
        verify_services=frozenset(settings.delivery_verify_services),
    )
    lane = DeliveryLane(
        deps,
        lanes=settings.delivery_lane_workers,
        idle_poll=settings.delivery_lane_idle_poll_seconds,
    )
    consumers.register(runtime.consumer, deps, on_queued=lane.wake)

    async def expire_manual() -> None:
        await expire_overdue_manual_deliveries(deps)

    # The lane paces itself (it sleeps until woken or its idle poll passes).
    runtime.every("delivery-lane", timedelta(0), lane.run_once)
    runtime.every(
        "manual-sla", timedelta(seconds=settings.delivery_manual_poll_seconds), expire_manual
    )

    app = create_service_app(runtime, [router], title="Kami delivery", description=DESCRIPTION)
    app.state.delivery = deps
    app.state.stores = stores
    app.state.sms = sms
    app.state.lane = lane
    install_auth(app, TokenVerifier(auth, now=clock))
    install_rejection_handler(app)

    async def close_http() -> None:
        await http.aclose()

    app.router.add_event_handler("shutdown", close_http)
    return app
