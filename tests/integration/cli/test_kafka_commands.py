"""`kami topics create` and `kami dlq list|redrive` on the real Kafka and
FerretDB, each in a topic namespace of its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from kami_cli.topics import catalogue_topics
from kami_events.consumer import EventConsumer, MongoInbox, Received, RetryPolicy
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.serialization import encode
from kami_events.topics import dead_letter_topic, topic_for
from tests.conftest import Servers
from tests.integration.conftest import eventually, produce_raw
from tests.integration.kafka_helpers import header, read_topic, running_broker
from tests.kami_command import kami
from tests.unit.events.sample_events import CounterIncremented, CounterOpened


async def test_topics_create_makes_every_catalogue_and_dead_letter_topic_once(
    servers: Servers,
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique("kami-t-cli")
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", prefix)
    expected = catalogue_topics()
    streams = {
        "identity": ["user"],
        "catalog": ["product", "offer"],
        "inventory": ["pool"],
        "ordering": ["order", "coupon", "offer_pricing"],
        "payment": ["payment", "deposit"],
        "delivery": ["delivery"],
        "aftersales": ["ticket", "seller"],
        "reseller": ["reseller", "order"],
    }
    named = {f"{prefix}.{s}.{name}.v1" for s, names in streams.items() for name in names}
    named |= {f"{prefix}.{s}.dead-letter.v1" for s in streams}
    assert len(expected) == len(set(expected))
    assert set(expected) == named
    count = len(named)
    env = {"KAMI_KAFKA_BOOTSTRAP": kafka_bootstrap, "KAMI_TOPIC_PREFIX": prefix}

    first = await kami("topics", "create", "--partitions", "2", env=env)
    assert first.code == 0, first
    assert f"{count} created, 0 existed already" in first.stdout

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {d["topic"]: d for d in await admin.describe_topics(expected)}
    finally:
        await admin.close()
    assert {t: len(d["partitions"]) for t, d in described.items()} == dict.fromkeys(expected, 2)

    again = await kami("topics", "create", "--partitions", "4", env=env)
    assert again.code == 0, again
    assert f"0 created, {count} existed already" in again.stdout
    assert f"exists  {prefix}.ordering.order.v1 (2 partitions)" in again.stdout


async def test_topics_create_fails_clearly_without_kafka() -> None:
    ran = await kami("topics", "create", env={"KAMI_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert ran.code == 1
    assert "Kafka at 127.0.0.1:1 is unreachable" in ran.stderr


def _envelope(event: Any, aggregate_id: str, version: int) -> Envelope[Any]:
    return Envelope.wrap(
        event,
        producer="tests",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        correlation_id=aggregate_id,
        occurred_at=datetime.now(UTC),
    )


async def test_a_dead_letter_is_listed_redriven_once_and_then_handled(
    servers: Servers,
    kafka_bootstrap: str,
    mongo_client: AsyncMongoClient[Document],
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique("kami-t-dlq")
    database_prefix = unique("kami_test_dlq").replace("-", "_")
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", prefix)
    service = "delivery"  # whose consumer gives up; topics and databases are the test's own
    inbox = mongo_client[f"{database_prefix}_{service}"]["inbox"]
    source = topic_for("test.counter")
    key = unique("counter")
    poison = _envelope(CounterOpened(name="poison"), key, 1)
    fixed = False
    handled: list[str] = []
    consumer = EventConsumer(
        service=service,
        inbox=MongoInbox(inbox),
        retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
    )

    @consumer.handles(CounterOpened, CounterIncremented)
    async def handle(message: Received[Any]) -> None:
        if not fixed:
            raise RuntimeError("the vault key is not loaded")
        handled.append(str(message.envelope.event_id))

    env = {
        "KAMI_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAMI_MONGODB_URI": servers.mongodb_uri,
        "KAMI_TOPIC_PREFIX": prefix,
        "KAMI_DATABASE_PREFIX": database_prefix,
    }
    try:
        async with running_broker(kafka_bootstrap, service) as broker:
            consumer.subscribe(broker)
            await produce_raw(
                kafka_bootstrap, source, encode(poison), poison.kafka_key, poison.kafka_headers()
            )
            await broker.start()
            await read_topic(kafka_bootstrap, dead_letter_topic(service), until=lambda rs: rs != [])

            listed = await kami("dlq", "list", "--service", service, "--json", env=env)
            assert listed.code == 0, listed
            [letter] = json.loads(listed.stdout)
            assert letter["event_type"] == "CounterOpened"
            assert letter["event_id"] == str(poison.event_id)
            assert letter["error"] == "RuntimeError: the vault key is not loaded"
            assert letter["source_topic"] == source
            assert letter["attempts"] == "2"
            assert letter["redriven_at"] is None
            table = await kami("dlq", "list", env=env)
            assert "CounterOpened" in table.stdout and "the vault key is not loaded" in table.stdout

            fixed = True  # the operator fixed the cause; now the message goes back
            redriven = await kami("dlq", "redrive", service, "--all", env=env)
            assert redriven.code == 0, redriven
            assert "1 redriven, 0 skipped" in redriven.stdout
            await eventually(lambda: handled == [str(poison.event_id)], message=f"{handled}")

            again = await kami("dlq", "redrive", service, "--offset", letter["id"], env=env)
            assert again.code == 0, again
            assert "0 redriven, 1 skipped" in again.stdout
            assert "redriven already" in again.stdout
            relisted = await kami("dlq", "list", "--service", service, "--json", env=env)
            assert json.loads(relisted.stdout)[0]["redriven_at"] is not None
    finally:
        await mongo_client.drop_database(f"{database_prefix}_{service}")
        await mongo_client.drop_database(f"{database_prefix}_operations")

    copies = await read_topic(kafka_bootstrap, source, until=lambda rs: len(rs) >= 2, timeout=5)
    ours = [r for r in copies if header(r, "event_id") == str(poison.event_id)]
    assert len(ours) == 2  # the original and exactly one redrive
    assert all(header(r, "dlq_error_type") is None for r in ours)
    assert handled == [str(poison.event_id)]  # handled once, after the redrive


async def test_redrive_needs_to_be_told_what() -> None:
    ran = await kami("dlq", "redrive", "delivery")
    assert ran.code == 2
    assert "--offset ID (repeatable) or --all" in ran.stderr
    unknown = await kami("dlq", "list", "--service", "shipping")
    assert unknown.code == 2 and "unknown service 'shipping'" in unknown.stderr
