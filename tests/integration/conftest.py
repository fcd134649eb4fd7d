from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.mongo import Document, connect
from tests.conftest import Servers

pytestmark = pytest.mark.integration

# How long to wait for a server before failing the run (never skipping).
SERVER_TIMEOUT_MS = int(os.environ.get("KAMI_TEST_SERVER_TIMEOUT_MS", "15000"))


@pytest.fixture(scope="session")
async def mongo_client(servers: Servers) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = connect(servers.mongodb_uri, app_name="kami-tests", timeout_ms=SERVER_TIMEOUT_MS)
    try:
        await client.admin.command("ping")
    except Exception as exc:
        pytest.fail(f"MongoDB at {servers.mongodb_uri} ({servers.origin}) is unreachable: {exc}")
    yield client
    await client.close()


@pytest.fixture
async def mongo_db(
    mongo_client: AsyncMongoClient[Document],
) -> AsyncIterator[AsyncDatabase[Document]]:
    """A fresh database per test, dropped afterwards."""
    name = f"kami_test_{uuid4().hex[:12]}"
    yield mongo_client[name]
    await mongo_client.drop_database(name)


@pytest.fixture(scope="session")
async def kafka_bootstrap(servers: Servers) -> str:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=servers.kafka_bootstrap, request_timeout_ms=SERVER_TIMEOUT_MS
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=SERVER_TIMEOUT_MS / 1000)
        await admin.describe_cluster()
    except Exception as exc:
        pytest.fail(
            f"Kafka at {servers.kafka_bootstrap} ({servers.origin}) is unreachable: {exc!r}"
        )
    finally:
        await admin.close()
    return servers.kafka_bootstrap


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names no other test (or earlier run) uses: services, ids, topics."""
    return lambda prefix: f"{prefix}-{uuid4().hex[:10]}"


async def eventually(
    condition: Callable[[], Awaitable[object]] | Callable[[], object],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition not met",
) -> None:
    """Poll until `condition` holds; real servers take real (short) time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        await asyncio.sleep(interval)


async def produce_raw(
    bootstrap: str, topic: str, value: bytes, key: bytes, headers: dict[str, str] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value=value,
            key=key,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
        )
    finally:
        await producer.stop()
