"""Wiring: settings -> MongoDB adapters, cipher -> handlers -> consumers, HTTP app."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.clock import Clock, utc_now
from kami_events.mongo import Document
from kami_events.runtime import ServiceRuntime
from kami_events.store import EventStore
from kami_inventory import handlers, metrics
from kami_inventory.adapters.crypto import KeyCipher, KeyRing
from kami_inventory.adapters.keys import MongoKeyStore
from kami_inventory.adapters.records import (
    STOCK_STATES,
    MongoDataKeyStore,
    MongoImportLog,
    MongoOfferDirectory,
    MongoReplacementBook,
    MongoReservationBook,
    MongoRevealAudit,
    MongoStockBook,
    MongoWorkJournal,
)
from kami_inventory.api import install_error_mapping, router
from kami_inventory.consumers import register_consumers
from kami_inventory.handlers import Inventory, PoolRules
from kami_inventory.settings import InventorySettings
from kami_web.app import create_app as create_service_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth
from kami_web.limits import DEFAULT_MAX_BODY_BYTES

MULTIPART_OVERHEAD = 64 * 1024

DESCRIPTION = """\
The key pools of sellers' offers: encrypted at rest, reserved for orders
atomically, revealed only to delivery.

**Sellers** import keys into their own offers' pools as CSV (`key,expires_at`)
or TXT (one key per line) with `POST /offers/{offer_id}/imports`; every line is
judged and rejected lines are reported with their line number and reason. An
import is idempotent by its id (`Idempotency-Key`). They see stock per offer,
list their keys (never a secret: at most its last four characters) and void
available keys.

**The saga** talks to inventory by events: `OrderPlaced` reserves keys
(`KeyReserved` / `KeyReservationFailed`), `OrderCancelled` releases them,
`OrderPaid` sells them, `OrderRefundRequested` voids them. After-sales'
`ReplacementApproved` sells the order another key of the pool for each
faulty one (`ReplacementKeysAllocated`) or says why not (`KeyReplacementFailed`).

**Delivery** fetches an order's secrets with its service credential at
`POST /internal/orders/{order_id}/keys/reveal`; every reveal is audited.

Every error is a 4xx: `{"error": {"code": "...", "message": "..."}}`.
"""


@dataclass
class MongoAdapters:
    """Inventory's collections in its own database."""

    keys: MongoKeyStore
    offers: MongoOfferDirectory
    imports: MongoImportLog
    reservations: MongoReservationBook
    work: MongoWorkJournal
    audit: MongoRevealAudit
    data_keys: MongoDataKeyStore
    stock_book: MongoStockBook
    replacements: MongoReplacementBook

    @classmethod
    def on(
        cls, db: AsyncDatabase[Document], *, clock: Clock, trust_seconds: float = 0.0
    ) -> MongoAdapters:
        return cls(
            keys=MongoKeyStore(db, clock=clock),
            offers=MongoOfferDirectory(db, trust_seconds=trust_seconds),
            imports=MongoImportLog(db, clock=clock),
            reservations=MongoReservationBook(db, clock=clock),
            work=MongoWorkJournal(db),
            audit=MongoRevealAudit(db),
            data_keys=MongoDataKeyStore(db, clock=clock),
            stock_book=MongoStockBook(db),
            replacements=MongoReplacementBook(db, clock=clock),
        )

    async def ensure_indexes(self) -> None:
        await self.keys.ensure_indexes()
        await self.offers.ensure_indexes()
        await self.work.ensure_indexes()
        await self.audit.ensure_indexes()


def build_inventory(
    store: EventStore, adapters: MongoAdapters, settings: InventorySettings, *, clock: Clock
) -> Inventory:
    return Inventory(
        store=store,
        keys=adapters.keys,
        offers=adapters.offers,
        imports=adapters.imports,
        reservations=adapters.reservations,
        work=adapters.work,
        audit=adapters.audit,
        stock_book=adapters.stock_book,
        replacements=adapters.replacements,
        keyring=KeyRing(
            KeyCipher(settings.master_key, settings.fingerprint_key), adapters.data_keys
        ),
        rules=PoolRules.from_settings(settings),
        clock=clock,
    )


def create_app(
    settings: InventorySettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    settings = settings or InventorySettings()  # from the environment
    auth = auth or AuthSettings()
    runtime = ServiceRuntime(settings, clock=clock)
    adapters = MongoAdapters.on(
        runtime.db, clock=clock, trust_seconds=settings.read_model_trust_seconds
    )
    runtime.on_start(adapters.ensure_indexes)
    inventory = build_inventory(runtime.store, adapters, settings, clock=clock)
    register_consumers(runtime.consumer, inventory)

    async def maintain() -> None:
        await handlers.maintain(inventory)

    runtime.every(
        "maintenance", timedelta(seconds=settings.inventory_maintenance_interval_seconds), maintain
    )

    async def refresh_keys_gauge() -> None:
        for offer_id, stock in (await handlers.keys_by_state(inventory)).items():
            for state in STOCK_STATES:
                metrics.KEYS.labels(offer_id, state).set(getattr(stock, state))

    runtime.every(
        "keys-gauge",
        timedelta(seconds=settings.inventory_metrics_refresh_seconds),
        refresh_keys_gauge,
    )

    app = create_service_app(
        runtime,
        [router],
        title="Kami inventory",
        description=DESCRIPTION,
        # A key file must fit in one request (multipart adds its framing).
        max_body_bytes=max(
            DEFAULT_MAX_BODY_BYTES, settings.inventory_max_import_bytes + MULTIPART_OVERHEAD
        ),
    )
    app.state.inventory = inventory
    app.state.max_import_bytes = settings.inventory_max_import_bytes
    install_auth(app, TokenVerifier(auth, now=clock))
    install_error_mapping(app)
    return app
