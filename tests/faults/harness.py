"""What every fault scenario needs: its platform, its log, HTTP calls that
ride through restarts, quiescence, and the audit at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kami_actors import Person
from kami_events.mongo import connect
from kami_local import Platform, available_services
from tests.e2e.conftest import E2E_ENV
from tests.faults.auditor import AuditReport, audit, describe, partitions_of, read_snapshot

# The e2e settings, plus tokens that outlive a scenario run, daily payment
# limits that a few hundred test purchases never reach, and a delivery lease
# (how long a killed delivery worker holds its job) of 20 s instead of 60.
FAULTS_ENV = E2E_ENV | {
    "KAMI_IDENTITY_ACCESS_TOKEN_TTL_SECONDS": "3600",
    "KAMI_DELIVERY_LANE_LEASE_SECONDS": "20",
    "KAMI_IDENTITY_TIERS": json.dumps(
        {
            tier: {
                "daily_payment_limit": 50_000_000,
                "delivery_priority": priority,
                "aftersales_priority": priority,
            }
            for priority, tier in enumerate(("phone", "real_name", "advanced"))
        }
    ),
}


@dataclass
class FaultsPlatform(Platform):
    """The e2e platform, with variables for one service only (a replay's
    consumer group)."""

    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Events a test put on Kafka itself (poison): in no store, and meant so.
    injected_event_ids: set[str] = field(default_factory=set)

    def env_for(self, service: str) -> dict[str, str]:
        return super().env_for(service) | self.service_env.get(service, {})

    def group_of(self, service: str) -> str:
        # The platform's topic prefix names its groups (kami_events.topics).
        return self.service_env.get(service, {}).get(
            "KAMI_CONSUMER_GROUP_OVERRIDE", f"{self.topic_prefix or 'kami'}-{service}"
        )

    @property
    def services(self) -> list[str]:
        return available_services()


@contextmanager
def running_faults_platform(
    kafka_bootstrap: str, mongodb_uri: str, home: Path
) -> Iterator[FaultsPlatform]:
    platform = FaultsPlatform.isolated(
        kafka_bootstrap, mongodb_uri, home=home, name="faults", extra_env=FAULTS_ENV
    )
    with platform.running(platform.services):
        yield platform


# -- the scenario's log ----------------------------------------------------------------


@dataclass
class ScenarioLog:
    """What a scenario did, with its seed: printed at the end of the run."""

    name: str
    seed: int
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    outcome: str = "unfinished"
    seconds: float = 0.0

    @property
    def rng(self) -> random.Random:
        return random.Random(f"{self.seed}:{self.name}")

    def note(self, text: str) -> None:
        line = f"t+{time.monotonic() - self.started:6.1f}s {text}"
        self.lines.append(line)
        print(f"[{self.name}] {line}", flush=True)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.seconds = time.monotonic() - self.started


SCENARIOS: list[ScenarioLog] = []


def session_seed() -> int:
    """`KAMI_FAULTS_SEED` replays a run; otherwise a fresh seed, printed."""
    given = os.environ.get("KAMI_FAULTS_SEED")
    return int(given) if given else random.SystemRandom().randrange(1, 2**31)


# -- HTTP through restarts -------------------------------------------------------------


class GaveUp(AssertionError):
    pass


async def persist(
    person: Person,
    service: str,
    method: str,
    path: str,
    *,
    done: Callable[[httpx.Response], bool],
    what: str,
    timeout: float = 180.0,
    **kwargs: Any,
) -> httpx.Response:
    """Repeat a request until `done` says its answer is the one we wait for,
    through refused connections and 5xx of a service that is restarting or
    whose database or broker is away. A 401 renews the person's token."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    pause = 0.2
    while True:
        try:
            response = await person.call(service, method, path, **kwargs)
            if done(response):
                return response
            last = f"{response.status_code} {response.text[:300]}"
            if response.status_code == 401:
                await _refresh(person)
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise GaveUp(f"timed out waiting for {what}: {last}")
        await asyncio.sleep(pause)
        pause = min(1.0, pause * 1.5)


async def _refresh(person: Person) -> None:
    # Identity may be restarting: the next attempt renews it then.
    with contextlib.suppress(httpx.TransportError, httpx.HTTPStatusError):
        await person.refresh()


def answered(*codes: int) -> Callable[[httpx.Response], bool]:
    return lambda r: r.status_code in codes


# -- quiescence --------------------------------------------------------------------------


async def pending_claims(platform: FaultsPlatform) -> dict[str, int]:
    """Per service, how many outbox positions are claimed past the checkpoint."""
    client = connect(platform.mongodb_uri, app_name="kami-faults-quiescence")
    pending: dict[str, int] = {}
    try:
        for service in platform.services:
            outbox = client[f"{platform.database_prefix}_{service}"]["events_outbox"]
            docs = [doc async for doc in outbox.find({})]
            checkpoint = next((int(d["position"]) for d in docs if d["_id"] == "checkpoint"), 0)
            ahead = [d for d in docs if d["_id"] != "checkpoint" and d["position"] > checkpoint]
            if ahead:
                pending[service] = len(ahead)
    finally:
        await client.close()
    return pending


async def consumer_lag(platform: FaultsPlatform) -> dict[str, int]:
    """Per consumer group of the platform: messages beyond its committed
    offsets on every partition of the topics it has committed on (from the
    broker, not from the services)."""
    every = await partitions_of(platform.kafka_bootstrap, str(platform.topic_prefix))
    admin = AIOKafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=platform.kafka_bootstrap)
    await admin.start()
    await reader.start()
    lag: dict[str, int] = {}
    try:
        for service in platform.services:
            group = platform.group_of(service)
            committed = await admin.list_consumer_group_offsets(group)
            topics = {tp.topic for tp in committed}
            partitions = [tp for tp in every if tp.topic in topics]
            if not partitions:
                continue
            ends = await reader.end_offsets(partitions)
            starts = await reader.beginning_offsets(partitions)
            behind = 0
            for tp in partitions:
                meta = committed.get(tp)
                at = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                behind += max(0, ends[tp] - at)
            if behind:
                lag[group] = behind
    finally:
        await reader.stop()
        await admin.close()
    return lag


async def committed_topics(platform: FaultsPlatform, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    mine = f"{platform.topic_prefix}."
    return {tp: meta.offset for tp, meta in offsets.items() if tp.topic.startswith(mine)}


async def end_offsets(
    platform: FaultsPlatform, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    if not partitions:
        # Also aiokafka 0.14: a consumer stopped before its loop ever yielded
        # raises CancelledError from stop() (its coordinator task never ran).
        return {}
    reader = AIOKafkaConsumer(bootstrap_servers=platform.kafka_bootstrap)
    await reader.start()
    try:
        return dict(await reader.end_offsets(partitions))
    finally:
        await reader.stop()


async def not_ready(platform: FaultsPlatform) -> dict[str, str]:
    """Services whose /readyz says no (consumer not in its group, outbox lagging...)."""
    found: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for service in platform.services:
            try:
                response = await client.get(f"{platform.url(service)}/readyz")
                if response.status_code != 200:
                    found[service] = response.text[:200]
            except httpx.HTTPError as exc:
                found[service] = repr(exc)
    return found


async def ledger_in_flight(platform: FaultsPlatform, operator: Person) -> int:
    response = await persist(
        operator, "payment", "GET", "/ledger/trial-balance", done=answered(200), what="ledger"
    )
    return int(response.json()["movements_in_flight"])


async def wait_quiescent(
    platform: FaultsPlatform, operator: Person, log: ScenarioLog, *, timeout: float = 150.0
) -> None:
    """Until nothing moves: every outbox published, every consumer group
    caught up, no ledger movement in flight — twice in a row, a second apart
    (a handled message may commit something new)."""
    started = time.monotonic()
    deadline = started + timeout
    calm = 0
    why: object = None
    while calm < 2:
        try:
            unready = await not_ready(platform)
            claims = await pending_claims(platform)
            lag = await consumer_lag(platform)
            in_flight = await ledger_in_flight(platform, operator)
            why = {"not ready": unready, "outbox": claims, "lag": lag, "in flight": in_flight}
            quiet = not unready and not claims and not lag and not in_flight
            calm = calm + 1 if quiet else 0
        except Exception as exc:  # a server restarting: not calm yet
            why, calm = repr(exc), 0
        if time.monotonic() > deadline:
            raise AssertionError(f"the platform never came to rest: {why}")
        await asyncio.sleep(1.0)
    log.note(f"quiescent after {time.monotonic() - started:.1f}s")


async def audit_platform(
    platform: FaultsPlatform, operator: Person, log: ScenarioLog
) -> AuditReport:
    """Quiescence, then the auditor over everything the platform holds."""
    ignored = platform.injected_event_ids
    await wait_quiescent(platform, operator, log)
    report = audit(
        await read_snapshot(platform, operator_token=operator.access_token),
        ignore_event_ids=ignored,
    )
    if report.problems:
        # A real breach persists; say so if a second look, after another rest, differs.
        log.note(f"audit found {len(report.problems)} problems; looking again after a rest")
        await asyncio.sleep(5)
        await wait_quiescent(platform, operator, log)
        again = audit(
            await read_snapshot(platform, operator_token=operator.access_token),
            ignore_event_ids=ignored,
        )
        if not again.problems:
            log.note("TRANSIENT audit problems (gone on the second look):\n" + describe(report))
        report = again
    log.note(f"audit: {report.summary()}")
    for name, value in report.counts.items():
        log.counts[f"audit: {name}"] = value
    assert report.problems == [], "DESIGN §9 broken:\n" + describe(report)
    return report
