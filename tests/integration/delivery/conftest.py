"""The delivery service on the real Kafka and FerretDB, with inventory played
by an HTTP test double (a FastAPI app served by uvicorn on a free port).

Each test gets its own topic namespace (`KAMI_TOPIC_PREFIX`), database and
consumer group, so it neither sees nor disturbs anyone else's events.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from kami_delivery.app import create_app
from kami_delivery.handlers import DeliveryDeps
from kami_delivery.settings import DeliverySettings
from kami_events.catalogue.identity import Role
from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.mongo import Document
from kami_events.runtime import ServiceRuntime
from kami_events.serialization import decode, encode
from kami_events.topics import dead_letter_topic, topic_for
from kami_web.auth import AuthSettings, CallingService, TokenVerifier, install_auth
from kami_web.errors import ApiError, install_error_handlers
from kami_web.testing import AuthKeys
from tests.conftest import Servers
from tests.integration.conftest import eventually, produce_raw
from tests.integration.kafka_helpers import read_topic
from tests.unit.delivery.fakes import VAULT_KEY_B64

# What delivery consumes and produces.
AGGREGATES = (
    "ordering.order",
    "identity.user",
    "catalog.offer",
    "inventory.pool",
    "delivery.delivery",
)
PARTITIONS = 2


# -- inventory, played by a test double over real HTTP ------------------------------------


class RevealRequest(BaseModel):
    key_ids: list[str]


@dataclass
class InventoryDouble:
    """Inventory's internal reveal API, answering from `keys` as the contract says."""

    auth: AuthSettings
    url: str = ""
    # order id -> key id -> (secret, status); status "reserved"/"sold" or an unavailable one.
    keys: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    calls: list[tuple[str, list[str], str]] = field(default_factory=list)
    # Orders for which it answers 503, as if its database were down.
    failing: set[str] = field(default_factory=set)
    # How many calls any reveal waits for, e.g. to let a backlog build up.
    gate: asyncio.Event | None = None

    def stock(self, order_id: str, **secrets: str) -> None:
        self.keys[order_id] = {key_id: (s, "reserved") for key_id, s in secrets.items()}

    def app(self) -> FastAPI:
        app = FastAPI()
        install_error_handlers(app)
        install_auth(app, TokenVerifier(self.auth))

        @app.post("/internal/orders/{order_id}/keys/reveal")
        async def reveal(
            order_id: str, body: RevealRequest, caller: CallingService
        ) -> dict[str, Any]:
            self.calls.append((order_id, body.key_ids, caller.subject))
            if self.gate is not None:
                await self.gate.wait()
            if order_id in self.failing:
                raise ApiError(503, "unavailable", "inventory is down")
            held = self.keys.get(order_id, {})
            keys, unavailable = [], []
            for key_id in body.key_ids:
                secret, status = held.get(key_id, ("", "unknown"))
                if status in ("reserved", "sold"):
                    keys.append(
                        {"key_id": key_id, "secret": secret, "expires_at": None, "status": status}
                    )
                else:
                    unavailable.append({"key_id": key_id, "status": status})
            return {"keys": keys, "unavailable": unavailable}

        return app


@pytest.fixture
def auth_keys() -> AuthKeys:
    return AuthKeys.generate()


@pytest.fixture
async def inventory(auth_keys: AuthKeys) -> AsyncIterator[InventoryDouble]:
    double = InventoryDouble(auth_keys.settings())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(double.app(), log_level="warning", lifespan="off", access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started, timeout=10, message="inventory double did not start")
    double.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield double
    if double.gate is not None:
        double.gate.set()
    server.should_exit = True
    await serving
    sock.close()


# -- an isolated topic namespace -----------------------------------------------------------


@pytest.fixture
async def topics(
    kafka_bootstrap: str, unique: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> str:
    prefix = unique("kami-dlv")
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        names = [topic_for(a) for a in AGGREGATES] + [dead_letter_topic("delivery")]
        await admin.create_topics(
            [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()
    return prefix


# -- the delivery service ---------------------------------------------------------------------


@dataclass
class Delivery:
    """A running delivery service and what a test drives it with."""

    app: FastAPI
    runtime: ServiceRuntime
    deps: DeliveryDeps
    http: httpx.AsyncClient
    keys: AuthKeys
    bootstrap: str

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.runtime.db

    def as_user(self, user_id: str, *roles: Role) -> dict[str, str]:
        token = self.keys.user_token(user_id, *roles, ttl=timedelta(hours=3))
        return {"Authorization": f"Bearer {token}"}

    async def publish(self, *envelopes: Envelope[Any]) -> None:
        for envelope in envelopes:
            await produce_raw(
                self.bootstrap,
                topic_for(envelope.aggregate_type),
                encode(envelope),
                envelope.kafka_key,
                envelope.kafka_headers(),
            )

    async def emitted(
        self, until: Callable[[list[Envelope[Event]]], bool], timeout: float = 30.0
    ) -> list[Envelope[Event]]:
        """Delivery's events on its topic, read from the start until `until` holds."""
        records = await read_topic(
            self.bootstrap,
            topic_for("delivery.delivery"),
            until=lambda rs: until([decode(r.value) for r in rs]),
            timeout=timeout,
        )
        return [decode(r.value) for r in records]


async def read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every message value on one of the test's topics right now, from every partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []

        async def behind() -> bool:
            for tp, end in ends.items():
                if await consumer.position(tp) < end:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            values.extend(r.value for records in batch.values() for r in records)
        return values
    finally:
        await consumer.stop()


@pytest.fixture
def start_delivery(
    servers: Servers,
    kafka_bootstrap: str,
    topics: str,
    inventory: InventoryDouble,
    auth_keys: AuthKeys,
    unique: Callable[[str], str],
) -> Callable[..., Any]:
    @asynccontextmanager
    async def start(clock: Clock = utc_now, **overrides: Any) -> AsyncIterator[Delivery]:
        settings = DeliverySettings(
            kafka_bootstrap=kafka_bootstrap,
            mongodb_uri=servers.mongodb_uri,
            mongodb_database=unique("kami_test_delivery").replace("-", "_"),
            delivery_vault_key=VAULT_KEY_B64,
            delivery_inventory_url=inventory.url,
            outbox_poll_interval_seconds=0.05,
            consumer_max_attempts=3,
            consumer_retry_base_delay_seconds=0.05,
            delivery_lane_idle_poll_seconds=0.1,
            delivery_manual_poll_seconds=0.1,
            delivery_retry_base_seconds=0.1,
            delivery_retry_max_seconds=0.2,
            **overrides,
        )
        app = create_app(settings, auth=auth_keys.settings(), clock=clock)
        runtime: ServiceRuntime = app.state.runtime
        runtime.consumer.group_override = unique("kami-delivery-test")
        await runtime.start()
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://delivery") as http:
                yield Delivery(app, runtime, app.state.delivery, http, auth_keys, kafka_bootstrap)
        finally:
            await runtime.mongo.drop_database(settings.database_name)
            await runtime.stop()

    return start
