"""The event store's contract, on the real MongoDB-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.clock import ManualClock
from kami_events.mongo import Document
from kami_events.repository import AggregateRepository
from kami_events.store import (
    AlreadyProcessed,
    CommitContext,
    ConcurrencyError,
    MongoEventStore,
    Tracking,
)
from tests.unit.events.sample_events import Counter, CounterIncremented, CounterOpened

AGG = "test.counter"


@pytest.fixture
async def store(mongo_db: AsyncDatabase[Document]) -> MongoEventStore:
    store = MongoEventStore(
        mongo_db, producer="tests", clock=ManualClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    )
    await store.ensure_indexes()
    return store


async def test_append_and_load_round_trip(store: MongoEventStore) -> None:
    ctx = CommitContext(correlation_id="order-1", causation_id="req-9", traceparent="00-ab-cd-01")
    written = await store.append(
        AGG, "c1", 0, [CounterOpened(name="n"), CounterIncremented(by=2)], ctx
    )
    await store.append(AGG, "c1", 2, [CounterIncremented(by=5)], CommitContext("order-1"))
    await store.append(AGG, "other", 0, [CounterOpened(name="x")], CommitContext("x"))

    loaded = await store.load(AGG, "c1")
    assert [e.payload for e in loaded] == [
        CounterOpened(name="n"),
        CounterIncremented(by=2),
        CounterIncremented(by=5),
    ]
    assert [e.aggregate_version for e in loaded] == [1, 2, 3]
    assert loaded[:2] == written  # envelopes survive storage unchanged
    first = loaded[0]
    assert (first.producer, first.aggregate_type, first.aggregate_id) == ("tests", AGG, "c1")
    assert (first.correlation_id, first.causation_id, first.traceparent) == (
        "order-1",
        "req-9",
        "00-ab-cd-01",
    )
    assert first.occurred_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert [e.aggregate_version for e in await store.load(AGG, "c1", after_version=2)] == [3]
    assert await store.last_version(AGG, "c1") == 3
    assert await store.last_version(AGG, "missing") == 0
    assert await store.load(AGG, "missing") == []


async def test_concurrent_appends_at_the_same_version_one_wins(store: MongoEventStore) -> None:
    await store.append(AGG, "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    writers = [
        store.append(AGG, "c1", 1, [CounterIncremented(by=i + 1)], CommitContext("c"))
        for i in range(8)
    ]
    results = await asyncio.gather(*writers, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 7 and all(isinstance(r, ConcurrencyError) for r in losers)
    stream = await store.load(AGG, "c1")
    assert [e.aggregate_version for e in stream] == [1, 2]
    assert stream[1] == winners[0][0]


async def test_stale_writer_conflicts_with_a_multi_event_commit(store: MongoEventStore) -> None:
    repo = AggregateRepository(store, Counter)
    await repo.save(Counter.open("c1", "n"), CommitContext("c"))
    fast, slow = await repo.get("c1"), await repo.get("c1")
    assert fast is not None and slow is not None
    fast.increment(1)
    fast.increment(1)
    await repo.save(fast, CommitContext("c"))
    slow.increment(10)
    with pytest.raises(ConcurrencyError):
        await repo.save(slow, CommitContext("c"))
    reloaded = await repo.get("c1")
    assert reloaded is not None and (reloaded.total, reloaded.version) == (2, 3)


async def test_tracking_makes_a_consumer_effect_exactly_once(store: MongoEventStore) -> None:
    tracking = Tracking(consumer="inventory", event_id="6a1b2c3d-0000-4000-8000-000000000001")
    await store.append(AGG, "c1", 0, [CounterOpened(name="n")], CommitContext("c"), tracking)
    # The redelivered message decides the same thing again: refused as a duplicate,
    # not as a concurrency conflict, and nothing is written.
    with pytest.raises(AlreadyProcessed):
        await store.append(AGG, "c2", 0, [CounterOpened(name="n")], CommitContext("c"), tracking)
    assert await store.load(AGG, "c2") == []


async def test_commits_are_read_in_position_order_and_marked_published(
    store: MongoEventStore, unique: Callable[[str], str]
) -> None:
    ids = [unique("c") for _ in range(5)]
    for aggregate_id in ids:
        await store.append(AGG, aggregate_id, 0, [CounterOpened(name="n")], CommitContext("c"))
    commits = await store.read_commits(unpublished_only=True)
    assert [c.events[0].aggregate_id for c in commits] == ids
    positions = [c.position for c in commits]
    assert positions == sorted(positions) and len(set(positions)) == 5

    await store.mark_published(positions[:3])
    left = await store.read_commits(unpublished_only=True)
    assert [c.position for c in left] == positions[3:]
    assert [c.position for c in await store.read_commits(after_position=positions[1])] == (
        positions[2:]
    )


async def test_rejects_events_of_another_aggregate_type(store: MongoEventStore) -> None:
    with pytest.raises(TypeError):
        await store.append("test.other", "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    with pytest.raises(ValueError, match="expected_version"):
        await store.append(AGG, "c1", -1, [CounterOpened(name="n")], CommitContext("c"))
