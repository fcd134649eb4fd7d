"""The integration tests truly use real servers: they see each other's
writes through independent connections, and the suite fails (never skips)
when a server is down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.mongo import Document, connect
from tests.conftest import REPO, Servers
from tests.integration.conftest import produce_raw
from tests.integration.kafka_helpers import read_topic


async def test_mongo_writes_are_visible_to_an_independent_client(
    servers: Servers, mongo_db: AsyncDatabase[Document], unique: Callable[[str], str]
) -> None:
    marker = unique("marker")
    await mongo_db["probe"].insert_one({"_id": marker})
    other = connect(servers.mongodb_uri, app_name="kami-tests-other")
    try:
        assert await other[mongo_db.name]["probe"].find_one({"_id": marker}) == {"_id": marker}
        info = await other.admin.command("buildInfo")
    finally:
        await other.close()
    if servers.origin == "local stack":
        # The embedded build reports no release string, but only FerretDB has the field.
        assert "ferretdbVersion" in info


async def test_kafka_messages_reach_an_independent_consumer(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("kami.test.probe")
    await produce_raw(kafka_bootstrap, topic, b"hello", b"k")
    records = await read_topic(kafka_bootstrap, topic, until=lambda rs: len(rs) >= 1)
    assert [r.value for r in records] == [b"hello"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_suite_against(kafka: str, mongo: str, test: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KAMI_KAFKA_BOOTSTRAP=kafka, KAMI_MONGODB_URI=mongo)
    env["KAMI_TEST_SERVER_TIMEOUT_MS"] = "2000"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_suite_fails_when_mongodb_is_down(servers: Servers) -> None:
    dead = f"mongodb://127.0.0.1:{_closed_port()}/"
    result = _run_suite_against(
        servers.kafka_bootstrap,
        dead,
        "tests/integration/test_event_store.py::test_append_and_load_round_trip",
    )
    assert result.returncode != 0, result.stdout
    assert "unreachable" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]


def test_suite_fails_when_kafka_is_down(servers: Servers) -> None:
    dead = f"127.0.0.1:{_closed_port()}"
    result = _run_suite_against(
        dead,
        servers.mongodb_uri,
        "tests/integration/test_outbox_relay.py::test_relay_publishes_in_stream_order_to_a_consumer",
    )
    assert result.returncode != 0, result.stdout
    assert "unreachable" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]
