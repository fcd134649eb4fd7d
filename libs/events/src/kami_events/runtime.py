"""One service process: its database, event store, Kafka broker, outbox relay,
consumer and pollers, started and stopped together.

Every service builds one `ServiceRuntime`, registers its handlers on
`runtime.consumer` and its periodic jobs with `runtime.every`, and runs it
inside its HTTP app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.clock import Clock, utc_now
from kami_events.consumer import EventConsumer, MongoInbox, RetryPolicy
from kami_events.kafka import make_broker
from kami_events.mongo import Document, connect
from kami_events.outbox import KafkaEventPublisher, OutboxRelay, RelayLease
from kami_events.settings import ServiceSettings
from kami_events.store import MongoEventStore

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)


class ServiceRuntime:
    # /readyz fails when the oldest unpublished commit is older than this.
    MAX_READY_OUTBOX_LAG_SECONDS = 60.0

    def __init__(self, settings: ServiceSettings, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.mongo: AsyncMongoClient[Document] = connect(
            settings.mongodb_uri, app_name=f"kami-{settings.service_name}"
        )
        self.db: AsyncDatabase[Document] = self.mongo[settings.database_name]
        self.store = MongoEventStore(self.db, producer=settings.service_name, clock=clock)
        self.broker = make_broker(settings)
        self.consumer = EventConsumer(
            service=settings.service_name,
            inbox=MongoInbox(self.db["inbox"], clock=clock),
            retry=RetryPolicy(
                max_attempts=settings.consumer_max_attempts,
                base_delay=settings.consumer_retry_base_delay_seconds,
                max_delay=settings.consumer_retry_max_delay_seconds,
            ),
            clock=clock,
        )
        self.relay = OutboxRelay(
            self.store,
            KafkaEventPublisher(self.broker),
            lease=RelayLease(self.db["leases"], clock=clock),
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval_seconds,
            clock=clock,
        )
        self._jobs: list[tuple[str, float, Job]] = []
        self._index_setups: list[Job] = [self.store.ensure_indexes]
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._subscribed = False

    def every(self, name: str, interval: timedelta, job: Job) -> None:
        """Run `job` periodically (deadline pollers, gateway queries...)."""
        self._jobs.append((name, interval.total_seconds(), job))

    def on_start(self, setup: Job) -> None:
        """Run `setup` (e.g. creating a read model's indexes) before serving."""
        self._index_setups.append(setup)

    async def start(self) -> None:
        await self.db["leases"].create_index([("name", 1), ("term", -1)], name="lease_terms")
        for setup in self._index_setups:
            await setup()
        if self.consumer.topics and not self._subscribed:
            self.consumer.subscribe(self.broker)
            self._subscribed = True
        await self.broker.start()
        self._stop.clear()
        self._tasks.append(asyncio.create_task(self.relay.run(self._stop), name="outbox-relay"))
        for name, interval, job in self._jobs:
            self._tasks.append(asyncio.create_task(self._repeat(name, interval, job), name=name))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.broker.stop()
        await self.mongo.close()

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.mongo.admin.command("ping"), timeout=2)
            checks["mongodb"] = "ok"
        except Exception as exc:
            checks["mongodb"] = f"unreachable: {exc!r}"[:200]
        checks["kafka"] = "ok" if await self.broker.ping(timeout=2) else "unreachable"
        if checks["mongodb"] == "ok":
            lag = await self.relay.lag()
            checks["outbox"] = (
                "ok"
                if lag.oldest_age_seconds <= self.MAX_READY_OUTBOX_LAG_SECONDS
                else f"lagging {lag.oldest_age_seconds:.0f}s ({lag.unpublished_commits} commits)"
            )
        return Readiness(all(v == "ok" for v in checks.values()), checks)

    async def _repeat(self, name: str, interval: float, job: Job) -> None:
        while not self._stop.is_set():
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job %s failed; it runs again in %.1fs", name, interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
