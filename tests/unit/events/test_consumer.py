"""The consumer's decisions (dedupe, retries, dead-lettering) on fakes.
The same paths run against real Kafka in tests/integration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from kami_events.consumer import EventConsumer, IncomingMessage, Received, RetryPolicy
from kami_events.envelope import Envelope
from kami_events.serialization import encode
from kami_events.store import AlreadyProcessed, ConcurrencyError
from kami_events.testing import InMemoryInbox, RecordingDeadLetters
from tests.unit.events.sample_events import CounterIncremented, CounterOpened


def message_of(envelope: Envelope[Any], offset: int = 0) -> IncomingMessage:
    return IncomingMessage(
        value=encode(envelope),
        key=envelope.kafka_key,
        headers=envelope.kafka_headers(),
        topic="kami.test.counter.v1",
        partition=0,
        offset=offset,
    )


def opened(aggregate_id: str = "c1") -> Envelope[CounterOpened]:
    return Envelope.wrap(
        CounterOpened(name="n"),
        producer="test",
        aggregate_id=aggregate_id,
        aggregate_version=1,
        correlation_id=aggregate_id,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class Harness:
    def __init__(self, max_attempts: int = 3) -> None:
        self.inbox = InMemoryInbox()
        self.dead = RecordingDeadLetters()
        self.sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.consumer = EventConsumer(
            service="svc",
            inbox=self.inbox,
            dead_letters=self.dead,
            retry=RetryPolicy(max_attempts=max_attempts, base_delay=0.1, max_delay=0.3),
            sleep=sleep,
        )


async def test_handles_once_and_skips_redelivery() -> None:
    h = Harness()
    calls: list[Received[Any]] = []

    @h.consumer.handles(CounterOpened)
    async def on_opened(received: Received[Any]) -> None:
        calls.append(received)

    envelope = opened()
    assert await h.consumer.consume(message_of(envelope)) == "handled"
    assert await h.consumer.consume(message_of(envelope, offset=7)) == "duplicate"
    assert len(calls) == 1
    assert calls[0].event == envelope.payload
    assert calls[0].tracking.key == f"svc:{envelope.event_id}"
    assert h.inbox.records == {f"svc:{envelope.event_id}": "handled"}


async def test_retries_with_backoff_then_succeeds() -> None:
    h = Harness(max_attempts=4)
    attempts = 0

    @h.consumer.handles(CounterOpened)
    async def flaky(received: Received[Any]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("mongo blinked")

    assert await h.consumer.consume(message_of(opened())) == "handled"
    assert attempts == 3
    assert h.sleeps == [0.1, 0.2]
    assert h.dead.sent == []


async def test_exhausted_retries_dead_letter_with_the_error() -> None:
    h = Harness(max_attempts=3)

    @h.consumer.handles(CounterOpened)
    async def broken(received: Received[Any]) -> None:
        raise RuntimeError("cannot reserve: pool corrupted")

    envelope = opened()
    assert await h.consumer.consume(message_of(envelope, offset=42)) == "dead_lettered"
    assert h.sleeps == [0.1, 0.2]  # backoff capped by max_delay only later
    [(message, headers)] = h.dead.sent
    assert message.value == encode(envelope)
    assert headers["dlq_error_type"] == "RuntimeError"
    assert "pool corrupted" in headers["dlq_error_message"]
    assert headers["dlq_attempts"] == "3"
    assert headers["dlq_source_offset"] == "42"
    assert headers["event_id"] == str(envelope.event_id)
    # Recorded, so a replay does not dead-letter it a second time.
    assert h.inbox.records[f"svc:{envelope.event_id}"] == "dead_lettered"


@pytest.mark.parametrize(
    "value",
    [b"not json", b"{}", b'{"event_type": "Nope", "schema_version": 1}', b"\xff\xfe"],
)
async def test_malformed_messages_are_dead_lettered_without_retry(value: bytes) -> None:
    h = Harness()
    handled = []

    @h.consumer.handles(CounterOpened)
    async def on_opened(received: Received[Any]) -> None:
        handled.append(received)

    bad = IncomingMessage(value=value, key=b"k", headers={}, topic="t", partition=0, offset=1)
    assert await h.consumer.consume(bad) == "malformed"
    assert handled == [] and h.sleeps == []
    [(_, headers)] = h.dead.sent
    assert headers["dlq_attempts"] == "0"
    assert headers["dlq_error_type"] in {"MalformedEvent", "UnregisteredEvent"}


async def test_events_without_a_handler_are_ignored() -> None:
    h = Harness()

    @h.consumer.handles(CounterIncremented)
    async def on_incremented(received: Received[Any]) -> None:
        raise AssertionError("must not be called")

    assert await h.consumer.consume(message_of(opened())) == "ignored"
    assert h.inbox.records == {}


async def test_already_processed_from_the_store_counts_as_duplicate() -> None:
    h = Harness()

    @h.consumer.handles(CounterOpened)
    async def tracked(received: Received[Any]) -> None:
        raise AlreadyProcessed(received.tracking.key)

    assert await h.consumer.consume(message_of(opened())) == "duplicate"
    assert h.dead.sent == []


async def test_unreachable_dead_letter_topic_leaves_message_uncommitted() -> None:
    h = Harness(max_attempts=1)

    class Down:
        async def send(self, message: IncomingMessage, headers: dict[str, str]) -> None:
            raise ConnectionError("kafka down")

    h.consumer.dead_letters = Down()

    @h.consumer.handles(CounterOpened)
    async def broken(received: Received[Any]) -> None:
        raise RuntimeError("boom")

    envelope = opened()
    with pytest.raises(ConnectionError):
        await h.consumer.consume(message_of(envelope))
    assert h.inbox.records == {}  # so the redelivery is tried again


def test_one_handler_per_event_type() -> None:
    h = Harness()

    @h.consumer.handles(CounterOpened)
    async def first(received: Received[Any]) -> None: ...

    with pytest.raises(ValueError, match="already handles"):
        h.consumer.handles(CounterOpened)(first)
    assert h.consumer.topics == ["kami.test.counter.v1"]
    assert h.consumer.group_id == "kami-svc"


def test_topic_prefix_isolates_a_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    from kami_events.topics import dead_letter_topic, topic_for

    assert topic_for("ordering.order") == "kami.ordering.order.v1"
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", "kami-e2e-1234")
    assert topic_for("ordering.order") == "kami-e2e-1234.ordering.order.v1"
    assert dead_letter_topic("payment") == "kami-e2e-1234.payment.dead-letter.v1"
    assert CounterOpened.topic() == "kami-e2e-1234.test.counter.v1"


async def test_a_batch_keeps_each_keys_order_and_runs_keys_at_once() -> None:
    h = Harness()
    seen: list[tuple[str, str]] = []
    both_started = asyncio.Event()
    started: set[str] = set()

    @h.consumer.handles(CounterOpened, CounterIncremented)
    async def handle(received: Received[Any]) -> None:
        key = received.envelope.aggregate_id
        started.add(key)
        if len(started) == 2:
            both_started.set()
        # Each key's first message waits until the other key has started:
        # this only finishes if the two keys run at the same time.
        await asyncio.wait_for(both_started.wait(), timeout=2)
        seen.append((key, received.event.event_type))

    a1, b1 = opened("a"), opened("b")
    a2 = Envelope.wrap(
        CounterIncremented(by=1),
        producer="test",
        aggregate_id="a",
        aggregate_version=2,
        correlation_id="a",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    outcomes = await h.consumer.consume_batch(
        [message_of(a1, 0), message_of(b1, 1), message_of(a2, 2), message_of(a1, 3)]
    )
    assert outcomes == ["handled", "handled", "handled", "duplicate"]
    assert [event for key, event in seen if key == "a"] == ["CounterOpened", "CounterIncremented"]
    assert len(h.inbox.finished_batches) == 1 and len(h.inbox.records) == 3


async def test_a_message_claimed_by_a_batch_that_never_finished_is_handled_again() -> None:
    h = Harness()
    calls: list[str] = []

    @h.consumer.handles(CounterOpened)
    async def handle(received: Received[Any]) -> None:
        calls.append(received.envelope.aggregate_id)

    envelope = opened()
    await h.inbox.claim([f"svc:{envelope.event_id}"], "a-batch-whose-process-died")
    assert await h.consumer.consume(message_of(envelope)) == "handled"
    assert calls == ["c1"]
    assert await h.consumer.consume(message_of(envelope, offset=1)) == "duplicate"


async def test_conflicts_are_retried_at_once_without_backoff() -> None:
    h = Harness(max_attempts=2)
    conflicts = 3

    @h.consumer.handles(CounterOpened)
    async def handle(received: Received[Any]) -> None:
        nonlocal conflicts
        if conflicts:
            conflicts -= 1
            raise ConcurrencyError("moved first")

    assert await h.consumer.consume(message_of(opened())) == "handled"
    assert h.sleeps == [] and h.dead.sent == []


async def test_the_work_after_each_batch_runs_once_before_the_batch_finishes() -> None:
    h = Harness()
    log: list[str] = []

    @h.consumer.handles(CounterOpened)
    async def handle(received: Received[Any]) -> None:
        log.append(received.envelope.aggregate_id)

    async def recount() -> None:
        log.append(f"recount, {len(h.inbox.finished_batches)} batches finished")

    h.consumer.after_each_batch(recount)
    a, b = opened("a"), opened("b")
    await h.consumer.consume_batch([message_of(a, 0), message_of(b, 1)])
    assert sorted(log[:2]) == ["a", "b"]
    assert log[2:] == ["recount, 0 batches finished"]
    # A batch of redeliveries handles nothing, and has nothing to recount.
    await h.consumer.consume_batch([message_of(a, 2)])
    assert len(log) == 3


async def test_a_batch_whose_work_after_it_fails_is_not_finished() -> None:
    h = Harness()
    calls: list[str] = []

    @h.consumer.handles(CounterOpened)
    async def handle(received: Received[Any]) -> None:
        calls.append(received.envelope.aggregate_id)

    failing = True

    async def recount() -> None:
        if failing:
            raise ConnectionError("the read model's database is gone")

    h.consumer.after_each_batch(recount)
    envelope = opened()
    with pytest.raises(ConnectionError):
        await h.consumer.consume(message_of(envelope))
    assert h.inbox.finished_batches == set()
    # Kafka redelivers it (its offset was not committed): handled again.
    failing = False
    assert await h.consumer.consume(message_of(envelope)) == "handled"
    assert calls == ["c1", "c1"]
