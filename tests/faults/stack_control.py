"""Stopping and starting the servers of this test run — and only those.

The broker and database restart scenarios need servers the run controls: the
local stack (`deploy/local/stack`) this run started, found by its home. It
comes from `KAMI_TEST_STACK_HOME` (scripts/test exports it when it started the
stack) or from the `servers` fixture when that fixture started the stack
itself. Before touching anything the control checks that this stack is the
one the run talks to: its recorded ports are the run's Kafka and MongoDB
ports, and its pid files name live Kafka and FerretDB processes. FerretDB
is restarted on the backend it runs on (PostgreSQL or SQLite, recorded by
the stack); a PostgreSQL under it stays up. Servers
given from outside (`KAMI_KAFKA_BOOTSTRAP` / `KAMI_MONGODB_URI` without such
a home) are never restarted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tests.conftest import STACK, Servers

STACK_HOME_VARIABLE = "KAMI_TEST_STACK_HOME"
PROCESS_MARK = {"kafka": "kafka.Kafka", "ferretdb": "kami-ferretdb"}


class NotOurs(Exception):
    """The run may not restart these servers; the message says why."""


@dataclass(frozen=True)
class StackControl:
    home: Path
    kafka_port: int
    mongo_port: int
    controller_port: int
    # What the stack recorded when it started FerretDB, so `up` starts it
    # again the same way whatever this process's environment says.
    mongo_backend: str | None = None
    pg_port: int | None = None

    @classmethod
    def of_run(cls, servers: Servers) -> StackControl:
        """The stack behind `servers`, or `NotOurs` saying why there is none."""
        given = os.environ.get(STACK_HOME_VARIABLE)
        home = Path(given) if given else servers.stack_home
        if home is None:
            raise NotOurs(
                f"the servers are external to this run (origin: {servers.origin}; "
                f"Kafka {servers.kafka_bootstrap}, MongoDB {servers.mongodb_uri}) and no "
                f"{STACK_HOME_VARIABLE} names a local stack it owns: it will not restart "
                "servers it does not control"
            )
        kafka_port = _port_of(servers.kafka_bootstrap)
        mongo_port = urlparse(servers.mongodb_uri).port or 27017
        recorded = {name: _read(home / "run" / f"{name}.port") for name in PROCESS_MARK}
        if recorded != {"kafka": str(kafka_port), "ferretdb": str(mongo_port)}:
            raise RuntimeError(
                f"{STACK_HOME_VARIABLE}={home} runs Kafka/FerretDB on ports {recorded}, but "
                f"this run uses {servers.kafka_bootstrap} and {servers.mongodb_uri}"
            )
        pg_port = _read(home / "run" / "postgresql.port")
        control = cls(
            home,
            kafka_port,
            mongo_port,
            _controller_port(home, kafka_port),
            _read(home / "run" / "ferretdb.backend") or None,
            int(pg_port) if pg_port.isdigit() else None,
        )
        for name in PROCESS_MARK:
            if control.pid(name) is None:
                raise RuntimeError(f"the stack at {home} has no live {name}")
        return control

    def env(self) -> dict[str, str]:
        env = os.environ | {
            "KAMI_STACK_HOME": str(self.home),
            "KAMI_STACK_KAFKA_PORT": str(self.kafka_port),
            "KAMI_STACK_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAMI_STACK_MONGO_PORT": str(self.mongo_port),
        }
        if self.mongo_backend:
            env["KAMI_STACK_MONGO_BACKEND"] = self.mongo_backend
        if self.pg_port is not None:
            env["KAMI_STACK_PG_PORT"] = str(self.pg_port)
        return env

    def pid(self, server: str) -> int | None:
        """The live process the stack recorded for `server`, checked by its
        command line (a recycled pid is not ours)."""
        text = _read(self.home / "run" / f"{server}.pid")
        if not text.isdigit():
            return None
        try:
            cmdline = Path(f"/proc/{text}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return None
        return int(text) if PROCESS_MARK[server].encode() in cmdline else None

    def stop(self, server: str, how: signal.Signals = signal.SIGTERM, timeout: float = 40) -> int:
        """Signal the server and wait until it is gone; returns its old pid."""
        pid = self.pid(server)
        if pid is None:
            raise RuntimeError(f"{server} of the stack at {self.home} is not running")
        os.kill(pid, how)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.1)
        return pid

    def up(self) -> None:
        """`deploy/local/stack up` with this stack's home and ports: starts
        whatever is not running and waits until both servers answer."""
        done = subprocess.run(
            [str(STACK), "up"], env=self.env(), capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"stack up failed:\n{done.stdout}\n{done.stderr}")


def _port_of(bootstrap: str) -> int:
    first = bootstrap.split(",")[0]
    return int(first.rpartition(":")[2])


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _controller_port(home: Path, kafka_port: int) -> int:
    for line in _read(home / "conf" / "server.properties").splitlines():
        if line.startswith("controller.quorum.voters="):
            return int(line.rpartition(":")[2])
    return kafka_port + 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
