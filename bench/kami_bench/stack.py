"""The bench's own platform: every service as a process (kami_local.Platform)
on free ports, with its own databases (`bench<run>_<service>`) and Kafka
topic namespace (`kami-bench-<run>`), so it never meets the demo, the e2e
runs or another engineer's bench on a shared stack.

`--keep` leaves it running and records it in `.local-stack/bench/platform.json`;
`--reuse` runs against it again; `--down` stops it and drops its data.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pymongo.errors import PyMongoError

from kami_bench.floor import Argon2Cost
from kami_bench.market import DEFAULT_PRIORITY
from kami_cli.topics import catalogue_topics, create_topics
from kami_events.mongo import connect
from kami_local import REPO, Platform, available_services

HOME = REPO / ".local-stack" / "bench"
STATE = HOME / "platform.json"
OPERATOR_PHONE = "13900000001"

_LOOSE = {"limit": 1_000_000, "window_seconds": 60}
# Tiers keep identity's default delivery priorities; the daily payment limits
# are raised so that no bench payment is refused for the buyer's limit.
_NO_LIMIT = 10**12
TIERS = {
    tier: {
        "daily_payment_limit": _NO_LIMIT,
        "delivery_priority": priority,
        "aftersales_priority": priority,
    }
    for tier, priority in DEFAULT_PRIORITY.items()
}


def bench_env(prefix: str, *, cheap_payment_hashing: bool) -> dict[str, str]:
    env = {
        "KAMI_IDENTITY_OPERATOR_PHONES": OPERATOR_PHONE,
        # Many sign-ups and logins from one address, quickly.
        "KAMI_IDENTITY_RATE_LIMITS": json.dumps(
            {
                name: _LOOSE
                for name in (
                    "otp_per_phone",
                    "otp_per_ip",
                    "login_per_phone",
                    "login_per_ip",
                    "register_per_ip",
                )
            }
        ),
        "KAMI_IDENTITY_OTP_RESEND_COOLDOWN_SECONDS": "0",
        # Login passwords are off the purchase path: cheap, so seeding is quick.
        "KAMI_IDENTITY_ARGON2_TIME_COST": "1",
        "KAMI_IDENTITY_ARGON2_MEMORY_KIB": "8192",
        "KAMI_IDENTITY_ARGON2_PARALLELISM": "1",
        "KAMI_IDENTITY_ACCESS_TOKEN_TTL_SECONDS": "3600",
        "KAMI_IDENTITY_TIERS": json.dumps(TIERS),
        "KAMI_PAYMENT_DEFAULT_DAILY_LIMIT": str(_NO_LIMIT),
        # Consumer lag each second: the bench waits for it to reach 0 between phases.
        "KAMI_CONSUMER_LAG_REFRESH_SECONDS": "1",
        # The gateway simulator's trades go with the run's other data.
        "KAMI_PAYMENT_SIMULATOR_DATABASE": f"{prefix}_payment_gateway_simulator",
    }
    if cheap_payment_hashing:
        # The payment password is checked on every wallet payment (argon2id).
        env |= {
            "KAMI_PAYMENT_ARGON2_TIME_COST": "1",
            "KAMI_PAYMENT_ARGON2_MEMORY_KIB": "8192",
            "KAMI_PAYMENT_ARGON2_PARALLELISM": "1",
        }
    return env


def kafka_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """Whether the first bootstrap server accepts a connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 9092)), timeout):
            return True
    except (OSError, ValueError):
        return False


async def mongo_answers(uri: str) -> bool:
    """Whether the server answers a ping (a bare TCP probe would make FerretDB
    log a warning for a connection that never spoke)."""
    client = connect(uri, app_name="kami-bench-probe", timeout_ms=3000)
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        await client.close()
    return True


@dataclass
class BenchPlatform:
    platform: Platform
    services: list[str]
    market: dict[str, Any] | None = None  # what a kept run left (`market_state`)

    @property
    def database_prefix(self) -> str:
        return self.platform.database_prefix

    @property
    def topic_prefix(self) -> str:
        return self.platform.topic_prefix or "kami"

    def payment_argon2(self) -> Argon2Cost:
        """The payment-password hashing cost the platform's payment runs with."""
        env, default = self.platform.extra_env, Argon2Cost()
        return Argon2Cost(
            time_cost=int(env.get("KAMI_PAYMENT_ARGON2_TIME_COST", default.time_cost)),
            memory_kib=int(env.get("KAMI_PAYMENT_ARGON2_MEMORY_KIB", default.memory_kib)),
            parallelism=int(env.get("KAMI_PAYMENT_ARGON2_PARALLELISM", default.parallelism)),
        )

    def processes(self) -> list[str]:
        """Every process of the platform: each service's first, and its replicas."""
        return [p for service in self.services for p in self.platform.processes(service)]

    def replicas(self) -> dict[str, int]:
        """Processes of each service that runs more than one."""
        counts = {s: len(self.platform.processes(s)) for s in self.services}
        return {service: count for service, count in counts.items() if count > 1}

    def pids(self) -> dict[str, int]:
        """The running processes, by the pids their start recorded."""
        pids = {}
        for process in self.processes():
            pid = self.platform.pid(process)
            if pid is not None:
                pids[process] = pid
        return pids

    def record(self, market: Mapping[str, Any] | None = None) -> None:
        """Write down where the platform's processes and data are, before the
        first process starts: a run killed outright leaves what `--down` needs."""
        STATE.write_text(
            json.dumps(
                {
                    "ports": dict(self.platform.ports),
                    "database_prefix": self.database_prefix,
                    "topic_prefix": self.topic_prefix,
                    "kafka_bootstrap": self.platform.kafka_bootstrap,
                    "mongodb_uri": self.platform.mongodb_uri,
                    "extra_env": dict(self.platform.extra_env),
                    "replica_ports": {k: list(v) for k, v in self.platform.replica_ports.items()},
                    "market": market,
                },
                indent=2,
            )
        )

    def stop(self) -> None:
        """Stop every service of the platform, by its recorded pid."""
        self.platform.down(self.services)


def new_platform(
    kafka: str,
    mongodb: str,
    *,
    cheap_payment_hashing: bool,
    replicas: Mapping[str, int] | None = None,
) -> BenchPlatform:
    platform = Platform.isolated(
        kafka, mongodb, home=HOME, name="bench", extra_env={}, replicas=replicas
    )
    platform.extra_env = bench_env(
        platform.database_prefix, cheap_payment_hashing=cheap_payment_hashing
    )
    return BenchPlatform(platform, available_services())


def recorded_platform() -> BenchPlatform | None:
    """The platform an earlier run recorded (kept, or left by a run that was
    killed before it could clean up), running or not."""
    if not STATE.exists():
        return None
    state = json.loads(STATE.read_text())
    platform = Platform(
        state["kafka_bootstrap"],
        state["mongodb_uri"],
        home=HOME,
        ports=state["ports"],
        database_prefix=state["database_prefix"],
        topic_prefix=state["topic_prefix"],
        extra_env=state["extra_env"],
        replica_ports=state.get("replica_ports", {}),
    )
    return BenchPlatform(platform, available_services(), market=state.get("market"))


async def create_run_topics(bench: BenchPlatform, partitions: int) -> int:
    """Create the run's topics with `partitions` each before any service starts
    (a broker's auto-created topics take its default, 1 unless configured),
    so that a service's processes share the work. The fewest partitions any
    has (topics that existed keep theirs)."""
    topics = [
        f"{bench.topic_prefix}.{name.split('.', 1)[1]}"  # the catalogue in the run's namespace
        for name in catalogue_topics()
    ]
    outcomes = await create_topics(
        bench.platform.kafka_bootstrap, topics, partitions=partitions, replication_factor=1
    )
    return min(outcome.partitions for outcome in outcomes)


def forget_recorded() -> None:
    STATE.unlink(missing_ok=True)


async def drop_data(bench: BenchPlatform) -> str:
    """Drop the platform's databases and delete its topics; only once its
    services are stopped (FerretDB 1.24 can corrupt a database that a
    straggling writer recreates over a dropped one's WAL, docs/storage.md)."""
    running = bench.pids()
    if running:
        raise RuntimeError(f"services still run: {running}")
    database_prefix, topic_prefix = bench.database_prefix, bench.topic_prefix
    dropped = 0
    client = connect(bench.platform.mongodb_uri, app_name="kami-bench-cleanup")
    try:
        for name in await client.list_database_names():
            if name.startswith(f"{database_prefix}_"):
                await client.drop_database(name)
                dropped += 1
    finally:
        await client.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.platform.kafka_bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(f"{topic_prefix}.")]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
    return (
        f"dropped {dropped} database(s) {database_prefix}_* "
        f"and {len(topics)} topic(s) {topic_prefix}.*"
    )


def stop_pid(pid: int) -> None:
    """End a helper process this run started (py-spy), if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
