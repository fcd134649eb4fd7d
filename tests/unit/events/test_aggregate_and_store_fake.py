from __future__ import annotations

import pytest

from kami_events.event import Event
from kami_events.repository import AggregateRepository
from kami_events.store import AlreadyProcessed, CommitContext, ConcurrencyError, Tracking
from kami_events.testing import InMemoryEventStore
from tests.unit.events.sample_events import Counter, CounterIncremented, CounterOpened

CTX = CommitContext(correlation_id="corr-1")


def test_commands_trigger_events_and_apply_changes_state() -> None:
    counter = Counter.open("c1", "keys")
    counter.increment(2)
    counter.increment(3)
    assert counter.total == 5
    assert counter.version == 0  # nothing committed yet
    expected: list[type[Event]] = [
        CounterOpened,
        CounterIncremented,
        CounterIncremented,
    ]
    assert [type(e) for e in counter.pending_events] == expected


def test_rehydrate_replays_the_same_apply() -> None:
    history = [CounterOpened(name="n"), CounterIncremented(by=4), CounterIncremented(by=1)]
    counter = Counter.rehydrate("c1", history)
    assert (counter.name, counter.total, counter.version) == ("n", 5, 3)
    assert counter.pending_events == ()


def test_invariant_violations_raise_before_any_event() -> None:
    counter = Counter("c1")
    with pytest.raises(ValueError, match="not open"):
        counter.increment(1)
    assert counter.pending_events == ()


async def test_repository_saves_at_loaded_version_and_detects_conflicts() -> None:
    store = InMemoryEventStore(producer="test")
    repo = AggregateRepository(store, Counter)
    counter = Counter.open("c1", "n")
    await repo.save(counter, CTX)
    assert counter.version == 1

    first = await repo.get("c1")
    second = await repo.get("c1")
    assert first is not None and second is not None
    first.increment(1)
    second.increment(2)
    await repo.save(first, CTX)
    with pytest.raises(ConcurrencyError):
        await repo.save(second, CTX)

    reloaded = await repo.get("c1")
    assert reloaded is not None
    assert (reloaded.total, reloaded.version) == (1, 2)


async def test_tracked_append_happens_once() -> None:
    store = InMemoryEventStore()
    tracking = Tracking(consumer="svc", event_id="e-1")
    await store.append("test.counter", "c1", 0, [CounterOpened(name="a")], CTX, tracking)
    with pytest.raises(AlreadyProcessed):
        await store.append("test.counter", "c2", 0, [CounterOpened(name="b")], CTX, tracking)
    assert await store.load("test.counter", "c2") == []


async def test_missing_aggregate_is_none() -> None:
    assert await AggregateRepository(InMemoryEventStore(), Counter).get("nope") is None
