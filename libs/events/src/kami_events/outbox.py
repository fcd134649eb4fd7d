"""The outbox relay: publishes committed events to Kafka, then checkpoints.

The commit documents of the event store are the outbox (DESIGN §5): every
commit claims a dense position in the store's small outbox collection before
it is written (see `kami_events.store`). The relay walks the claims from its
checkpoint in position order, publishes each commit's events (topic per
aggregate type, key = aggregate id, idempotent producer with acks=all), and
only then moves the checkpoint past them. A crash between the two
re-publishes them on restart: delivery is at-least-once, and the consumers'
inbox turns that into exactly-once effects.

The holder keeps the checkpoint in memory and stores it at most every
`checkpoint_every` while it publishes, and whenever a pass finds nothing
more (and on shutdown): one write per second under load instead of one per
pass. What it costs is what a crash already costs, a re-publish, of at most
that second's commits.

It stops at a claim whose commit is not written yet (its writer is still at
it), so it never overtakes a stream; a claim left unwritten for
`void_after` (its writer died) is voided and skipped. It wakes up as soon as
its own process commits, and polls for other processes' commits.

Only one relay per service publishes at a time: a lease document elects it,
so running several replicas never interleaves one stream's events.

While it holds the lease without a break, the relay knows the checkpoint
(only the holder moves it), and its own process's commits are handed to it.
So when the positions after the checkpoint are all this process's, it
publishes them without reading the outbox; it reads the outbox when they
are not (another process claimed the next one), at least every
`poll_interval` (for other processes' commits and the lag gauges), and
after any break in its tenure. The store asks it for the checkpoint too
(`MongoEventStore.known_checkpoint`), instead of reading it after each claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import uuid4

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.metrics import EVENTS_PUBLISHED, OUTBOX_LAG, OUTBOX_UNPUBLISHED
from kami_events.mongo import Document
from kami_events.serialization import encode
from kami_events.store import (
    MongoEventStore,
    OutboxClaim,
    OutboxState,
    StoredCommit,
    commit_id_of,
)
from kami_events.topics import topic_for

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    async def publish(self, envelopes: Sequence[Envelope[Any]]) -> None:
        """Publish in order; return only when the broker acknowledged all of them."""


class KafkaEventPublisher:
    """Publishes envelopes through a FastStream Kafka broker.

    The broker must be created with `enable_idempotence=True` and `acks="all"`
    (see `kami_events.kafka.make_broker`), so retries neither lose nor
    reorder a partition's messages.
    """

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    async def publish(self, envelopes: Sequence[Envelope[Any]]) -> None:
        # Send all, then wait for all: the idempotent producer keeps each
        # partition's order while the round trips overlap.
        pending = [
            await self._broker.publish(
                encode(envelope),
                topic=topic_for(envelope.aggregate_type),
                key=envelope.kafka_key,
                headers=envelope.kafka_headers(),
                correlation_id=envelope.correlation_id,
                no_confirm=True,
            )
            for envelope in envelopes
        ]
        await asyncio.gather(*pending)


@dataclass(frozen=True)
class OutboxLag:
    unpublished_commits: int
    oldest_age_seconds: float


class RelayLease:
    """Leader election for the relay, by unique inserts only.

    The lease is a sequence of term documents (`<name>:<term>`). The holder
    renews by inserting the next term before its lease runs out; a relay takes
    over an expired lease by inserting the next term itself. Two contenders
    for one term race on the unique `_id`, which FerretDB decides atomically
    (its conditional updates are not atomic; no TTL index either, so old
    terms are deleted by the holder).
    """

    KEEP_TERMS = 5

    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        name: str = "outbox-relay",
        ttl: timedelta = timedelta(seconds=10),
        clock: Clock = utc_now,
    ) -> None:
        self._collection = collection
        self._name = name
        self._ttl = ttl
        self._clock = clock
        self.holder = f"relay-{uuid4()}"
        self._held_until: datetime | None = None
        # Counts the times this relay took the lease after someone else (or
        # no one) held it: what it knew while holding it before may be stale.
        self.tenure = 0

    async def acquire(self) -> bool:
        """Hold (taking or renewing) the lease; False while another live relay holds it."""
        now = self._clock()
        if self._held_until is not None and self._held_until - now > self._ttl / 2:
            return True  # ours for a while yet: no need to ask the database
        self._held_until = None
        current = await self._collection.find_one({"name": self._name}, sort=[("term", -1)])
        if current is not None:
            expires_at = current["expires_at"]
            if current["holder"] != self.holder and expires_at > now:
                return False
            if current["holder"] == self.holder and expires_at - now > self._ttl / 2:
                self._held_until = expires_at
                return True
        term = int(current["term"]) + 1 if current else 1
        try:
            await self._collection.insert_one(
                {
                    "_id": f"{self._name}:{term}",
                    "name": self._name,
                    "term": term,
                    "holder": self.holder,
                    "expires_at": now + self._ttl,
                }
            )
        except DuplicateKeyError:
            return False  # another relay took this term first
        if current is None or current["holder"] != self.holder:
            self.tenure += 1
        self._held_until = now + self._ttl
        await self._collection.delete_many(
            {"name": self._name, "term": {"$lt": term - self.KEEP_TERMS}}
        )
        return True

    def holds(self) -> bool:
        """Whether the lease is this relay's for a while yet, by the clock alone.

        Its margin is half the renewal's: a pass that starts just before
        `acquire` would renew keeps the lease to its end, instead of finding
        it lapsed midway and publishing again from the stored checkpoint.
        """
        return self._held_until is not None and self._held_until - self._clock() > self._ttl / 4

    async def release(self) -> None:
        """Give up the lease at once (on shutdown) instead of letting it expire."""
        self._held_until = None
        current = await self._collection.find_one({"name": self._name}, sort=[("term", -1)])
        if current is not None and current["holder"] == self.holder:
            await self._collection.delete_one({"_id": current["_id"], "holder": self.holder})


class OutboxRelay:
    def __init__(
        self,
        store: MongoEventStore,
        publisher: EventPublisher,
        *,
        lease: RelayLease | None = None,
        batch_size: int = 200,
        poll_interval: float = 0.2,
        void_after: timedelta = timedelta(seconds=30),
        checkpoint_every: timedelta = timedelta(seconds=1),
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._lease = lease
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._void_after = void_after
        self._clock = clock
        self._service = store.producer
        # The checkpoint as this relay last read or moved it, and the lease
        # tenure it was true in; when it last read the whole outbox.
        self._known: tuple[int, int] | None = None
        self._read_at: datetime | None = None
        # The checkpoint as stored (or read), and when this relay stored it.
        self._checkpoint_every = checkpoint_every
        self._stored = 0
        self._stored_at: datetime | None = None
        store.known_checkpoint = self.known_checkpoint

    def known_checkpoint(self) -> int | None:
        """The checkpoint, if this relay holds the lease and has held it since
        it last read or moved the checkpoint (then no one else moved it);
        else None. Never below the stored one."""
        if self._known is None:
            return None
        checkpoint, tenure = self._known
        if self._lease is not None and (self._lease.tenure != tenure or not self._lease.holds()):
            return None
        return checkpoint

    async def publish_pending(self) -> int:
        """Publish one batch of pending commits; returns how many positions it
        moved past (published commits and voided claims)."""
        state = self._own_pending()
        if state is None:
            state = self._past_known(await self._store.outbox_state())
            self._observe(state)
            self._read_at = self._clock()
            self._known = (state.checkpoint, self._tenure())
        commits: list[StoredCommit] = []
        through = state.checkpoint
        for claim in state.claims[: self._batch_size]:
            if claim.position != through + 1:
                # Claims are dense; a hole means a claim this relay cannot see yet.
                log.warning("%s outbox: no claim at position %d", self._service, through + 1)
                break
            # What this process wrote is at hand; only other processes'
            # commits are read back.
            commit = None if claim.void else self._store.written_here(claim.position)
            if commit is None:
                check = await self._store.check_claim(claim)
                commit = check.commit
                if check.dead:
                    through = claim.position
                    continue
            if commit is None and self._clock() - claim.claimed_at > self._void_after:
                log.warning(
                    "%s outbox: voiding position %d, unwritten for %s (%s)",
                    self._service,
                    claim.position,
                    self._void_after,
                    claim.commit_id,
                )
                commit = await self._store.void(claim)
            elif commit is None:
                break  # its writer is still at it: never overtake it
            if commit is not None:
                commits.append(commit)
            through = claim.position
        if through == state.checkpoint:
            await self.store_checkpoint()  # nothing more for now: store what is known
            return 0
        if commits:
            await self._publisher.publish([e for commit in commits for e in commit.events])
        # A crash from here until it is stored re-publishes the batch on
        # restart; consumers dedupe. Known before it is stored (and the
        # claims behind it swept): a claim checked against it meanwhile is
        # then at worst taken again, never left behind the checkpoint.
        self._known = (through, self._tenure())
        if self._stored_at is None or self._clock() - self._stored_at >= self._checkpoint_every:
            await self.store_checkpoint()
        self._store.forget_written_through(through)
        for commit in commits:
            for envelope in commit.events:
                EVENTS_PUBLISHED.labels(self._service, envelope.event_type).inc()
        return through - state.checkpoint

    async def store_checkpoint(self) -> None:
        """Store the checkpoint this relay knows, if it is ahead of the stored one."""
        checkpoint = self.known_checkpoint()
        if checkpoint is None or checkpoint <= self._stored:
            return
        await self._store.advance_checkpoint(checkpoint)
        self._stored, self._stored_at = checkpoint, self._clock()

    def _past_known(self, state: OutboxState) -> OutboxState:
        """The outbox as read, past the checkpoint this relay knows if that
        is ahead of the stored one (published, not yet stored)."""
        self._stored = max(self._stored, state.checkpoint)
        known = self.known_checkpoint()
        if known is None or known <= state.checkpoint:
            return state
        return OutboxState(known, tuple(c for c in state.claims if c.position > known))

    def _own_pending(self) -> OutboxState | None:
        """The outbox as this relay knows it without reading it: the commits
        its own process wrote right after the checkpoint. None when a read
        is due (see the module docstring)."""
        checkpoint = self.known_checkpoint()
        if checkpoint is None or self._read_at is None:
            return None
        if self._clock() - self._read_at >= timedelta(seconds=self._poll_interval):
            return None
        claims: list[OutboxClaim] = []
        while len(claims) < self._batch_size:
            commit = self._store.written_here(checkpoint + len(claims) + 1)
            if commit is None:
                break
            claims.append(
                OutboxClaim(
                    position=commit.position,
                    commit_id=commit_id_of(commit.stream_id, commit.version),
                    claimed_at=commit.committed_at,
                    void=False,
                )
            )
        if not claims:
            return None  # the next position is not this process's: read
        return OutboxState(checkpoint, tuple(claims))

    def _tenure(self) -> int:
        return self._lease.tenure if self._lease is not None else 0

    async def lag(self) -> OutboxLag:
        state = self._past_known(await self._store.outbox_state())
        self._observe(state)
        return _lag_of(state, self._clock())

    def _observe(self, state: OutboxState) -> None:
        """Set the lag gauges from a read of the outbox, and let go of what
        this process kept for a relay that has passed it (maybe another
        replica's)."""
        self._store.forget_written_through(state.checkpoint)
        lag = _lag_of(state, self._clock())
        OUTBOX_UNPUBLISHED.labels(self._service).set(lag.unpublished_commits)
        OUTBOX_LAG.labels(self._service).set(lag.oldest_age_seconds)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until `stop` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                published = 0
                self._store.committed.clear()
                try:
                    if self._lease is None or await self._lease.acquire():
                        # Its read of the outbox also sets the lag gauges.
                        published = await self.publish_pending()
                    else:
                        await self.lag()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Kafka or Mongo unavailable: keep the commits, try again.
                    log.exception("outbox relay pass failed; retrying")
                    await _sleep_or_stop(stop, max(self._poll_interval, 1.0))
                    continue
                if published < self._batch_size:
                    await _wake_or_stop(stop, self._store.committed, self._poll_interval)
        finally:
            try:
                # Bounded: a database that is gone must not hold up the shutdown.
                await asyncio.wait_for(asyncio.shield(self.store_checkpoint()), timeout=2)
            except Exception:
                log.warning("could not store the outbox checkpoint", exc_info=True)
            if self._lease is not None:
                try:
                    await asyncio.shield(self._lease.release())
                except Exception:
                    log.warning("could not release the relay lease", exc_info=True)


def _lag_of(state: OutboxState, now: datetime) -> OutboxLag:
    pending = [claim for claim in state.claims if not claim.void]
    age = max(0.0, (now - pending[0].claimed_at).total_seconds()) if pending else 0.0
    return OutboxLag(unpublished_commits=len(pending), oldest_age_seconds=age)


async def _wake_or_stop(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until this process commits, `stop` is set, or `seconds` pass."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
