"""Inventory on the real servers: its MongoDB adapters on FerretDB, and the
whole service (HTTP, consumer, relay) on FerretDB and Kafka."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.catalogue.catalog import OfferListed
from kami_events.clock import utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.mongo import Document
from kami_events.runtime import ServiceRuntime
from kami_events.serialization import encode
from kami_events.store import MongoEventStore
from kami_inventory.app import MongoAdapters, build_inventory, create_app
from kami_inventory.handlers import Inventory, record_offer_listed
from kami_inventory.settings import InventorySettings
from kami_web.testing import AuthKeys
from tests.conftest import Servers
from tests.integration.conftest import produce_raw


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def settings_for(servers: Servers, service: str, **overrides: Any) -> InventorySettings:
    values: dict[str, Any] = {
        "service_name": service,
        "kafka_bootstrap": servers.kafka_bootstrap,
        "mongodb_uri": servers.mongodb_uri,
        "mongodb_database": f"kami_test_{service.replace('-', '_')}",
        "outbox_poll_interval_seconds": 0.05,
        "consumer_retry_base_delay_seconds": 0.05,
        "inventory_master_key": random_key(),
        "inventory_fingerprint_key": random_key(),
        "inventory_maintenance_interval_seconds": 3600.0,
    }
    values.update(overrides)
    return InventorySettings(**values)


@dataclass
class PoolOnMongo:
    """Inventory's handlers over its MongoDB adapters, without Kafka."""

    inventory: Inventory
    adapters: MongoAdapters
    db: AsyncDatabase[Document]
    store: MongoEventStore


@pytest.fixture(name="pool")
async def pool_on_mongo(servers: Servers, mongo_db: AsyncDatabase[Document]) -> PoolOnMongo:
    adapters = MongoAdapters.on(mongo_db, clock=utc_now)
    await adapters.ensure_indexes()
    store = MongoEventStore(mongo_db, producer="inventory")
    await store.ensure_indexes()
    settings = settings_for(servers, "inventory")
    return PoolOnMongo(
        build_inventory(store, adapters, settings, clock=utc_now), adapters, mongo_db, store
    )


@dataclass
class RunningInventory:
    app: FastAPI
    client: httpx.AsyncClient
    auth: AuthKeys
    settings: InventorySettings
    runtime: ServiceRuntime

    @property
    def inventory(self) -> Inventory:
        inventory: Inventory = self.app.state.inventory
        return inventory

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.runtime.db

    def as_user(self, user_id: str, *roles: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.auth.user_token(user_id, *roles)}"}

    def as_service(self, service: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.auth.service_token(service)}"}

    async def list_offer(self, event: OfferListed) -> None:
        await record_offer_listed(event, 1, self.inventory)


TOPICS = (
    "catalog.offer",
    "catalog.product",
    "ordering.order",
    "inventory.pool",
    "aftersales.ticket",
)


@pytest.fixture
async def running_inventory(
    servers: Servers,
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningInventory]:
    """The inventory service on the real servers, on topics of its own
    (`KAMI_TOPIC_PREFIX`), so no other test's messages reach it."""
    prefix = unique("kt")
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(f"{prefix}.{name}.v1", num_partitions=3, replication_factor=1)
                for name in TOPICS
            ]
        )
    finally:
        await admin.close()

    settings = settings_for(servers, unique("inventory"), inventory_max_import_bytes=16 * 1024)
    auth = AuthKeys.generate()
    app = create_app(settings, auth=auth.settings())
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inventory")
    try:
        yield RunningInventory(app, client, auth, settings, runtime)
    finally:
        await client.aclose()
        await runtime.mongo.drop_database(settings.database_name)
        await runtime.stop()


def envelope_of(event: Event, *, producer: str, version: int, correlation_id: str) -> Envelope[Any]:
    return Envelope.wrap(
        event,
        producer=producer,
        aggregate_id=event.aggregate_id,  # type: ignore[attr-defined]
        aggregate_version=version,
        correlation_id=correlation_id,
        occurred_at=datetime.now(UTC),
    )


async def produce(bootstrap: str, envelope: Envelope[Any]) -> None:
    await produce_raw(
        bootstrap,
        type(envelope.payload).topic(),
        encode(envelope),
        envelope.kafka_key,
        envelope.kafka_headers(),
    )
