"""Outbox relay -> real Kafka -> FastStream consumer, on the real servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.clock import ManualClock
from kami_events.consumer import EventConsumer, MongoInbox, Received
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.outbox import KafkaEventPublisher, OutboxRelay, RelayLease
from kami_events.store import CommitContext, MongoEventStore
from kami_events.topics import topic_for
from tests.integration.conftest import eventually
from tests.integration.kafka_helpers import committed_past, header, read_topic, running_broker
from tests.unit.events.sample_events import CounterIncremented, CounterOpened

AGG = "test.counter"
TOPIC = topic_for(AGG)


class SimulatedCrash(BaseException):
    """Stands for the relay process dying: nothing after it runs."""


class CrashAfterPublish:
    """Publishes for real, then 'dies' before the relay can mark the commits."""

    def __init__(self, real: KafkaEventPublisher) -> None:
        self._real = real

    async def publish(self, envelopes: Sequence[Envelope[Any]]) -> None:
        await self._real.publish(envelopes)
        raise SimulatedCrash


@pytest.fixture
async def store(mongo_db: AsyncDatabase[Document]) -> MongoEventStore:
    store = MongoEventStore(mongo_db, producer="tests")
    await store.ensure_indexes()
    return store


async def test_relay_publishes_in_stream_order_to_a_consumer(
    store: MongoEventStore,
    mongo_db: AsyncDatabase[Document],
    kafka_bootstrap: str,
    unique: Callable[[str], str],
) -> None:
    streams = [unique("counter") for _ in range(3)]
    for stream in streams:
        await store.append(AGG, stream, 0, [CounterOpened(name=stream)], CommitContext(stream))
        for version in range(1, 6):
            await store.append(
                AGG, stream, version, [CounterIncremented(by=version)], CommitContext(stream)
            )

    received: dict[str, list[int]] = {s: [] for s in streams}
    consumer = EventConsumer(service=unique("svc"), inbox=MongoInbox(mongo_db["inbox"]))

    @consumer.handles(CounterOpened, CounterIncremented)
    async def record(message: Received[Any]) -> None:
        if message.envelope.aggregate_id in received:
            received[message.envelope.aggregate_id].append(message.envelope.aggregate_version)

    async with running_broker(kafka_bootstrap, "tests") as broker:
        consumer.subscribe(broker)
        await broker.start()
        relay = OutboxRelay(store, KafkaEventPublisher(broker), batch_size=4)
        lag = await relay.lag()
        assert lag.unpublished_commits == 18 and lag.oldest_age_seconds >= 0
        while await relay.publish_pending():
            pass
        assert (await relay.lag()).unpublished_commits == 0

        await eventually(
            lambda: all(len(v) == 6 for v in received.values()),
            message=f"consumer got {received}",
        )
    assert all(versions == [1, 2, 3, 4, 5, 6] for versions in received.values())

    # On the wire: key = aggregate id, headers repeat type and ids.
    records = await read_topic(
        kafka_bootstrap,
        TOPIC,
        until=lambda rs: sum(r.key == streams[0].encode() for r in rs) >= 6,
    )
    mine = [r for r in records if r.key == streams[0].encode()]
    assert len({r.partition for r in mine}) == 1
    first = json.loads(mine[0].value)
    assert header(mine[0], "event_type") == first["event_type"] == "CounterOpened"
    assert header(mine[0], "event_id") == first["event_id"]
    assert header(mine[0], "correlation_id") == streams[0]


async def test_crash_between_publish_and_mark_duplicates_on_wire_but_not_in_effect(
    store: MongoEventStore,
    mongo_db: AsyncDatabase[Document],
    kafka_bootstrap: str,
    unique: Callable[[str], str],
) -> None:
    stream = unique("counter")
    [opened] = await store.append(AGG, stream, 0, [CounterOpened(name="x")], CommitContext(stream))

    # The consumer's effect is a commit in its own store, tracked by the inbox key.
    effects = MongoEventStore(mongo_db, producer="effects", collection="effects")
    await effects.ensure_indexes()
    consumer = EventConsumer(service=unique("svc"), inbox=MongoInbox(mongo_db["inbox"]))
    calls = 0

    @consumer.handles(CounterOpened)
    async def mirror(message: Received[Any]) -> None:
        nonlocal calls
        if message.envelope.aggregate_id != stream:
            return
        calls += 1
        await effects.append(
            AGG, stream, 0, [message.event], CommitContext(stream), message.tracking
        )

    async with running_broker(kafka_bootstrap, "tests") as broker:
        await broker.start()
        real = KafkaEventPublisher(broker)
        with pytest.raises(SimulatedCrash):
            await OutboxRelay(store, CrashAfterPublish(real)).publish_pending()
        assert (await OutboxRelay(store, real).lag()).unpublished_commits == 1
        [pending] = await store.read_commits()
        assert pending.events[0] == opened and not pending.published

        # "Restart": a new relay finds the commit unmarked and publishes it again.
        assert await OutboxRelay(store, real).publish_pending() == 1
        assert (await OutboxRelay(store, real).lag()).unpublished_commits == 0
        assert [c.published for c in await store.read_commits()] == [True]

        records = await read_topic(
            kafka_bootstrap, TOPIC, until=lambda rs: sum(r.key == stream.encode() for r in rs) >= 2
        )
        on_wire = [r for r in records if r.key == stream.encode()]
        assert len(on_wire) == 2
        assert {header(r, "event_id") for r in on_wire} == {str(opened.event_id)}

        consumer.subscribe(broker)
        await broker.start()  # starts the newly added subscriber
        await eventually(lambda: calls >= 1, message="consumer never got the event")
        # Give the duplicate time to arrive and be skipped.
        inbox_key = f"{consumer.service}:{opened.event_id}"
        await eventually(
            lambda: mongo_db["inbox"].find_one({"_id": inbox_key}), message="inbox not written"
        )
        await eventually(lambda: committed_past(kafka_bootstrap, consumer.group_id, on_wire))
    assert calls == 1
    assert len(await effects.load(AGG, stream)) == 1


async def test_only_one_relay_holds_the_lease(mongo_db: AsyncDatabase[Document]) -> None:
    from kami_events.clock import ManualClock

    clock = ManualClock()
    leases = mongo_db["leases"]
    first = RelayLease(leases, ttl=timedelta(seconds=10), clock=clock)
    second = RelayLease(leases, ttl=timedelta(seconds=10), clock=clock)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.acquire()  # renewal
    clock.advance(timedelta(seconds=11))  # first stopped renewing: its lease expired
    assert await second.acquire()
    assert not await first.acquire()
    await second.release()
    assert await first.acquire()


async def test_contending_relays_never_share_a_term(mongo_db: AsyncDatabase[Document]) -> None:
    """On FerretDB conditional updates are not atomic; the lease must still
    elect exactly one holder when many relays race for it."""
    import asyncio

    from kami_events.clock import ManualClock

    clock = ManualClock()
    for _round in range(5):
        clock.advance(timedelta(seconds=30))  # whoever held it has expired
        relays = [RelayLease(mongo_db["leases"], clock=clock) for _ in range(8)]
        won = await asyncio.gather(*(relay.acquire() for relay in relays))
        assert sum(won) == 1
        [winner] = [relay for relay, ok in zip(relays, won, strict=True) if ok]
        assert all([not await r.acquire() for r in relays if r is not winner])


async def test_concurrent_appends_to_different_streams_all_succeed(
    store: MongoEventStore, unique: Callable[[str], str]
) -> None:
    import asyncio

    ids = [unique("c") for _ in range(30)]
    await asyncio.gather(
        *(store.append(AGG, i, 0, [CounterOpened(name=i)], CommitContext(i)) for i in ids)
    )
    commits = await store.read_commits(limit=1000)
    assert sorted(c.events[0].aggregate_id for c in commits) == sorted(ids)
    # Dense and unique: readers that checkpoint "after position" miss nothing.
    assert sorted(c.position for c in commits) == list(range(1, 31))


class Recording:
    def __init__(self) -> None:
        self.published: list[Envelope[Any]] = []

    async def publish(self, envelopes: Sequence[Envelope[Any]]) -> None:
        self.published.extend(envelopes)


def _count_outbox_reads(store: MongoEventStore) -> Callable[[], int]:
    calls = 0
    find, find_one = store.outbox.find, store.outbox.find_one

    def counting_find(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return find(*args, **kwargs)

    async def counting_find_one(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await find_one(*args, **kwargs)

    store.outbox.find = counting_find  # type: ignore[method-assign]
    store.outbox.find_one = counting_find_one  # type: ignore[method-assign]
    return lambda: calls


async def _holding_relay(
    mongo_db: AsyncDatabase[Document],
) -> tuple[ManualClock, MongoEventStore, RelayLease, Recording, OutboxRelay]:
    """A store and the relay that holds its lease, on a clock the test moves."""
    clock = ManualClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    store = MongoEventStore(mongo_db, producer="tests", clock=clock)
    await store.ensure_indexes()
    lease = RelayLease(mongo_db["leases"], clock=clock)
    publisher = Recording()
    relay = OutboxRelay(store, publisher, lease=lease, poll_interval=1.0, clock=clock)
    assert await lease.acquire()
    return clock, store, lease, publisher, relay


async def _published_past_the_stored_checkpoint(
    mongo_db: AsyncDatabase[Document],
) -> tuple[ManualClock, RelayLease, Recording, OutboxRelay]:
    """A holding relay that published c1's first two commits and, storing the
    checkpoint at most every second, stored it only after the first."""
    clock, store, lease, publisher, relay = await _holding_relay(mongo_db)
    await store.append(AGG, "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    assert await relay.publish_pending() == 1  # stored: the first this relay stores
    await store.append(AGG, "c1", 1, [CounterIncremented(by=1)], CommitContext("c"))
    assert await relay.publish_pending() == 1  # published, stored only in a second
    return clock, lease, publisher, relay


async def _another_process_opens_c2(mongo_db: AsyncDatabase[Document], clock: ManualClock) -> None:
    other = MongoEventStore(mongo_db, producer="tests", clock=clock)
    await other.append(AGG, "c2", 0, [CounterOpened(name="o")], CommitContext("o"))


async def test_the_lease_holder_publishes_its_own_commits_without_reading_the_outbox(
    mongo_db: AsyncDatabase[Document],
) -> None:
    clock, store, lease, publisher, relay = await _holding_relay(mongo_db)
    await store.append(AGG, "c1", 0, [CounterOpened(name="n")], CommitContext("c"))
    assert await relay.publish_pending() == 1  # the first pass reads the outbox

    reads = _count_outbox_reads(store)
    for version in (1, 2):
        await store.append(AGG, "c1", version, [CounterIncremented(by=1)], CommitContext("c"))
    assert await relay.publish_pending() == 2
    # Neither the claims (the checkpoint came from the relay) nor the relay read.
    assert reads() == 0
    assert relay.known_checkpoint() == 3

    # Another process takes the next position: the relay reads, and keeps the order.
    await _another_process_opens_c2(mongo_db, clock)
    await store.append(AGG, "c1", 3, [CounterIncremented(by=1)], CommitContext("c"))
    assert await relay.publish_pending() == 2
    assert reads() >= 1
    assert [(e.aggregate_id, e.aggregate_version) for e in publisher.published] == [
        ("c1", 1),
        ("c1", 2),
        ("c1", 3),
        ("c2", 1),
        ("c1", 4),
    ]
    # Stored at most every second while publishing: the first pass stored
    # it, these did not yet; the next pass, finding nothing, stores it.
    stored = await mongo_db["events_outbox"].find_one({"_id": "checkpoint"})
    assert stored is not None and stored["position"] == 1
    assert await relay.publish_pending() == 0
    stored = await mongo_db["events_outbox"].find_one({"_id": "checkpoint"})
    assert stored is not None and stored["position"] == 5

    # A break in the lease: what the relay knew may be stale, so it reads again.
    clock.advance(timedelta(seconds=11))
    rival = RelayLease(mongo_db["leases"], clock=clock)
    assert await rival.acquire()
    assert not await lease.acquire()
    assert relay.known_checkpoint() is None
    clock.advance(timedelta(seconds=11))
    assert await lease.acquire()
    assert relay.known_checkpoint() is None  # a new tenure: not known until read
    before = reads()
    assert await relay.publish_pending() == 0
    assert reads() > before
    assert relay.known_checkpoint() == 5


async def test_a_pass_that_starts_before_the_renewal_keeps_what_its_relay_knows(
    mongo_db: AsyncDatabase[Document],
) -> None:
    """The last CI run saw an order's event published twice: a pass began
    with the lease just short of renewal, found it lapsed midway by the
    clock, and fell back to the stored checkpoint."""
    clock, lease, publisher, relay = await _published_past_the_stored_checkpoint(mongo_db)

    clock.advance(timedelta(seconds=4.9))
    assert await lease.acquire()  # not renewed yet: more than half the ttl left
    clock.advance(timedelta(seconds=0.2))  # the pass's own reads take a while
    assert relay.known_checkpoint() == 2
    await _another_process_opens_c2(mongo_db, clock)
    assert await relay.publish_pending() == 1
    assert [(e.aggregate_id, e.aggregate_version) for e in publisher.published] == [
        ("c1", 1),
        ("c1", 2),
        ("c2", 1),
    ]


async def test_a_checkpoint_not_yet_stored_is_kept_by_its_relay_and_republished_after_a_crash(
    mongo_db: AsyncDatabase[Document],
) -> None:
    clock, _lease, publisher, relay = await _published_past_the_stored_checkpoint(mongo_db)
    # A read of the outbox (another process's commit, or the poll) does not
    # take the relay back to the stored checkpoint.
    await _another_process_opens_c2(mongo_db, clock)
    assert await relay.publish_pending() == 1
    assert [(e.aggregate_id, e.aggregate_version) for e in publisher.published] == [
        ("c1", 1),
        ("c1", 2),
        ("c2", 1),
    ]
    stored = await mongo_db["events_outbox"].find_one({"_id": "checkpoint"})
    assert stored is not None and stored["position"] == 1

    # The process dies before storing it: the next relay publishes again what
    # was past the stored checkpoint (at least once; consumers dedupe).
    clock.advance(timedelta(seconds=11))
    successor_publisher = Recording()
    successor_lease = RelayLease(mongo_db["leases"], clock=clock)
    successor = OutboxRelay(
        MongoEventStore(mongo_db, producer="tests", clock=clock),
        successor_publisher,
        lease=successor_lease,
        clock=clock,
    )
    assert await successor_lease.acquire()
    assert await successor.publish_pending() == 2
    assert [(e.aggregate_id, e.aggregate_version) for e in successor_publisher.published] == [
        ("c1", 2),
        ("c2", 1),
    ]
    assert await successor.publish_pending() == 0
    stored = await mongo_db["events_outbox"].find_one({"_id": "checkpoint"})
    assert stored is not None and stored["position"] == 3
