"""Which real servers the tests use (DESIGN §8).

`KAMI_KAFKA_BOOTSTRAP` / `KAMI_MONGODB_URI` always win. Otherwise, where a
Docker daemon answers, testcontainers start Kafka and MongoDB 7; else the
project's own local stack (`deploy/local/stack`) is started, and stopped at
the end if this run started it. Unreachable servers fail the run: they are
never a reason to skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "deploy" / "local" / "stack"


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    mongodb_uri: str
    origin: str


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
    try:
        yield Servers(
            kafka or env["KAMI_KAFKA_BOOTSTRAP"],
            mongo or env["KAMI_MONGODB_URI"],
            "local stack",
        )
    finally:
        if not already_up:
            subprocess.run([str(STACK), "down"], check=False)
