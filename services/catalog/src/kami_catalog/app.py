"""Wiring: the runtime, the stores, the read models, handlers, consumers and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kami_catalog.adapters.consumed_log import ConsumedLog
from kami_catalog.adapters.projections import CatalogReadModels, Projector, StoreSource
from kami_catalog.adapters.queries import CatalogQueries
from kami_catalog.adapters.search_index import ProductIndex
from kami_catalog.adapters.stores import PrivateEventStore
from kami_catalog.api import routers
from kami_catalog.consumers import register_consumers
from kami_catalog.domain.comparison import ReliabilityPolicy
from kami_catalog.domain.errors import Rejected, RejectionKind
from kami_catalog.handlers import CatalogHandlers
from kami_catalog.settings import CatalogSettings
from kami_events.clock import Clock, utc_now
from kami_events.runtime import ServiceRuntime
from kami_web.app import create_app as create_web_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth
from kami_web.errors import error_body

STATUS_OF = {
    RejectionKind.INVALID: 422,
    RejectionKind.NOT_FOUND: 404,
    RejectionKind.CONFLICT: 409,
    RejectionKind.FORBIDDEN: 403,
}


@dataclass
class CatalogService:
    settings: CatalogSettings
    runtime: ServiceRuntime
    private_store: PrivateEventStore
    consumed: ConsumedLog
    read_models: CatalogReadModels
    index: ProductIndex
    projector: Projector
    queries: CatalogQueries
    handlers: CatalogHandlers

    async def prepare(self) -> None:
        """Indexes of the private store, the log and the read models; then
        whatever the projector has not applied yet, and the search index."""
        await self.private_store.ensure_indexes()
        await self.consumed.ensure_indexes()
        await self.read_models.ensure_indexes()
        await self.projector.catch_up()
        await self.projector.load_index()


def build_service(
    settings: CatalogSettings | None = None, *, clock: Clock = utc_now
) -> CatalogService:
    """Everything the catalog process needs, not yet started."""
    settings = settings or CatalogSettings()
    runtime = ServiceRuntime(settings, clock=clock)
    private_store = PrivateEventStore(runtime.db, producer=settings.service_name, clock=clock)
    consumed = ConsumedLog(runtime.db, clock=clock)
    read_models = CatalogReadModels(runtime.db)
    index = ProductIndex()
    projector = Projector(
        read_models,
        [StoreSource("events", runtime.store), StoreSource("private_events", private_store)],
        consumed,
        index=index,
    )
    queries = CatalogQueries(
        read_models,
        index,
        policy=ReliabilityPolicy(
            min_delivery_success_bp=settings.reliable_min_delivery_success_bp,
            max_ticket_rate_bp=settings.reliable_max_ticket_rate_bp,
            min_rating_milli=settings.reliable_min_rating_milli,
        ),
    )
    handlers = CatalogHandlers(
        store=runtime.store,
        private_store=private_store,
        facts=queries,
        clock=clock,
        after_commit=projector.catch_up,
    )
    register_consumers(runtime.consumer, projector, handlers)
    service = CatalogService(
        settings,
        runtime,
        private_store,
        consumed,
        read_models,
        index,
        projector,
        queries,
        handlers,
    )
    runtime.on_start(service.prepare)
    runtime.every(
        "catalog-projector",
        timedelta(seconds=settings.projection_interval_seconds),
        projector.catch_up,
    )
    runtime.every(
        "catalog-suspension-ends",
        timedelta(seconds=settings.suspension_check_interval_seconds),
        handlers.restore_after_suspensions,
    )
    return service


def create_app(
    settings: CatalogSettings | None = None,
    *,
    clock: Clock = utc_now,
    auth: AuthSettings | None = None,
) -> FastAPI:
    service = build_service(settings, clock=clock)
    app = create_web_app(
        service.runtime,
        routers(),
        title="Kami catalog",
        description="Categories, products, sellers' offers, search, price comparison, reviews.",
    )
    app.state.catalog = service
    install_auth(app, TokenVerifier(auth or AuthSettings(), now=clock))

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=STATUS_OF[exc.kind])

    return app
