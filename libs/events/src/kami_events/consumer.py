"""Idempotent event consumers: the inbox, bounded retries and the dead-letter topic.

Each service has one consumer group (`kami-<service>`) and registers one
handler per event type it cares about. Messages come in batches (what one
fetch returned, up to `max_batch`), and for each batch:

1. decode every message; a malformed or unknown one goes to the dead-letter
   topic at once (retrying cannot fix it);
2. claim the batch's messages in the inbox with one `insert_many` of
   `<service>:<event_id>` rows: a row that already exists is a redelivery, a
   relay re-publish or a replay, and is skipped if its batch finished (a row
   left by a batch that died half-way is handled again);
3. run the handlers: messages with the same Kafka key (the aggregate id) of
   one partition one after another, in offset order; different keys at the
   same time, up to `concurrency`. A failing handler is retried with
   exponential backoff up to `max_attempts`, then its message goes, with its
   error, to the dead-letter topic, and the others flow on;
4. run what the service asked to run once per batch (`after_each_batch`:
   e.g. a read model's recounts of what the batch's events touched, once
   however many of them touched it); if that fails, the batch is not
   finished and Kafka redelivers it;
5. record that the batch finished (one insert), and only then commit the
   offsets.

Offsets are committed by hand after step 4 (never FastStream's default
ACK_FIRST, which is at-most-once). If the process dies anywhere before,
Kafka redelivers the batch and step 2 or the store's tracking index dedupes.
Per key the order of a partition is kept; across keys it never was a
promise (they are different aggregates), and the handlers decide races on
one aggregate by its stream's optimistic concurrency.

A handler whose effect is an event-store commit passes `received.tracking`
to `append`, so the effect and the dedupe mark are one atomic write. Under
load the handlers' appends and the inbox's writes each go as one command
for the whole batch (the store's group commit), which is where the
throughput comes from.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from opentelemetry import trace
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from kami_events import tracing
from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.logs import log_context
from kami_events.metrics import DEAD_LETTERED, EVENTS_CONSUMED, HANDLER_FAILURES, HANDLER_SECONDS
from kami_events.mongo import Document
from kami_events.serialization import EventDecodeError, decode
from kami_events.store import AlreadyProcessed, ConcurrencyError, Tracking, duplicate_indexes
from kami_events.topics import consumer_group_of, dead_letter_topic

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Received(Generic[E]):
    """An event as a handler receives it."""

    envelope: Envelope[E]
    tracking: Tracking

    @property
    def event(self) -> E:
        return self.envelope.payload


Handler = Callable[[Received[Any]], Awaitable[None]]


@dataclass(frozen=True)
class IncomingMessage:
    """The parts of a Kafka record the consumer needs, free of any client library."""

    value: bytes
    key: bytes | None
    headers: dict[str, str]
    topic: str
    partition: int
    offset: int


# A claimed message's outcome until its batch has finished.
STARTED = "started"


class Inbox(Protocol):
    async def claim(self, keys: Sequence[str], batch: str) -> set[str]:
        """Claim messages for `batch`; returns the keys already finished
        (duplicates, not to be handled again)."""
        ...

    async def finish(self, batch: str, outcomes: Mapping[str, str]) -> None:
        """Record that `batch` finished. `outcomes` names the messages whose
        outcome was not an ordinary one (e.g. `dead_lettered`, which a
        redrive looks for)."""
        ...


class MongoInbox:
    """Processed messages, one row each (`_id` is the unique key), written as
    claims before the handlers run; a batch's finishing is one more row.

    Only inserts decide (FerretDB checks a unique `_id` on insert without
    reading the collection, and only inserts are atomic there); a row is
    updated only when a handler dead-letters its message, or when a batch
    takes over a message a dead one had claimed."""

    def __init__(self, collection: AsyncCollection[Document], clock: Clock = utc_now) -> None:
        self._collection = collection
        self._clock = clock

    async def claim(self, keys: Sequence[str], batch: str) -> set[str]:
        if not keys:
            return set()
        now = self._clock()
        refused: set[int] = set()
        try:
            await self._collection.insert_many(
                [
                    {"_id": key, "outcome": STARTED, "batch": batch, "processed_at": now}
                    for key in keys
                ],
                ordered=False,
            )
        except BulkWriteError as exc:
            refused = duplicate_indexes(exc)
        finished: set[str] = set()
        for index in sorted(refused):
            key = keys[index]
            row = await self._collection.find_one({"_id": key})
            if row is None or await self._finished(row):
                finished.add(key)  # (gone: a redrive is under way; leave it to it)
            else:
                # Claimed by a batch that never finished (its process died):
                # this batch takes the message over.
                await self._collection.update_one(
                    {"_id": key}, {"$set": {"batch": batch, "processed_at": now}}
                )
        return finished

    async def _finished(self, row: Document) -> bool:
        if row.get("outcome") != STARTED:
            return True  # finished with its outcome (rows of before batches too)
        done = await self._collection.find_one({"_id": _batch_id(row.get("batch"))}, {"_id": 1})
        return done is not None

    async def finish(self, batch: str, outcomes: Mapping[str, str]) -> None:
        if outcomes:
            await self._collection.bulk_write(
                [
                    UpdateOne({"_id": key}, {"$set": {"outcome": outcome}})
                    for key, outcome in outcomes.items()
                ],
                ordered=False,
            )
        await self._collection.insert_one(
            {"_id": _batch_id(batch), "outcome": "finished", "processed_at": self._clock()}
        )


def _batch_id(batch: object) -> str:
    return f"batch:{batch}"


class DeadLetters(Protocol):
    async def send(self, message: IncomingMessage, headers: dict[str, str]) -> None: ...


class KafkaDeadLetters:
    def __init__(self, broker: KafkaBroker | Any, topic: str) -> None:
        self._broker = broker
        self.topic = topic

    async def send(self, message: IncomingMessage, headers: dict[str, str]) -> None:
        await self._broker.publish(
            message.value, topic=self.topic, key=message.key, headers=headers
        )


class PartitionAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """The partitions the group coordinator gave this consumer: readiness
    asks whether it has joined its group, the lag gauge which partitions to
    measure. A member may join with no partition (more replicas than
    partitions); it is still ready."""

    def __init__(self) -> None:
        self.partitions: frozenset[TopicPartition] = frozenset()
        self.joined = False
        # The offsets this member committed since it was given its
        # partitions: the lag gauge need not ask the coordinator for those.
        self.committed: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.partitions = self.partitions - set(revoked)
        for partition in revoked:
            self.committed.pop(partition, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.partitions = frozenset(assigned)
        self.committed = {}
        self.joined = True

    def record_committed(self, messages: Sequence[IncomingMessage]) -> None:
        for message in messages:
            partition = TopicPartition(message.topic, message.partition)
            if partition in self.partitions:
                next_offset = message.offset + 1
                self.committed[partition] = max(self.committed.get(partition, 0), next_offset)

    def left(self) -> None:
        self.partitions = frozenset()
        self.committed = {}
        self.joined = False


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    # Optimistic-concurrency conflicts retried at once, before they count as failures.
    max_conflicts: int = 10

    def delay_after(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class EventConsumer:
    """The consumer of one service: handlers by event type, one consumer group."""

    service: str
    inbox: Inbox
    dead_letters: DeadLetters | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Clock = utc_now
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Another group re-reads topics from the start (a replay); the inbox,
    # keyed by service, still dedupes.
    group_override: str | None = None
    assignment: PartitionAssignment = field(default_factory=PartitionAssignment)
    # Keys handled at once within a batch, and the most messages one batch takes.
    concurrency: int = 32
    max_batch: int = 200
    _handlers: dict[tuple[str, int], Handler] = field(default_factory=dict)
    _topics: set[str] = field(default_factory=set)
    _batch_end: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def group_id(self) -> str:
        return self.group_override or consumer_group_of(self.service)

    @property
    def topics(self) -> list[str]:
        return sorted(self._topics)

    def handles(self, *event_types: type[Event]) -> Callable[[Handler], Handler]:
        """Register a handler for these event types (one handler per type)."""

        def register(handler: Handler) -> Handler:
            for event_type in event_types:
                key = (event_type.event_type, event_type.schema_version)
                if key in self._handlers:
                    raise ValueError(f"{self.service} already handles {key[0]} v{key[1]}")
                self._handlers[key] = handler
                self._topics.add(event_type.topic())
            return handler

        return register

    def after_each_batch(self, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` after the handlers of every batch that handled a message,
        before the batch is recorded finished: work the handlers left to do
        once for all of the batch's messages. It must be idempotent (a batch
        that dies before finishing is handled again, and `run` with it)."""
        self._batch_end.append(run)

    async def consume(self, message: IncomingMessage) -> str:
        """Handle one message to completion; returns the outcome (see `consume_batch`)."""
        [outcome] = await self.consume_batch([message])
        return outcome

    async def consume_batch(self, messages: Sequence[IncomingMessage]) -> list[str]:
        """Handle a batch of messages to completion; returns each one's outcome.

        Raises only when the batch could not be finished (the dead-letter
        topic or the inbox is unreachable): the caller must then not commit
        its offsets, so Kafka redelivers it.
        """
        outcomes: list[str] = [""] * len(messages)
        claimed: dict[str, tuple[int, Envelope[Any], Handler]] = {}
        for index, message in enumerate(messages):
            try:
                envelope = decode(message.value)
            except EventDecodeError as exc:
                event_type = message.headers.get("event_type", "unknown")
                await self._dead_letter(message, event_type, exc, attempts=0)
                EVENTS_CONSUMED.labels(self.service, event_type, "malformed").inc()
                outcomes[index] = "malformed"
                continue
            handler = self._handlers.get((envelope.event_type, envelope.schema_version))
            key = Tracking(consumer=self.service, event_id=envelope.event_id).key
            if handler is None:
                EVENTS_CONSUMED.labels(self.service, envelope.event_type, "ignored").inc()
                outcomes[index] = "ignored"
            elif key in claimed:
                # The same event twice in one batch (a relay re-publish).
                EVENTS_CONSUMED.labels(self.service, envelope.event_type, "duplicate").inc()
                outcomes[index] = "duplicate"
            else:
                claimed[key] = (index, envelope, handler)
        if not claimed:
            return outcomes

        batch = uuid4().hex
        finished = await self.inbox.claim(list(claimed), batch)
        lanes: dict[tuple[str, int, bytes | None], list[tuple[str, int, Envelope[Any], Handler]]]
        lanes = defaultdict(list)
        for key, (index, envelope, handler) in claimed.items():
            if key in finished:
                EVENTS_CONSUMED.labels(self.service, envelope.event_type, "duplicate").inc()
                outcomes[index] = "duplicate"
                continue
            message = messages[index]
            lanes[(message.topic, message.partition, message.key)].append(
                (key, index, envelope, handler)
            )

        gate = asyncio.Semaphore(self.concurrency)

        async def run_lane(lane: list[tuple[str, int, Envelope[Any], Handler]]) -> None:
            async with gate:
                for _key, index, envelope, handler in lane:
                    outcomes[index] = await self._handle(
                        handler,
                        envelope,
                        messages[index],
                        Tracking(self.service, envelope.event_id),
                    )

        # Every lane runs to its end even if one fails (no cancelling the
        # others mid-query: a cancelled PyMongo operation can wedge its client).
        results = await asyncio.gather(
            *(run_lane(lane) for lane in lanes.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

        unusual = {
            key: outcomes[index]
            for key, (index, _, _) in claimed.items()
            if key not in finished and outcomes[index] not in ("handled", "duplicate")
        }
        if len(finished) < len(claimed):  # a replay of finished messages writes nothing
            for run in self._batch_end:
                await run()
            await self.inbox.finish(batch, unusual)
        for key, (index, envelope, _) in claimed.items():
            if key not in finished:
                EVENTS_CONSUMED.labels(self.service, envelope.event_type, outcomes[index]).inc()
        return outcomes

    async def _handle(
        self,
        handler: Handler,
        envelope: Envelope[Any],
        message: IncomingMessage,
        tracking: Tracking,
    ) -> str:
        traceparent = message.headers.get("traceparent") or envelope.traceparent
        with (
            tracing.consuming(traceparent, f"{message.topic} process"),
            log_context(
                correlation_id=envelope.correlation_id,
                event_id=str(envelope.event_id),
                event_type=envelope.event_type,
                order_id=_order_id_of(envelope),
            ),
        ):
            _describe_current_span(self.service, envelope)
            return await self._run_with_retries(handler, Received(envelope, tracking), message)

    async def _run_with_retries(
        self, handler: Handler, received: Received[Any], message: IncomingMessage
    ) -> str:
        event_type = received.envelope.event_type
        started = time.perf_counter()
        attempt = 0
        conflicts = 0
        try:
            while True:
                attempt += 1
                try:
                    await handler(received)
                    return "handled"
                except AlreadyProcessed:
                    return "duplicate"
                except ConcurrencyError:
                    # Another handler of this batch (or replica) moved the
                    # same aggregate first: load again at once, not after a
                    # backoff meant for broken dependencies.
                    if conflicts < self.retry.max_conflicts:
                        conflicts += 1
                        attempt -= 1
                        continue
                    raise
                except Exception as exc:
                    HANDLER_FAILURES.labels(self.service, event_type).inc()
                    if attempt >= self.retry.max_attempts:
                        log.error(
                            "%s failed %s %s after %d attempts; dead-lettering",
                            self.service,
                            event_type,
                            received.envelope.event_id,
                            attempt,
                            extra={"correlation_id": received.envelope.correlation_id},
                        )
                        await self._dead_letter(message, event_type, exc, attempts=attempt)
                        return "dead_lettered"
                    log.warning(
                        "%s: handler for %s failed (attempt %d/%d): %r",
                        self.service,
                        event_type,
                        attempt,
                        self.retry.max_attempts,
                        exc,
                        extra={"correlation_id": received.envelope.correlation_id},
                    )
                    await self.sleep(self.retry.delay_after(attempt))
        finally:
            HANDLER_SECONDS.labels(self.service, event_type).observe(time.perf_counter() - started)

    async def _dead_letter(
        self, message: IncomingMessage, event_type: str, error: BaseException, attempts: int
    ) -> None:
        if self.dead_letters is None:
            raise RuntimeError(f"{self.service} has no dead-letter topic configured") from error
        headers = dict(message.headers)
        headers.update(
            {
                "dlq_error_type": type(error).__name__,
                "dlq_error_message": str(error)[:2000],
                "dlq_error_trace": "".join(traceback.format_exception(error))[-4000:],
                "dlq_consumer": self.service,
                "dlq_attempts": str(attempts),
                "dlq_source_topic": message.topic,
                "dlq_source_partition": str(message.partition),
                "dlq_source_offset": str(message.offset),
                "dlq_failed_at": _iso(self.clock()),
            }
        )
        await self.dead_letters.send(message, headers)
        DEAD_LETTERED.labels(self.service, event_type).inc()

    def subscribe(
        self,
        broker: KafkaBroker,
        *,
        auto_offset_reset: Literal["earliest", "latest", "none"] = "earliest",
    ) -> Any:
        """Attach this consumer to a FastStream broker, with manual acknowledgement;
        returns the subscriber (its `stop()` ends consuming gracefully, its
        `consumer` is the aiokafka client)."""
        if not self._topics:
            raise ValueError(f"{self.service} consumer has no handlers")
        if self.dead_letters is None:
            self.dead_letters = KafkaDeadLetters(broker, dead_letter_topic(self.service))

        async def on_batch(msg: KafkaMessage) -> None:
            records = msg.raw_message
            batch = [
                IncomingMessage(
                    value=record.value or b"",
                    key=record.key,
                    headers={name: value.decode() for name, value in record.headers},
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
                for record in (records if isinstance(records, tuple) else (records,))
            ]
            try:
                await self.consume_batch(batch)
            except Exception:
                log.exception("%s could not finish a batch; it will be redelivered", self.service)
                await asyncio.sleep(1.0)  # do not spin on a broken dependency
                await msg.nack()
                return
            await msg.ack()
            self.assignment.record_committed(batch)

        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset=auto_offset_reset,
            listener=self.assignment,
            title=f"{self.service}-consumer",
            batch=True,
            max_records=self.max_batch,
            # How long an idle fetch waits; a message arriving meanwhile is
            # returned at once (it also bounds the pause after an empty one).
            batch_timeout_ms=10,
        )
        subscriber(on_batch)
        return subscriber


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _order_id_of(envelope: Envelope[Any]) -> str | None:
    order_id = getattr(envelope.payload, "order_id", None)
    return order_id if isinstance(order_id, str) else None


def _describe_current_span(service: str, envelope: Envelope[Any]) -> None:
    """Name the message on the consume span FastStream's middleware opened
    (a no-op when tracing is off)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {
                "kami.service": service,
                "kami.event_type": envelope.event_type,
                "kami.event_id": str(envelope.event_id),
                "kami.correlation_id": envelope.correlation_id,
            }
        )


async def measure_lag(
    client: AIOKafkaConsumer,
    partitions: Collection[TopicPartition],
    known_committed: Mapping[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """Per partition, the messages after the group's committed offset (from
    the start of the partition when the group has committed nothing yet,
    as `auto_offset_reset=earliest` reads it). `known_committed`: offsets
    this member committed itself, so the coordinator is asked only for the
    others (one request per partition)."""
    if not partitions:
        return {}
    wanted = list(partitions)
    ends = await client.end_offsets(wanted)
    lag: dict[TopicPartition, int] = {}
    uncommitted: list[TopicPartition] = []
    for partition in wanted:
        known = (known_committed or {}).get(partition)
        committed = known if known is not None else await client.committed(partition)
        if committed is None:
            uncommitted.append(partition)
        else:
            lag[partition] = max(0, ends[partition] - committed)
    if uncommitted:
        starts = await client.beginning_offsets(uncommitted)
        for partition in uncommitted:
            lag[partition] = max(0, ends[partition] - starts[partition])
    return lag
