"""Retries, dead-lettering and redelivery on the real Kafka and FerretDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.consumer import EventConsumer, MongoInbox, Received, RetryPolicy
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.serialization import encode
from kami_events.topics import dead_letter_topic, topic_for
from tests.integration.conftest import eventually, produce_raw
from tests.integration.kafka_helpers import committed_past, header, read_topic, running_broker
from tests.unit.events.sample_events import CounterIncremented, CounterOpened

TOPIC = topic_for("test.counter")


def envelope_of(event: Any, aggregate_id: str, version: int) -> Envelope[Any]:
    return Envelope.wrap(
        event,
        producer="tests",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        correlation_id=aggregate_id,
        occurred_at=datetime.now(UTC),
    )


async def test_failing_handler_is_retried_then_dead_lettered_and_partition_flows(
    mongo_db: AsyncDatabase[Document], kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    key = unique("counter")
    service = unique("svc")
    poison = envelope_of(CounterOpened(name="poison"), key, 1)
    after = envelope_of(CounterIncremented(by=1), key, 2)
    attempts: list[int] = []
    handled: list[str] = []
    consumer = EventConsumer(
        service=service,
        inbox=MongoInbox(mongo_db["inbox"]),
        retry=RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1),
    )

    @consumer.handles(CounterOpened, CounterIncremented)
    async def handle(message: Received[Any]) -> None:
        if message.envelope.aggregate_id != key:
            return
        if message.envelope.event_id == poison.event_id:
            attempts.append(1)
            raise RuntimeError("keys pool is corrupted")
        handled.append(message.envelope.event_type)

    for envelope in (poison, after):  # same key: same partition, in this order
        await produce_raw(
            kafka_bootstrap, TOPIC, encode(envelope), envelope.kafka_key, envelope.kafka_headers()
        )

    async with running_broker(kafka_bootstrap, "tests") as broker:
        consumer.subscribe(broker)
        await broker.start()
        await eventually(lambda: handled == ["CounterIncremented"], message=f"handled={handled}")
    assert len(attempts) == 3

    dead = await read_topic(
        kafka_bootstrap,
        dead_letter_topic(service),
        until=lambda rs: any(header(r, "event_id") == str(poison.event_id) for r in rs),
    )
    [record] = [r for r in dead if header(r, "event_id") == str(poison.event_id)]
    assert record.value == encode(poison)  # the original bytes, untouched
    assert record.key == key.encode()
    assert header(record, "dlq_error_type") == "RuntimeError"
    assert "keys pool is corrupted" in (header(record, "dlq_error_message") or "")
    assert header(record, "dlq_attempts") == "3"
    assert header(record, "dlq_source_topic") == TOPIC
    inbox = await mongo_db["inbox"].find_one({"_id": f"{service}:{poison.event_id}"})
    assert inbox is not None and inbox["outcome"] == "dead_lettered"


async def test_malformed_message_is_dead_lettered_and_consumer_keeps_going(
    mongo_db: AsyncDatabase[Document], kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    key = unique("counter")
    service = unique("svc")
    good = envelope_of(CounterOpened(name="ok"), key, 1)
    handled: list[str] = []
    consumer = EventConsumer(service=service, inbox=MongoInbox(mongo_db["inbox"]))

    @consumer.handles(CounterOpened)
    async def handle(message: Received[Any]) -> None:
        if message.envelope.aggregate_id == key:
            handled.append(str(message.envelope.event_id))

    await produce_raw(kafka_bootstrap, TOPIC, b"\x00\xffnot an event", key.encode())
    await produce_raw(
        kafka_bootstrap,
        TOPIC,
        b'{"event_type": "CounterOpened", "schema_version": 1, "payload": {}}',
        key.encode(),
    )
    await produce_raw(kafka_bootstrap, TOPIC, encode(good), key.encode(), good.kafka_headers())

    async with running_broker(kafka_bootstrap, "tests") as broker:
        consumer.subscribe(broker)
        await broker.start()
        await eventually(lambda: handled == [str(good.event_id)], message=f"handled={handled}")

    dead = await read_topic(
        kafka_bootstrap,
        dead_letter_topic(service),
        until=lambda rs: sum(r.key == key.encode() for r in rs) >= 2,
    )
    mine = [r for r in dead if r.key == key.encode()]
    assert [r.value[:4] for r in mine] == [b"\x00\xffno", b'{"ev']
    assert {header(r, "dlq_error_type") for r in mine} == {"MalformedEvent"}
    assert all(header(r, "dlq_attempts") == "0" for r in mine)


async def test_redelivered_and_replayed_messages_are_handled_once(
    mongo_db: AsyncDatabase[Document], kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    key = unique("counter")
    service = unique("svc")
    envelope = envelope_of(CounterOpened(name="once"), key, 1)
    for _ in range(3):  # the same event on the wire three times
        await produce_raw(
            kafka_bootstrap, TOPIC, encode(envelope), envelope.kafka_key, envelope.kafka_headers()
        )
    calls: list[str] = []

    def make_consumer() -> EventConsumer:
        consumer = EventConsumer(service=service, inbox=MongoInbox(mongo_db["inbox"]))

        @consumer.handles(CounterOpened)
        async def handle(message: Received[Any]) -> None:
            if message.envelope.aggregate_id == key:
                calls.append(message.envelope.event_type)

        return consumer

    first = make_consumer()
    async with running_broker(kafka_bootstrap, "tests") as broker:
        first.subscribe(broker)
        await broker.start()
        await eventually(lambda: calls == ["CounterOpened"])
        records = await read_topic(
            kafka_bootstrap, TOPIC, until=lambda rs: sum(r.key == key.encode() for r in rs) >= 3
        )
        mine = [r for r in records if r.key == key.encode()]
        assert len(mine) == 3
        await eventually(lambda: committed_past(kafka_bootstrap, first.group_id, mine))

    # Replay from offset 0 in a fresh consumer group: the inbox still dedupes.
    replay = make_consumer()
    replay.group_override = unique("replay")
    async with running_broker(kafka_bootstrap, "tests") as broker:
        replay.subscribe(broker)
        await broker.start()
        await eventually(lambda: committed_past(kafka_bootstrap, replay.group_override, mine))
    assert calls == ["CounterOpened"]
