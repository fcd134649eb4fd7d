"""Which real servers the tests use (DESIGN §8).

`KAMI_KAFKA_BOOTSTRAP` / `KAMI_MONGODB_URI` always win. Otherwise, where a
Docker daemon answers, testcontainers start Kafka and MongoDB 7; else the
project's own local stack (`deploy/local/stack`) is started, and stopped at
the end if this run started it. Unreachable servers fail the run: they are
never a reason to skip.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from kami_events.mongo import Document, connect

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "deploy" / "local" / "stack"


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    mongodb_uri: str
    origin: str
    # The local stack this run started itself (so its tests may restart its
    # servers, tests/faults); None for servers it was given or found running.
    stack_home: Path | None = None


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _stack_env() -> dict[str, str]:
    out = subprocess.run([str(STACK), "env"], check=True, capture_output=True, text=True).stdout
    values = {}
    for line in out.splitlines():
        line = line.removeprefix("export ").strip()
        if "=" in line:
            name, _, value = line.partition("=")
            values[name] = value.strip("'\"")
    return values


@pytest.fixture(scope="session", autouse=True)
def databases_dropped_at_the_end() -> Iterator[None]:
    """Tests drop their databases only when the whole run is over.

    FerretDB 1.24 removes a dropped database's file but leaves its WAL
    behind; a straggling writer (a relay or consumer still stopping) then
    recreates the database over the stale WAL, which corrupts it and crashes
    the server with SIGBUS (docs/storage.md). So a test's `drop_database` is
    recorded, and done once every service of the run has stopped.
    """
    dropped: list[tuple[str, str]] = []
    real_drop = AsyncMongoClient.drop_database

    async def record_drop(
        self: AsyncMongoClient[Document], name: object, *args: object, **kwargs: object
    ) -> None:
        database = name if isinstance(name, str) else str(getattr(name, "name", name))
        host, port = next(iter(self.topology_description.server_descriptions()))
        dropped.append((f"mongodb://{host}:{port}/", database))

    AsyncMongoClient.drop_database = record_drop  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        AsyncMongoClient.drop_database = real_drop  # type: ignore[method-assign]
        if dropped:
            asyncio.run(_drop_all(real_drop, dropped))


async def _drop_all(real_drop: Any, dropped: list[tuple[str, str]]) -> None:
    for uri in {uri for uri, _ in dropped}:
        client = connect(uri, app_name="kami-tests-cleanup", timeout_ms=5000)
        try:
            for name in sorted({name for u, name in dropped if u == uri}):
                await real_drop(client, name)
        except Exception as exc:  # the servers may be gone already: nothing to clean
            print(f"could not drop test databases at {uri}: {exc!r}")
        finally:
            await client.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    kafka = os.environ.get("KAMI_KAFKA_BOOTSTRAP")
    mongo = os.environ.get("KAMI_MONGODB_URI")
    if kafka and mongo:
        yield Servers(kafka, mongo, "environment")
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer() as k, MongoDbContainer("mongo:7") as m:
            yield Servers(
                kafka or k.get_bootstrap_server(), mongo or m.get_connection_url(), "testcontainers"
            )
        return
    already_up = subprocess.run([str(STACK), "status"], capture_output=True).returncode == 0
    up = subprocess.run([str(STACK), "up"], capture_output=True, text=True)
    if up.returncode != 0:
        pytest.exit(f"could not start the local stack:\n{up.stdout}\n{up.stderr}", returncode=3)
    env = _stack_env()
    owned = not already_up and not kafka and not mongo
    try:
        yield Servers(
            kafka or env["KAMI_KAFKA_BOOTSTRAP"],
            mongo or env["KAMI_MONGODB_URI"],
            "local stack",
            Path(os.environ.get("KAMI_STACK_HOME") or REPO / ".local-stack") if owned else None,
        )
    finally:
        if not already_up:
            subprocess.run([str(STACK), "down"], check=False)
