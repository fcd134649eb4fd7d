"""The event store's contract, on the real MongoDB-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.clock import ManualClock, ManualMonotonic
from kami_events.mongo import Document
from kami_events.repository import AggregateRepository
from kami_events.store import (
    AlreadyProcessed,
    CommitContext,
    ConcurrencyError,
    MongoEventStore,
    Tracking,
    commit_id_of,
    position_key,
    stream_id_of,
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


async def test_commits_are_read_in_position_order_and_checkpointed(
    store: MongoEventStore, unique: Callable[[str], str]
) -> None:
    ids = [unique("c") for _ in range(5)]
    for aggregate_id in ids:
        await store.append(AGG, aggregate_id, 0, [CounterOpened(name="n")], CommitContext("c"))
    commits = await store.read_commits()
    assert [c.events[0].aggregate_id for c in commits] == ids
    positions = [c.position for c in commits]
    assert positions == [1, 2, 3, 4, 5]
    assert not any(c.published for c in commits)
    state = await store.outbox_state()
    assert [claim.position for claim in state.claims] == positions

    await store.advance_checkpoint(positions[2])
    state = await store.outbox_state()
    assert state.checkpoint == 3
    assert [claim.position for claim in state.claims] == positions[3:]
    assert [c.published for c in await store.read_commits()] == [True] * 3 + [False] * 2
    assert [c.position for c in await store.read_commits(after_position=positions[1])] == (
        positions[2:]
    )


async def test_a_reader_never_passes_a_claim_whose_commit_is_not_written_yet(
    store: MongoEventStore, mongo_db: AsyncDatabase[Document]
) -> None:
    await store.append(AGG, "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    # A writer in another process claimed position 2 and has not written its
    # commit yet; a third commit lands at position 3 meanwhile.
    await mongo_db[store.outbox.name].insert_one(
        {
            "_id": position_key(2),
            "position": 2,
            "commit_id": commit_id_of(stream_id_of(AGG, "slow"), 1),
            "claimed_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
            "void": False,
        }
    )
    other = MongoEventStore(mongo_db, producer="tests")  # no position hint in memory
    await other.append(AGG, "c3", 0, [CounterOpened(name="n")], CommitContext("c"))
    assert [c.position for c in await store.read_commits()] == [1]

    # The relay gives up on the claim: a tombstone takes the position, and the
    # slow writer's late insert at position 2 is refused by it.
    [claim] = [c for c in (await store.outbox_state()).claims if c.position == 2]
    assert await store.void(claim) is None
    assert [c.position for c in await store.read_commits()] == [1, 3]
    with pytest.raises(DuplicateKeyError):
        await store.commits.insert_one({"_id": claim.commit_id, "position": 2, "tracking": "t"})


async def test_a_slow_writer_whose_claim_was_voided_claims_again(
    store: MongoEventStore,
) -> None:
    voided: list[int] = []
    real_insert = store.commits.insert_many

    async def void_first_then_insert(documents: list[Document], **options: Any) -> Any:
        # The relay voids the writer's claim between its claim and its insert.
        if not voided:
            [claim] = (await store.outbox_state()).claims
            voided.append(claim.position)
            await store.void(claim)
        return await real_insert(documents, **options)

    store.commits.insert_many = void_first_then_insert  # type: ignore[method-assign,assignment]
    [written] = await store.append(AGG, "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    store.commits.insert_many = real_insert  # type: ignore[method-assign]
    [commit] = await store.read_commits()
    assert voided == [1] and commit.position == 2
    assert commit.events == (written,)
    assert [
        e.payload
        for e in await MongoEventStore(store.commits.database, producer="x").load(AGG, "c1")
    ] == [CounterOpened(name="n")]


async def test_loads_follow_the_stream_without_the_cache(
    store: MongoEventStore, mongo_db: AsyncDatabase[Document]
) -> None:
    await store.append(
        AGG, "c1", 0, [CounterOpened(name="n"), CounterIncremented(by=1)], CommitContext("c")
    )
    fresh = MongoEventStore(mongo_db, producer="tests")
    await fresh.append(AGG, "c1", 2, [CounterIncremented(by=2)], CommitContext("c"))
    # `store` cached versions 1-2; it still finds version 3, written elsewhere.
    assert [e.aggregate_version for e in await store.load(AGG, "c1")] == [1, 2, 3]
    assert await store.last_version(AGG, "c1") == 3
    with pytest.raises(ConcurrencyError):
        await store.append(AGG, "c1", 2, [CounterIncremented(by=9)], CommitContext("c"))


async def test_a_trusted_stream_loads_from_memory_and_a_lost_race_reads_it_again(
    mongo_db: AsyncDatabase[Document],
) -> None:
    monotonic = ManualMonotonic()
    hot = MongoEventStore(mongo_db, producer="tests", trust_cached_seconds=2.0, monotonic=monotonic)
    await hot.ensure_indexes()
    await hot.append(AGG, "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    other = MongoEventStore(mongo_db, producer="tests")
    await other.append(AGG, "c1", 1, [CounterIncremented(by=2)], CommitContext("c"))

    # Within the window `hot` trusts what it wrote: the other process's
    # commit is not seen, and no command is made.
    finds = _count_finds(hot)
    assert [e.aggregate_version for e in await hot.load(AGG, "c1")] == [1]
    assert await hot.last_version(AGG, "c1") == 1
    assert finds() == 0
    # A decision on that older state cannot be saved, and the next load asks again.
    with pytest.raises(ConcurrencyError):
        await hot.append(AGG, "c1", 1, [CounterIncremented(by=9)], CommitContext("c"))
    assert [e.aggregate_version for e in await hot.load(AGG, "c1")] == [1, 2]
    # The window lapses: a trusted stream is asked for its next commit again.
    await other.append(AGG, "c1", 2, [CounterIncremented(by=3)], CommitContext("c"))
    monotonic.now += 2.0
    assert await hot.last_version(AGG, "c1") == 3
    assert [e.aggregate_version for e in await hot.load(AGG, "c1")] == [1, 2, 3]
    # Its own appends keep it trusted.
    await hot.append(AGG, "c1", 3, [CounterIncremented(by=4)], CommitContext("c"))
    finds = _count_finds(hot)
    assert [e.aggregate_version for e in await hot.load(AGG, "c1")] == [1, 2, 3, 4]
    assert finds() == 0


def _count_finds(store: MongoEventStore) -> Callable[[], int]:
    """How many `find_one`s the store's commits collection gets from now on."""
    calls = 0
    original = store.commits.find_one

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)

    store.commits.find_one = counting  # type: ignore[method-assign]
    return lambda: calls


async def test_rejects_events_of_another_aggregate_type(store: MongoEventStore) -> None:
    with pytest.raises(TypeError):
        await store.append("test.other", "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    with pytest.raises(ValueError, match="expected_version"):
        await store.append(AGG, "c1", -1, [CounterOpened(name="n")], CommitContext("c"))


async def test_concurrent_appends_go_together_in_few_writes_and_each_is_decided_alone(
    store: MongoEventStore,
) -> None:
    """Group commit: appends that wait on one write go in the next; every
    commit still gets its own dense position, and a commit refused by the
    version index fails alone, not its batch."""
    calls: list[int] = []
    real_insert = store.commits.insert_many

    async def counting_insert(documents: list[Document], **options: Any) -> Any:
        calls.append(len(documents))
        return await real_insert(documents, **options)

    store.commits.insert_many = counting_insert  # type: ignore[method-assign,assignment]
    await store.append(AGG, "taken", 0, [CounterOpened(name="first")], CommitContext("c"))

    async def open_counter(name: str) -> str:
        try:
            await store.append(AGG, name, 0, [CounterOpened(name=name)], CommitContext("c"))
        except ConcurrencyError:
            return "conflict"
        return "written"

    names = [f"c{i}" for i in range(40)] + ["taken"]
    outcomes = await asyncio.gather(*(open_counter(name) for name in names))
    store.commits.insert_many = real_insert  # type: ignore[method-assign]

    assert outcomes == ["written"] * 40 + ["conflict"]
    assert sum(calls) == 42 and len(calls) < 20  # 1 + 41 commits in far fewer writes
    commits = await store.read_commits()
    positions = [c.position for c in commits]
    # Dense: the refused commit's claim is voided, so one of 1..42 is missing.
    assert len(positions) == 41 and set(positions) < set(range(1, 43))
    assert sorted(c.stream_id for c in commits) == sorted(
        {stream_id_of(AGG, name) for name in names}
    )
