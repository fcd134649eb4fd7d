"""The physical floor on this machine, measured in the same run: what one
Kafka hop, one FerretDB write and read, one HTTP call and one payment
password check cost with nothing of Kami around them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from argon2 import PasswordHasher, Type

from kami_bench.stats import Summary
from kami_events.mongo import connect
from kami_payment.settings import PaymentSettings


@dataclass(frozen=True)
class Floor:
    kafka_round_trip: Summary  # produce (acks=all, idempotent) → a consumer has it
    mongo_insert: Summary  # insert_one of a commit-sized document
    mongo_find_id: Summary  # find_one({"_id": ...})
    mongo_find_field: Summary  # find_one on another field: a scan on FerretDB
    mongo_collection_size: int
    http_round_trip: Summary  # GET /healthz of a service
    argon2_verify: Summary  # a payment password check at payment's settings


async def _timed(samples: int, warmup: int, call: Callable[[int], Awaitable[object]]) -> Summary:
    for i in range(warmup):
        await call(-1 - i)
    took = []
    for i in range(samples):
        start = time.perf_counter()
        await call(i)
        took.append(time.perf_counter() - start)
    return Summary.of(took)


async def kafka_round_trip(bootstrap: str, topic: str, samples: int) -> Summary:
    """Produce one message and wait until an assigned consumer receives it,
    with the producer settings the services use (idempotent, acks=all)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await consumer.position(partition)
        payload = b"x" * 800  # about one envelope

        async def hop(_: int) -> None:
            await producer.send_and_wait(topic, payload)
            await consumer.getone(partition)

        return await _timed(samples, 20, hop)
    finally:
        await consumer.stop()
        await producer.stop()


async def mongo_floor(uri: str, database: str, samples: int) -> tuple[Summary, ...]:
    client = connect(uri, app_name="kami-bench-floor")
    try:
        collection = client[database]["floor"]
        ids = [f"floor-{uuid4().hex}" for _ in range(samples + 20)]
        body = {"payload": "x" * 600, "stream_id": "bench", "version": 1}

        async def insert(i: int) -> None:
            await collection.insert_one({"_id": ids[i], "n": i, **body})

        async def find_id(i: int) -> None:
            assert await collection.find_one({"_id": ids[i]}) is not None

        async def find_field(i: int) -> None:
            assert await collection.find_one({"n": i}) is not None

        inserts = await _timed(samples, 20, insert)
        finds = await _timed(samples, 5, find_id)
        scans = await _timed(samples, 5, find_field)
        size = await collection.estimated_document_count()
        return inserts, finds, scans, Summary(size, None, None, None, None)
    finally:
        await client.close()


async def http_floor(url: str, samples: int) -> Summary:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def get(_: int) -> None:
            (await client.get("/healthz")).raise_for_status()

        return await _timed(samples, 10, get)


_PAYMENT_DEFAULTS = PaymentSettings.model_fields


@dataclass(frozen=True)
class Argon2Cost:
    """payment's argon2id parameters (`KAMI_PAYMENT_ARGON2_*`); the defaults
    are payment's own, read from its settings so the report cannot drift."""

    time_cost: int = _PAYMENT_DEFAULTS["payment_argon2_time_cost"].default
    memory_kib: int = _PAYMENT_DEFAULTS["payment_argon2_memory_kib"].default
    parallelism: int = _PAYMENT_DEFAULTS["payment_argon2_parallelism"].default


async def argon2_floor(cost: Argon2Cost, samples: int) -> Summary:
    hasher = PasswordHasher(
        time_cost=cost.time_cost,
        memory_cost=cost.memory_kib,
        parallelism=cost.parallelism,
        type=Type.ID,
    )
    stored = hasher.hash("135790")

    async def verify(_: int) -> None:
        hasher.verify(stored, "135790")

    return await _timed(samples, 1, verify)


async def measure_floor(
    *,
    bootstrap: str,
    topic: str,
    mongo_uri: str,
    database: str,
    http_url: str,
    argon2: Argon2Cost,
    samples: int,
) -> Floor:
    kafka = await kafka_round_trip(bootstrap, topic, samples)
    inserts, finds, scans, size = await mongo_floor(mongo_uri, database, samples)
    http = await http_floor(http_url, samples)
    password_check = await argon2_floor(argon2, max(5, samples // 20))
    return Floor(kafka, inserts, finds, scans, size.count, http, password_check)
