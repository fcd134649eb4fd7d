"""The ordering service on the real Kafka and FerretDB, driven as the other
services and a buyer would: its HTTP API through httpx, other services'
events produced to Kafka as envelopes, its own events read back from Kafka.

Each test gets its own topic namespace (`KAMI_TOPIC_PREFIX`, as the end-to-end
platform does) so the service's fresh consumer group does not replay every
other test's purchases, its own database, and a `ManualClock` started at the
wall-clock time: deadlines fire when a test advances it, never by sleeping
through them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI

from kami_events.catalogue.catalog import OfferListed, ProductKind, ProductPublished
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.identity import Role
from kami_events.clock import ManualClock, utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.runtime import ServiceRuntime
from kami_events.serialization import decode, encode
from kami_events.topics import dead_letter_topic, topic_for
from kami_ordering.app import create_app
from kami_ordering.settings import OrderingSettings
from kami_web.testing import AuthKeys
from tests.integration.conftest import eventually, produce_raw
from tests.integration.kafka_helpers import read_topic

ORDER_TOPIC_AGGREGATE = "ordering.order"


@dataclass
class Ordering:
    """One running ordering service (one process's runtime and app)."""

    app: FastAPI
    runtime: ServiceRuntime
    client: httpx.AsyncClient

    async def stop(self) -> None:
        await self.client.aclose()
        await self.runtime.stop()


@dataclass
class OrderingWorld:
    bootstrap: str
    settings: OrderingSettings
    keys: AuthKeys
    clock: ManualClock
    unique: Callable[[str], str]
    versions: dict[str, int] = field(default_factory=dict)

    async def start(self) -> Ordering:
        app = create_app(self.settings, auth=self.keys.settings(), clock=self.clock)
        runtime: ServiceRuntime = app.state.runtime
        await create_topics(self.bootstrap, [*runtime.consumer.topics, self.order_topic])
        await runtime.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ordering"
        )
        return Ordering(app, runtime, client)

    @property
    def order_topic(self) -> str:
        return topic_for(ORDER_TOPIC_AGGREGATE)

    # -- who calls --------------------------------------------------------------------

    def as_user(self, user_id: str, *roles: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.user_token(user_id, *roles)}"}

    # -- other services' events ----------------------------------------------------------

    async def publish(
        self, event: Event, *, producer: str, correlation_id: str | None = None
    ) -> Envelope[Any]:
        """Produce `event` as its service would: next version of its stream, on its
        topic, a second after whatever happened before (the clock is frozen otherwise)."""
        self.clock.advance(timedelta(seconds=1))
        aggregate_id = getattr(event, "aggregate_id")  # noqa: B009 - every catalogue event has it
        stream = f"{event.aggregate_type}/{aggregate_id}"
        self.versions[stream] = self.versions.get(stream, 0) + 1
        envelope = Envelope.wrap(
            event,
            producer=producer,
            aggregate_id=aggregate_id,
            aggregate_version=self.versions[stream],
            correlation_id=correlation_id or aggregate_id,
            occurred_at=self.clock(),
        )
        await produce_raw(
            self.bootstrap,
            event.topic(),
            encode(envelope),
            envelope.kafka_key,
            envelope.kafka_headers(),
        )
        return envelope

    async def list_offer(
        self,
        ordering: Ordering,
        *,
        price: int = 2_500,
        mode: DeliveryMode = DeliveryMode.AUTO,
        fields: tuple[str, ...] = (),
        max_quantity: int = 5,
    ) -> tuple[str, str]:
        """Catalog publishes a product and lists an offer; returns (offer id, seller id)
        once ordering's read model has the offer."""
        product_id, offer_id, seller_id = (
            self.unique("product"),
            self.unique("offer"),
            self.unique("seller"),
        )
        await self.publish(
            ProductPublished(
                product_id=product_id,
                category_id="games",
                name="100 points",
                kind=ProductKind.GAME_POINTS,
                face_value=10_000,
                required_buyer_fields=list(fields),
            ),
            producer="catalog",
        )
        await self.publish(
            OfferListed(
                offer_id=offer_id,
                product_id=product_id,
                seller_id=seller_id,
                unit_price=price,
                delivery_mode=mode,
                manual_delivery_sla_minutes=30 if mode is DeliveryMode.MANUAL else None,
                guarantee_window_minutes=15,
                max_quantity_per_order=max_quantity,
            ),
            producer="catalog",
        )

        async def known() -> bool:
            db = ordering.runtime.db
            return (
                await db["offers"].find_one({"_id": offer_id}) is not None
                and await db["products"].find_one({"_id": product_id}) is not None
            )

        await eventually(known, message="ordering never learnt the offer")
        return offer_id, seller_id

    # -- what ordering says -----------------------------------------------------------------

    async def order_events(
        self, order_id: str, until: Callable[[list[str]], bool], timeout: float = 30.0
    ) -> list[Envelope[Event]]:
        """Ordering's events for `order_id` on its topic, read until `until(types)` holds."""

        def of_order(records: list[Any]) -> list[Envelope[Event]]:
            envelopes = [decode(r.value) for r in records]
            return [e for e in envelopes if e.aggregate_id == order_id]

        records = await read_topic(
            self.bootstrap,
            self.order_topic,
            until=lambda rs: until([e.event_type for e in of_order(rs)]),
            timeout=timeout,
        )
        return of_order(records)

    async def wait_for_state(
        self, ordering: Ordering, order_id: str, buyer: str, state: str
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            response = await ordering.client.get(f"/orders/{order_id}", headers=self.as_user(buyer))
            seen.update(response.json())
            return bool(seen.get("state") == state)

        await eventually(reached, message=f"order {order_id} never reached {state}: {seen}")
        return seen


async def create_topics(bootstrap: str, topics: list[str]) -> None:
    """Create the topics up front, so a consumer subscribing to them is assigned
    partitions at once instead of after its next metadata refresh."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            with contextlib.suppress(Exception):  # created meanwhile by auto-creation
                await admin.create_topics(
                    [NewTopic(t, num_partitions=3, replication_factor=1) for t in missing]
                )
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def ordering_world(
    *,
    bootstrap: str,
    mongodb_uri: str,
    unique: Callable[[str], str],
    monkeypatch: Any,
) -> AsyncIterator[OrderingWorld]:
    prefix = unique("kami-t-ord")
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", prefix)
    service = unique("ordering")
    settings = OrderingSettings(
        service_name=service,
        kafka_bootstrap=bootstrap,
        mongodb_uri=mongodb_uri,
        mongodb_database=f"kami_test_{service.replace('-', '_')}",
        outbox_poll_interval_seconds=0.05,
        consumer_retry_base_delay_seconds=0.05,
        ordering_deadline_poll_seconds=0.1,
        ordering_metrics_refresh_seconds=0.2,
    )
    world = OrderingWorld(
        bootstrap=bootstrap,
        settings=settings,
        keys=AuthKeys.generate(),
        clock=ManualClock(utc_now()),
        unique=unique,
    )
    await create_topics(bootstrap, [dead_letter_topic(service)])
    try:
        yield world
    finally:
        from kami_events.mongo import connect

        client = connect(mongodb_uri, app_name="kami-tests")
        await client.drop_database(settings.database_name)
        await client.close()


MINUTES = timedelta(minutes=1)
