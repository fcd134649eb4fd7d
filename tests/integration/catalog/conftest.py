"""The catalog service on the real servers, driven over its HTTP API.

`catalog`: the service on FerretDB with its consumer fed message by message
(`feed`), the way Kafka hands them over, but without Kafka: for search,
reviews and projections. `live_catalog`: the whole runtime started on the
real Kafka too (relay, consumer group, pollers), for what crosses the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kami_catalog.app import CatalogService, create_app
from kami_catalog.settings import CatalogSettings
from kami_events.catalogue.common import AggregateEvent
from kami_events.catalogue.identity import Role
from kami_events.clock import ManualClock, utc_now
from kami_events.consumer import IncomingMessage
from kami_events.envelope import Envelope
from kami_events.serialization import encode
from kami_events.testing import RecordingDeadLetters
from kami_web.testing import AuthKeys
from tests.conftest import Servers
from tests.integration.conftest import produce_raw

KEYS = AuthKeys.generate()


@dataclass
class CatalogUnderTest:
    service: CatalogService
    client: httpx.AsyncClient
    clock: ManualClock
    kafka_bootstrap: str | None = None
    versions: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def as_user(user_id: str, *roles: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS.user_token(user_id, *roles)}"}

    OPERATOR = "op-1"

    async def ok(self, method: str, url: str, user: dict[str, str] | None = None, **kw: Any) -> Any:
        response = await self.client.request(method, url, headers=user or {}, **kw)
        assert response.status_code < 300, f"{method} {url}: {response.status_code} {response.text}"
        return response.json()

    async def add_category(self, slug: str, name: str, parent_id: str | None = None) -> None:
        await self.ok(
            "POST",
            "/categories",
            self.as_user(self.OPERATOR, Role.OPERATOR),
            json={"slug": slug, "name": name, "parent_id": parent_id},
        )

    async def publish(self, name: str, category: str, **details: Any) -> str:
        body = {
            "name": name,
            "category_id": category,
            "kind": details.pop("kind", "game_points"),
            "delivery_mode": details.pop("delivery_mode", "auto"),
            "face_value": details.pop("face_value", None),
            **details,
        }
        result = await self.ok(
            "POST", "/products", self.as_user(self.OPERATOR, Role.OPERATOR), json=body
        )
        return str(result["product_id"])

    async def list_offer(self, seller_id: str, product_id: str, price: int, **terms: Any) -> str:
        body = {
            "product_id": product_id,
            "unit_price": price,
            "delivery_mode": terms.pop("delivery_mode", "auto"),
            "max_quantity_per_order": terms.pop("max_quantity_per_order", 10),
            **terms,
        }
        result = await self.ok("POST", "/offers", self.as_user(seller_id, Role.SELLER), json=body)
        return str(result["offer_id"])

    def envelope(
        self,
        event: AggregateEvent,
        *,
        producer: str,
        occurred_at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> Envelope[Any]:
        """The next event of its stream, as its producer would publish it."""
        stream = f"{event.aggregate_type}/{event.aggregate_id}"
        self.versions[stream] = self.versions.get(stream, 0) + 1
        return Envelope.wrap(
            event,
            producer=producer,
            aggregate_id=event.aggregate_id,
            aggregate_version=self.versions[stream],
            correlation_id=correlation_id or event.aggregate_id,
            occurred_at=occurred_at or self.clock(),
        )

    async def feed(self, event: AggregateEvent, *, producer: str, **options: Any) -> str:
        """Hand one event to the catalog's consumer, as Kafka would."""
        envelope = self.envelope(event, producer=producer, **options)
        outcome = await self.service.runtime.consumer.consume(
            _as_fetched(envelope, event.topic(), offset=0)
        )
        assert outcome == "handled", outcome
        return outcome

    async def feed_batch(self, events: list[tuple[AggregateEvent, str]]) -> list[str]:
        """Hand `(event, producer)`s to the consumer as one batch of one
        partition, as one Kafka fetch would; returns each one's outcome."""
        messages = [
            _as_fetched(self.envelope(event, producer=producer), event.topic(), offset=offset)
            for offset, (event, producer) in enumerate(events)
        ]
        return await self.service.runtime.consumer.consume_batch(messages)

    async def send(self, event: AggregateEvent, *, producer: str, **options: Any) -> None:
        """Publish one event to its topic on the real Kafka."""
        assert self.kafka_bootstrap is not None
        envelope = self.envelope(event, producer=producer, **options)
        await produce_raw(
            self.kafka_bootstrap,
            event.topic(),
            encode(envelope),
            envelope.kafka_key,
            envelope.kafka_headers(),
        )


def _as_fetched(envelope: Envelope[Any], topic: str, *, offset: int) -> IncomingMessage:
    """`envelope` as a Kafka fetch hands it to the consumer (partition 0)."""
    return IncomingMessage(
        value=encode(envelope),
        key=envelope.kafka_key,
        headers=envelope.kafka_headers(),
        topic=topic,
        partition=0,
        offset=offset,
    )


def _settings(servers: Servers, kafka_bootstrap: str | None) -> CatalogSettings:
    return CatalogSettings(
        kafka_bootstrap=kafka_bootstrap or servers.kafka_bootstrap,
        mongodb_uri=servers.mongodb_uri,
        mongodb_database=f"kami_test_catalog_{uuid4().hex[:12]}",
        outbox_poll_interval_seconds=0.05,
        projection_interval_seconds=0.2,
        consumer_retry_base_delay_seconds=0.05,
    )


@pytest.fixture
async def catalog(servers: Servers) -> AsyncIterator[CatalogUnderTest]:
    clock = ManualClock(utc_now())
    settings = _settings(servers, None)
    app = create_app(settings, clock=clock, auth=KEYS.settings())
    service: CatalogService = app.state.catalog
    service.runtime.consumer.dead_letters = RecordingDeadLetters()
    await service.runtime.store.ensure_indexes()
    await service.prepare()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        yield CatalogUnderTest(service, client, clock)
    await service.runtime.mongo.drop_database(settings.database_name)
    await service.runtime.mongo.close()


async def _start_group_at_the_end(bootstrap: str, group_id: str, topics: list[str]) -> None:
    """Commit the group's offsets at the end of `topics`, so a new group reads
    only what this test publishes, not every earlier run's events."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic["error_code"] == 0
        for partition in topic["partitions"]
    ]
    if not partitions:
        return
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await reader.start()
    try:
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        await reader.commit(dict(ends))
    finally:
        await reader.stop()


@pytest.fixture
async def live_catalog(
    servers: Servers, kafka_bootstrap: str, unique: Callable[[str], str]
) -> AsyncIterator[CatalogUnderTest]:
    clock = ManualClock(utc_now())
    settings = _settings(servers, kafka_bootstrap)
    app = create_app(settings, clock=utc_now, auth=KEYS.settings())
    service: CatalogService = app.state.catalog
    group = unique("kami-catalog-test")
    service.runtime.consumer.group_override = group
    await _start_group_at_the_end(kafka_bootstrap, group, service.runtime.consumer.topics)
    await service.runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
            yield CatalogUnderTest(service, client, clock, kafka_bootstrap)
    finally:
        await service.runtime.mongo.drop_database(settings.database_name)
        await service.runtime.stop()
