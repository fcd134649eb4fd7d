"""Real-Kafka plumbing shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from kami_events.kafka import make_broker
from kami_events.settings import ServiceSettings


@asynccontextmanager
async def running_broker(bootstrap: str, service: str) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(ServiceSettings(service_name=service, kafka_bootstrap=bootstrap))
    yield broker
    await broker.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[ConsumerRecord[Any, Any]]], bool],
    timeout: float = 30.0,
) -> list[ConsumerRecord[Any, Any]]:
    """Every record of `topic` from the start, read until `until(records)` holds."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-reader-{uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until(records):
            if loop.time() > deadline:
                raise AssertionError(f"timed out reading {topic}: got {len(records)} records")
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


def header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return bytes(value).decode()
    return None


async def committed_past(
    bootstrap: str, group_id: str | None, records: list[ConsumerRecord[Any, Any]]
) -> bool:
    """The group's committed offsets are past every one of `records`: the
    consumer has finished with them (it commits only after handling)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    return all(committed.get((r.topic, r.partition), -1) > r.offset for r in records)
