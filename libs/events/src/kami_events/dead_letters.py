"""Dead-letter topics (`kami.<service>.dead-letter.v1`): listing and redriving.

Shared by `kami dlq list|redrive` and every service's operator routes
(`GET /dead-letters`, `POST /dead-letters/redrive`, `kami_web.dead_letters`):
one implementation, so a redrive from either is recorded where the other looks.

A consumer that gives up on a message publishes it, unchanged, to its
service's dead-letter topic with `dlq_*` headers saying why and where it came
from (`kami_events.consumer`). Redriving publishes the original message
(value, key, headers without the `dlq_*` ones) to its source topic again:
every consumer of that topic sees it once more, and those that handled it
already skip it by `event_id` (their inbox).

The consumer that gave up recorded the event in its inbox as
`dead_lettered` (so that a redelivery of the same offset is not dead-lettered
twice); that record would make it skip the redriven copy as a duplicate. So
a redrive first removes exactly that record, `<service>:<event_id>` with
outcome `dead_lettered`, from the failing service's inbox; every other
consumer's inbox still holds the event and skips it.

What was redriven is recorded in the operator database
(`<prefix>_operations.dead_letter_redrives`, one document per dead letter,
`_id` = `<topic>:<partition>:<offset>`), so a second redrive does not send
it again. The record is written `sending` before the publish and `sent`
after: a redrive interrupted in between sends it again next time, which the
consumers' inboxes make harmless, rather than never.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from kami_events.clock import utc_now as now
from kami_events.mongo import Document
from kami_events.topics import dead_letter_topic

DLQ_HEADER_PREFIX = "dlq_"
REDRIVEN_FROM_HEADER = "kami_redriven_from"
REDRIVES_COLLECTION = "dead_letter_redrives"
OPERATIONS_DATABASE = "operations"  # `<prefix>_operations`, beside `<prefix>_<service>`


class DeadLetterError(Exception):
    """Why dead letters could not be read or redriven, in words for an operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KafkaUnreachable(DeadLetterError):
    pass


class UnknownDeadLetter(DeadLetterError):
    """An id that names no dead letter on the topic, or names it ambiguously."""


@dataclass(frozen=True)
class DeadLetter:
    service: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def record_id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def event_type(self) -> str:
        return self.headers.get("event_type", "unknown")

    @property
    def event_id(self) -> str | None:
        return self.headers.get("event_id")

    @property
    def error(self) -> str:
        kind = self.headers.get("dlq_error_type", "?")
        message = self.headers.get("dlq_error_message", "")
        return f"{kind}: {message}" if message else kind

    @property
    def source_topic(self) -> str | None:
        return self.headers.get("dlq_source_topic")

    @property
    def source(self) -> str:
        return (
            f"{self.headers.get('dlq_source_topic', '?')}"
            f"[{self.headers.get('dlq_source_partition', '?')}]"
            f"@{self.headers.get('dlq_source_offset', '?')}"
        )

    @property
    def failed_at(self) -> str:
        return self.headers.get("dlq_failed_at", "")

    def original_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if not k.startswith(DLQ_HEADER_PREFIX)}


async def read_dead_letters(bootstrap: str, service: str) -> list[DeadLetter]:
    """Every message now on `service`'s dead-letter topic, oldest first."""
    topic = dead_letter_topic(service)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15_000,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise KafkaUnreachable(f"Kafka at {bootstrap} is unreachable: {exc!r}") from None
    letters: list[DeadLetter] = []
    try:
        partitions = await _partitions(bootstrap, topic)
        if not partitions:
            return []  # nothing was ever dead-lettered
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        pending = {tp for tp in assigned if ends[tp] > await consumer.position(tp)}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    letters.append(
                        DeadLetter(
                            service=service,
                            topic=topic,
                            partition=record.partition,
                            offset=record.offset,
                            key=record.key,
                            value=record.value,
                            headers={k: v.decode(errors="replace") for k, v in record.headers},
                            timestamp_ms=record.timestamp,
                        )
                    )
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return sorted(
        letters, key=lambda letter: (letter.timestamp_ms, letter.partition, letter.offset)
    )


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(int(p["partition"]) for p in described["partitions"])


class RedriveLog:
    """Which dead letters were sent back to their source topic, and when."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def sent(self, letters: Iterable[DeadLetter]) -> dict[str, datetime]:
        ids = [letter.record_id for letter in letters]
        found: dict[str, datetime] = {}
        for record_id in ids:  # by _id: the one query FerretDB answers without a scan
            doc = await self._collection.find_one({"_id": record_id})
            if doc is not None and doc.get("state") == "sent":
                found[record_id] = doc["sent_at"]
        return found

    async def sending(self, letter: DeadLetter) -> None:
        with contextlib.suppress(DuplicateKeyError):  # an interrupted earlier redrive
            await self._collection.insert_one(
                {
                    "_id": letter.record_id,
                    "state": "sending",
                    "service": letter.service,
                    "event_id": letter.event_id,
                    "event_type": letter.event_type,
                    "source_topic": letter.source_topic,
                    "started_at": now(),
                }
            )

    async def mark_sent(self, letter: DeadLetter) -> None:
        await self._collection.update_one(
            {"_id": letter.record_id}, {"$set": {"state": "sent", "sent_at": now()}}
        )


@dataclass(frozen=True)
class RedriveOutcome:
    letter: DeadLetter
    sent: bool
    why: str  # "sent", or why not


def select(letters: list[DeadLetter], wanted: list[str]) -> list[DeadLetter]:
    """Dead letters by id (`partition:offset`, or just the offset when the
    topic has one partition)."""
    by_id = {letter.id: letter for letter in letters}
    partitions = {letter.partition for letter in letters}
    chosen = []
    for raw in wanted:
        key = raw if ":" in raw else None
        if key is None:
            if len(partitions) > 1:
                raise UnknownDeadLetter(
                    f"{raw}: the topic has several partitions; say PARTITION:OFFSET"
                )
            key = f"{next(iter(partitions), 0)}:{raw}"
        if key not in by_id:
            raise UnknownDeadLetter(f"no dead letter {key} on the topic")
        chosen.append(by_id[key])
    return chosen


class Inboxes:
    """The failing consumers' inboxes (`<prefix>_<service>.inbox`)."""

    def __init__(self, inbox_of: Callable[[str], AsyncCollection[Document]]) -> None:
        self._inbox_of = inbox_of

    async def forget_dead_letter(self, letter: DeadLetter) -> bool:
        consumer, event_id = letter.headers.get("dlq_consumer"), letter.event_id
        if not consumer or not event_id:
            return False  # a malformed message: no inbox record was written
        inbox = self._inbox_of(consumer)
        key = f"{consumer}:{event_id}"
        # By _id alone (FerretDB scans for anything else); only a give-up is undone.
        record = await inbox.find_one({"_id": key})
        if record is None or record.get("outcome") != "dead_lettered":
            return False
        await inbox.delete_one({"_id": key})
        return True


def operations_database(service_database: str, service: str) -> str:
    """The operator database beside a service's: `kami_payment` -> `kami_operations`
    (the `<prefix>_<service>` naming the CLI's `KAMI_DATABASE_PREFIX` follows)."""
    suffix = f"_{service.replace('-', '_')}"
    prefix = service_database[: -len(suffix)] if service_database.endswith(suffix) else "kami"
    return f"{prefix}_{OPERATIONS_DATABASE}"


def describe(letter: DeadLetter, redriven_at: datetime | None) -> dict[str, Any]:
    """A dead letter as the CLI's `--json` and the HTTP routes show it."""
    return {
        "service": letter.service,
        "id": letter.id,
        "event_type": letter.event_type,
        "event_id": letter.event_id,
        "error": letter.error,
        "source_topic": letter.source_topic,
        "source_partition": letter.headers.get("dlq_source_partition"),
        "source_offset": letter.headers.get("dlq_source_offset"),
        "failed_at": letter.failed_at,
        "attempts": letter.headers.get("dlq_attempts"),
        "redriven_at": redriven_at.isoformat() if redriven_at else None,
    }


async def redrive(
    bootstrap: str,
    letters: list[DeadLetter],
    log: RedriveLog,
    inboxes: Inboxes,
    *,
    client_id: str = "kami-cli",
) -> list[RedriveOutcome]:
    already = await log.sent(letters)
    outcomes: list[RedriveOutcome] = []
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", client_id=client_id
    )
    try:
        await producer.start()
    except KafkaError as exc:
        raise KafkaUnreachable(f"Kafka at {bootstrap} is unreachable: {exc!r}") from None
    try:
        for letter in letters:
            if letter.record_id in already:
                outcomes.append(
                    RedriveOutcome(
                        letter, False, f"redriven already at {already[letter.record_id]}"
                    )
                )
                continue
            if not letter.source_topic:
                outcomes.append(RedriveOutcome(letter, False, "no dlq_source_topic header"))
                continue
            await log.sending(letter)
            await inboxes.forget_dead_letter(letter)
            headers: dict[str, Any] = letter.original_headers()
            headers[REDRIVEN_FROM_HEADER] = letter.record_id
            await producer.send_and_wait(
                letter.source_topic,
                value=letter.value,
                key=letter.key,
                headers=[(k, str(v).encode()) for k, v in headers.items()],
            )
            await log.mark_sent(letter)
            outcomes.append(RedriveOutcome(letter, True, "sent"))
    finally:
        await producer.stop()
    return outcomes
