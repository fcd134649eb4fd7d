"""Idempotent event consumers: the inbox, bounded retries and the dead-letter topic.

Each service has one consumer group (`kami-<service>`) and registers one
handler per event type it cares about. For every Kafka message:

1. decode it; a malformed or unknown message goes to the dead-letter topic
   at once (retrying cannot fix it);
2. skip it if the inbox already holds `<service>:<event_id>` (a redelivery,
   a relay re-publish, or a replay);
3. run the handler, retrying with exponential backoff up to `max_attempts`;
   a handler that still fails sends the message, with its error, to the
   dead-letter topic;
4. record the inbox row, and only then commit the offset.

Offsets are committed by hand after step 4 (never FastStream's default
ACK_FIRST, which is at-most-once). If the process dies anywhere before,
Kafka redelivers and step 2 or the store's tracking index dedupes. Messages
of one partition are handled one at a time, in order: a failing message
holds its partition while it is retried, then moves aside to the
dead-letter topic so the partition keeps flowing.

A handler whose effect is an event-store commit passes `received.tracking`
to `append`, so the effect and the dedupe mark are one atomic write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from opentelemetry import trace
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.logs import log_context
from kami_events.metrics import DEAD_LETTERED, EVENTS_CONSUMED, HANDLER_FAILURES, HANDLER_SECONDS
from kami_events.mongo import Document
from kami_events.serialization import EventDecodeError, decode
from kami_events.store import AlreadyProcessed, Tracking
from kami_events.topics import dead_letter_topic

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


class Inbox(Protocol):
    async def seen(self, key: str) -> bool: ...

    async def record(self, key: str, outcome: str) -> None: ...


class MongoInbox:
    """Processed message ids, one document each (`_id` is the unique key)."""

    def __init__(self, collection: AsyncCollection[Document], clock: Clock = utc_now) -> None:
        self._collection = collection
        self._clock = clock

    async def seen(self, key: str) -> bool:
        return await self._collection.find_one({"_id": key}, {"_id": 1}) is not None

    async def record(self, key: str, outcome: str) -> None:
        # An insert, not an upsert: FerretDB checks a unique `_id` on insert
        # without reading the collection, while an update scans it first.
        with contextlib.suppress(DuplicateKeyError):
            await self._collection.insert_one(
                {"_id": key, "outcome": outcome, "processed_at": self._clock()}
            )


class DeadLetters(Protocol):
    async def send(self, message: IncomingMessage, headers: dict[str, str]) -> None: ...


class KafkaDeadLetters:
    def __init__(self, broker: KafkaBroker, topic: str) -> None:
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

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.partitions = self.partitions - set(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.partitions = frozenset(assigned)
        self.joined = True

    def left(self) -> None:
        self.partitions = frozenset()
        self.joined = False


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

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
    _handlers: dict[tuple[str, int], Handler] = field(default_factory=dict)
    _topics: set[str] = field(default_factory=set)

    @property
    def group_id(self) -> str:
        return self.group_override or f"kami-{self.service}"

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

    async def consume(self, message: IncomingMessage) -> str:
        """Handle one message to completion; returns the outcome.

        Raises only when the message could not be finished (the dead-letter
        topic or the inbox is unreachable): the caller must then not commit
        its offset, so Kafka redelivers it.
        """
        try:
            envelope = decode(message.value)
        except EventDecodeError as exc:
            event_type = message.headers.get("event_type", "unknown")
            await self._dead_letter(message, event_type, exc, attempts=0)
            EVENTS_CONSUMED.labels(self.service, event_type, "malformed").inc()
            return "malformed"

        with log_context(
            correlation_id=envelope.correlation_id,
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            order_id=_order_id_of(envelope),
        ):
            _describe_current_span(self.service, envelope)
            return await self._consume_decoded(envelope, message)

    async def _consume_decoded(self, envelope: Envelope[Any], message: IncomingMessage) -> str:
        event_type = envelope.event_type
        handler = self._handlers.get((event_type, envelope.schema_version))
        if handler is None:
            EVENTS_CONSUMED.labels(self.service, event_type, "ignored").inc()
            return "ignored"

        tracking = Tracking(consumer=self.service, event_id=envelope.event_id)
        if await self.inbox.seen(tracking.key):
            EVENTS_CONSUMED.labels(self.service, event_type, "duplicate").inc()
            return "duplicate"

        outcome = await self._run_with_retries(handler, Received(envelope, tracking), message)
        await self.inbox.record(tracking.key, outcome)
        EVENTS_CONSUMED.labels(self.service, event_type, outcome).inc()
        return outcome

    async def _run_with_retries(
        self, handler: Handler, received: Received[Any], message: IncomingMessage
    ) -> str:
        event_type = received.envelope.event_type
        started = time.perf_counter()
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    await handler(received)
                    return "handled"
                except AlreadyProcessed:
                    return "duplicate"
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

        async def on_message(msg: KafkaMessage) -> None:
            record = msg.raw_message
            incoming = IncomingMessage(
                value=msg.body,
                key=record.key,  # type: ignore[union-attr]
                headers=dict(msg.headers),
                topic=record.topic,  # type: ignore[union-attr]
                partition=record.partition,  # type: ignore[union-attr]
                offset=record.offset,  # type: ignore[union-attr]
            )
            try:
                await self.consume(incoming)
            except Exception:
                log.exception("%s could not finish a message; it will be redelivered", self.service)
                await asyncio.sleep(1.0)  # do not spin on a broken dependency
                await msg.nack()
                return
            await msg.ack()

        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset=auto_offset_reset,
            listener=self.assignment,
            title=f"{self.service}-consumer",
        )
        subscriber(on_message)
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
    client: AIOKafkaConsumer, partitions: Collection[TopicPartition]
) -> dict[TopicPartition, int]:
    """Per partition, the messages after the group's committed offset (from
    the start of the partition when the group has committed nothing yet,
    as `auto_offset_reset=earliest` reads it)."""
    if not partitions:
        return {}
    wanted = list(partitions)
    ends = await client.end_offsets(wanted)
    lag: dict[TopicPartition, int] = {}
    uncommitted: list[TopicPartition] = []
    for partition in wanted:
        committed = await client.committed(partition)
        if committed is None:
            uncommitted.append(partition)
        else:
            lag[partition] = max(0, ends[partition] - committed)
    if uncommitted:
        starts = await client.beginning_offsets(uncommitted)
        for partition in uncommitted:
            lag[partition] = max(0, ends[partition] - starts[partition])
    return lag
