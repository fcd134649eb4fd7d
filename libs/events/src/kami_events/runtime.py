"""One service process: its database, event store, Kafka broker, outbox relay,
consumer and pollers, started and stopped together.

Every service builds one `ServiceRuntime`, registers its handlers on
`runtime.consumer` and its periodic jobs with `runtime.every`, and runs it
inside its HTTP app's lifespan.

Stopping (on SIGTERM, after uvicorn has finished the in-flight HTTP
requests) goes in the order that loses nothing and leaves nothing half done:

1. the consumer takes no new message; the handlers in flight finish and
   commit their offsets (FastStream waits for them up to
   `consumer_shutdown_grace_seconds`);
2. the periodic jobs finish their current pass;
3. the relay stops polling and publishes every commit made so far, the
   ones the last handlers made included (holding its lease, so no other
   replica's relay interleaves);
4. the brokers disconnect and the database connection closes.

Whatever a timeout cuts short is still safe: an unacknowledged message is
redelivered, an unpublished commit is published by the next relay, and the
inbox and the store's tracking make the repeats harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pymongo
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from kami_events import tracing
from kami_events.clock import Clock, utc_now
from kami_events.consumer import (
    EventConsumer,
    KafkaDeadLetters,
    MongoInbox,
    RetryPolicy,
    measure_lag,
)
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.kafka import make_broker, publishing_broker
from kami_events.metrics import CONSUMER_LAG
from kami_events.mongo import Document, connect
from kami_events.outbox import KafkaEventPublisher, OutboxRelay, RelayLease
from kami_events.settings import ServiceSettings
from kami_events.store import CommitContext, MongoEventStore, Tracking
from kami_events.topics import dead_letter_topic

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)


class TracedEventStore(MongoEventStore):
    """The event store that records in each commit the trace it was made in.

    When a span is current (an HTTP request, a consumed message, a
    `continue_trace` block), its `traceparent` goes into the envelopes, so
    the relay publishes them into the same trace; otherwise the caller's
    `CommitContext.traceparent` (e.g. the consumed envelope's) stands.
    """

    async def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        context: CommitContext,
        tracking: Tracking | None = None,
    ) -> list[Envelope[Event]]:
        current = tracing.current_traceparent()
        if current and current != context.traceparent:
            context = dataclasses.replace(context, traceparent=current)
        return await super().append(
            aggregate_type, aggregate_id, expected_version, events, context, tracking
        )


def broker_middlewares(service: str) -> tuple[Any, ...]:
    """FastStream's Prometheus middleware always (`kami_kafka_*` per topic);
    its OpenTelemetry middleware only when tracing is on."""
    middlewares: list[Any] = [
        KafkaPrometheusMiddleware(
            registry=REGISTRY, app_name=f"kami-{service}", metrics_prefix="kami_kafka"
        )
    ]
    provider = tracing.tracer_provider()
    if provider is not None:
        middlewares.append(KafkaTelemetryMiddleware(tracer_provider=provider))
    return tuple(middlewares)


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
        self.store: MongoEventStore = TracedEventStore(
            self.db,
            producer=settings.service_name,
            clock=clock,
            trust_cached_seconds=settings.event_cache_trust_seconds,
        )
        middlewares = broker_middlewares(settings.service_name)
        self.broker = make_broker(
            settings,
            middlewares=middlewares,
            graceful_timeout=settings.consumer_shutdown_grace_seconds,
        )
        # The relay and the dead letters publish through a producer that is
        # replaced when it breaks (see RenewingBroker); the consumer's stays.
        self.publishing = publishing_broker(settings, middlewares=middlewares)
        self.consumer = EventConsumer(
            service=settings.service_name,
            inbox=MongoInbox(self.db["inbox"], clock=clock),
            retry=RetryPolicy(
                max_attempts=settings.consumer_max_attempts,
                base_delay=settings.consumer_retry_base_delay_seconds,
                max_delay=settings.consumer_retry_max_delay_seconds,
            ),
            clock=clock,
            group_override=settings.consumer_group_override,
            concurrency=settings.consumer_concurrency,
            max_batch=settings.consumer_max_batch,
        )
        # A lease is about whether a process is alive, in real time: a test's
        # clock jumping ahead must not lapse it (the relay would then fall
        # back to the stored checkpoint and publish its last commits again).
        self.lease = RelayLease(self.db["leases"], clock=utc_now)
        self.consumer.dead_letters = KafkaDeadLetters(
            self.publishing, dead_letter_topic(settings.service_name)
        )
        publisher_broker: Any = self.publishing
        if tracing.tracer_provider() is not None:
            publisher_broker = tracing.PublishingInTrace(self.publishing)
        self.relay = OutboxRelay(
            self.store,
            KafkaEventPublisher(publisher_broker),
            lease=self.lease,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval_seconds,
            clock=clock,
        )
        self._jobs: list[tuple[str, float, Job]] = []
        self._index_setups: list[Job] = [self.store.ensure_indexes]
        self._job_tasks: list[asyncio.Task[None]] = []
        self._relay_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._stop_jobs = asyncio.Event()
        self._stop_relay = asyncio.Event()
        self._subscriber: Any = None
        self._lag_reported: set[tuple[str, int]] = set()

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
        if self.consumer.topics and self._subscriber is None:
            self._subscriber = self.consumer.subscribe(self.broker)
        await self.broker.start()
        self._stop_jobs.clear()
        self._stop_relay.clear()
        self._relay_task = asyncio.create_task(
            self.relay.run(self._stop_relay), name="outbox-relay"
        )
        for name, interval, job in self._jobs:
            self._job_tasks.append(
                asyncio.create_task(self._repeat(name, interval, job), name=name)
            )
        if self._subscriber is not None:
            lag_every = self.settings.consumer_lag_refresh_seconds
            self._lag_task = asyncio.create_task(
                self._repeat("consumer-lag", lag_every, self.refresh_consumer_lag),
                name="consumer-lag",
            )

    async def stop(self) -> None:
        """Stop without losing or half-doing anything (see the module's doc)."""
        settings = self.settings
        if self._lag_task is not None:
            # A measurement is only a reading: it must not wait on a stopping consumer.
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self._subscriber is not None:
            await self._subscriber.stop()
            self.consumer.assignment.left()
            log.info("stopped consuming; the messages in flight are finished and committed")
        self._stop_jobs.set()
        await _finish(self._job_tasks, settings.jobs_shutdown_grace_seconds, "periodic jobs")
        self._job_tasks.clear()
        self._stop_relay.set()
        if self._relay_task is not None:
            await _finish([self._relay_task], settings.outbox_flush_seconds, "the relay")
            self._relay_task = None
            await self._flush_outbox()
        await self.publishing.stop()
        await self.broker.stop()
        await self.mongo.close()
        self._clear_lag_gauges()

    async def _flush_outbox(self) -> None:
        """Publish every commit made so far, under the relay's lease."""
        try:
            async with asyncio.timeout(self.settings.outbox_flush_seconds):
                if not await self.lease.acquire():
                    log.info("another replica's relay holds the lease; it publishes the rest")
                    return
                try:
                    published = 0
                    while count := await self.relay.publish_pending():
                        published += count
                finally:
                    await self.lease.release()
            left = (await self.relay.lag()).unpublished_commits
            log.info("outbox flushed: %d commits published, %d left", published, left)
        except Exception:
            log.exception("the outbox could not be flushed; the next relay publishes the rest")

    async def refresh_consumer_lag(self) -> dict[tuple[str, int], int]:
        """Measure `kami_consumer_lag_messages` for the partitions assigned here."""
        client = getattr(self._subscriber, "consumer", None)
        if client is None:
            return {}
        assignment = self.consumer.assignment
        measured = await measure_lag(client, assignment.partitions, assignment.committed)
        lag = {(tp.topic, tp.partition): count for tp, count in measured.items()}
        service = self.settings.service_name
        for topic, partition in self._lag_reported - lag.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(service, topic, str(partition))
        for (topic, partition), count in lag.items():
            CONSUMER_LAG.labels(service, topic, str(partition)).set(count)
        self._lag_reported = set(lag)
        return lag

    def _clear_lag_gauges(self) -> None:
        for topic, partition in self._lag_reported:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.settings.service_name, topic, str(partition))
        self._lag_reported = set()

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        try:
            # PyMongo's own deadline, not a cancellation: cancelling a query
            # that waits in server selection can wedge the client for good.
            with pymongo.timeout(2):
                await self.mongo.admin.command("ping")
            checks["mongodb"] = "ok"
        except Exception as exc:
            checks["mongodb"] = f"unreachable: {exc!r}"[:200]
        checks["kafka"] = "ok" if await self.broker.ping(timeout=2) else "unreachable"
        if self._subscriber is not None:
            # Joined its group, even with no partition (more replicas than partitions).
            checks["consumer"] = "ok" if self.consumer.assignment.joined else "not assigned yet"
        if checks["mongodb"] == "ok":
            lag = await self.relay.lag()
            checks["outbox"] = (
                "ok"
                if lag.oldest_age_seconds <= self.MAX_READY_OUTBOX_LAG_SECONDS
                else f"lagging {lag.oldest_age_seconds:.0f}s ({lag.unpublished_commits} commits)"
            )
        return Readiness(all(v == "ok" for v in checks.values()), checks)

    async def _repeat(self, name: str, interval: float, job: Job) -> None:
        while not self._stop_jobs.is_set():
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job %s failed; it runs again in %.1fs", name, interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_jobs.wait(), timeout=interval)


async def _finish(tasks: Sequence[asyncio.Task[None]], grace: float, what: str) -> None:
    """Let `tasks` end on their own within `grace` seconds, then cancel them."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    if pending:
        log.warning("%s did not stop within %.0fs; cancelling them", what, grace)
    for task in pending:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
