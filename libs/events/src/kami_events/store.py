"""The event store: one MongoDB collection per service, one document per commit.

A commit holds the events of one command for one stream (DESIGN §5). Its
document is written with a single `insert_one`, so it is atomic on MongoDB 7+
and on FerretDB 1.24 alike.

- A commit's `_id` is `<stream_id>@<first version>`, so two writers that
  loaded the same stream version race on one `_id`: one wins, the other gets
  `ConcurrencyError` (optimistic concurrency). Loading a stream follows the
  `_id`s from version 1, each commit naming the next through `last_version`.
- Exactly-once effects for consumers: a commit may carry a tracking key
  (`<consumer>:<event_id>` of the message that caused it) under a unique
  index, so the effect and the "processed" mark are one write. A second
  attempt gets `AlreadyProcessed`. Commits without tracking get a unique
  filler value, because FerretDB has no partial indexes.
- Every commit has a dense store-wide `position`, claimed *before* the commit
  is inserted by inserting `<position>` into the small outbox collection
  (unique `_id`: one claimant per position). A writer claims the next
  position only after the previous one exists, and a stream's later commit
  is claimed after its earlier commit was written, so position order keeps
  every stream's order. The relay (`kami_events.outbox`) publishes commits
  in position order and records how far it got in the outbox's
  `checkpoint` document, then deletes the claims behind it: the outbox stays
  as small as the backlog, and "published" is `position <= checkpoint`.
- A claim whose commit never arrives (its writer died) is voided by the
  relay after a while: a tombstone takes the position under the commits'
  unique `position` index, so a writer that was only slow fails its insert,
  sees the tombstone and claims again.
- Group commit: appends made while a write is in flight (concurrent
  handlers, HTTP requests) wait for it and then go together: one
  `insert_many` claims their positions, one reads the checkpoint (unless
  this process's relay holds the lease and knows it), one `insert_many`
  writes their commits. Each commit is still its own
  single-document insert, decided by the unique indexes alone, so a batch is
  no transaction and needs none; under load a handful of commands carry
  dozens of commits, and a lone append costs what it did.
- The relay is handed the commits written in its own process, so it reads
  back only what other processes wrote.
- Hot streams are trusted in memory for a moment (`trust_cached_seconds`):
  a stream this process wrote, or read to its end, within that window is
  loaded from the cache without asking the database for a next commit. Only
  another process (a replica, a CLI tool) can have appended meanwhile, and a
  decision taken on that older state cannot be saved: its append races for
  the `_id` the other commit took and gets `ConcurrencyError`, after which
  the stream is read from the database again. What such a load may miss
  for that long is another process's latest commit, never one of this
  process's own. 0 (the default) asks the database every time.

Why this shape: on FerretDB 1.24 every query is a full table scan, decoded in
Go unless its filter is exactly `{_id: <string>}` (then SQLite scans it, some
50 times cheaper), and only an insert under a unique index decides a race
(docs/storage.md). So the hot paths — append, load, the relay's polling —
read by `_id` only, and what is polled stays small. On MongoDB the same
reads are index lookups.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.metrics import CONCURRENCY_CONFLICTS, EVENTS_APPENDED
from kami_events.mongo import DUPLICATE_KEY, Document
from kami_events.serialization import decode_document


class ConcurrencyError(Exception):
    """Another writer appended to the stream since it was loaded; reload and retry."""


class AlreadyProcessed(Exception):
    """The tracked message already produced its commit; nothing was written."""


class StreamCorrupted(Exception):
    """A stream's stored versions are not contiguous."""


@dataclass(frozen=True)
class CommitContext:
    """What ties a commit to the purchase and the message or request behind it."""

    correlation_id: str
    causation_id: str | None = None
    traceparent: str | None = None


@dataclass(frozen=True)
class Tracking:
    """The consumed message a commit is the effect of."""

    consumer: str
    event_id: UUID | str

    @property
    def key(self) -> str:
        return f"{self.consumer}:{self.event_id}"


@dataclass(frozen=True)
class StoredCommit:
    position: int
    stream_id: str
    version: int
    events: tuple[Envelope[Event], ...]
    committed_at: datetime
    published: bool


def wrap_commit(
    events: Sequence[Event],
    producer: str,
    aggregate_id: str,
    expected_version: int,
    context: CommitContext,
    *,
    occurred_at: datetime,
) -> list[Envelope[Event]]:
    """The envelopes of one commit: versions follow `expected_version`."""
    return [
        Envelope.wrap(
            event,
            producer=producer,
            aggregate_id=aggregate_id,
            aggregate_version=expected_version + offset,
            correlation_id=context.correlation_id,
            causation_id=context.causation_id,
            traceparent=context.traceparent,
            occurred_at=occurred_at,
        )
        for offset, event in enumerate(events, start=1)
    ]


def stream_id_of(aggregate_type: str, aggregate_id: str) -> str:
    return f"{aggregate_type}/{aggregate_id}"


def commit_id_of(stream_id: str, version: int) -> str:
    """The `_id` of the commit that starts at `version` of the stream."""
    return f"{stream_id}@{version:010d}"


def position_key(position: int) -> str:
    # Zero-padded so the outbox's string `_id`s sort like the numbers.
    return f"{position:015d}"


VOID_STREAM = "~void"
CHECKPOINT_ID = "checkpoint"


class EventStore(Protocol):
    """What handlers need from an event store; `MongoEventStore` and the
    in-memory fake in `kami_events.testing` both provide it."""

    async def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        context: CommitContext,
        tracking: Tracking | None = None,
    ) -> list[Envelope[Event]]: ...

    async def load(
        self,
        aggregate_type: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        trust_seconds: float | None = None,
    ) -> list[Envelope[Event]]: ...

    async def last_version(
        self, aggregate_type: str, aggregate_id: str, *, trust_seconds: float | None = None
    ) -> int: ...


@dataclass(frozen=True)
class OutboxClaim:
    """A position taken for a commit that the relay has not yet passed."""

    position: int
    commit_id: str
    claimed_at: datetime
    void: bool


@dataclass(frozen=True)
class ClaimCheck:
    commit: StoredCommit | None  # written at the claimed position
    dead: bool  # nothing will ever be written there


@dataclass(frozen=True)
class OutboxState:
    """The relay's checkpoint and the claims ahead of it, in position order."""

    checkpoint: int
    claims: tuple[OutboxClaim, ...]

    @property
    def highest(self) -> int:
        return max([self.checkpoint, *(claim.position for claim in self.claims)])


def duplicate_indexes(error: BulkWriteError) -> set[int]:
    """The documents of an `insert_many` that a unique index refused; any other
    write error is re-raised (the batch could not be decided)."""
    refused: set[int] = set()
    for write_error in error.details.get("writeErrors", []):
        if write_error.get("code") != DUPLICATE_KEY:
            raise error
        refused.add(int(write_error["index"]))
    return refused


@dataclass
class _PendingCommit:
    document: Document
    envelopes: list[Envelope[Event]]
    # "written", "refused" (a unique index: version or tracking taken) or
    # "tombstoned" (the relay voided its slow claim: claim again).
    outcome: asyncio.Future[str]


class MongoEventStore:
    MAX_CLAIM_ATTEMPTS = 100
    # Commits one group write takes at most.
    MAX_GROUP_COMMIT = 200
    # Commits written here that the relay has not passed yet, kept for it.
    MAX_HANDED_TO_RELAY = 20_000
    # The relay deletes the claims behind its checkpoint once this many have passed.
    SWEEP_CLAIMS_EVERY = 64
    # Streams are immutable and contiguous, so a cached prefix stays true and
    # a load only asks for what follows it. Bounded by events held.
    CACHED_EVENTS = 50_000

    def __init__(
        self,
        database: AsyncDatabase[Document],
        *,
        producer: str,
        clock: Clock = utc_now,
        collection: str = "events",
        trust_cached_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if trust_cached_seconds < 0:
            raise ValueError(f"trust_cached_seconds must be >= 0, got {trust_cached_seconds}")
        self.producer = producer
        self.commits: AsyncCollection[Document] = database[collection]
        self.outbox: AsyncCollection[Document] = database[f"{collection}_outbox"]
        self._clock = clock
        self._last_claimed: int | None = None
        self._cache: OrderedDict[str, list[Envelope[Event]]] = OrderedDict()
        self._cached_events = 0
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._trust_seconds = trust_cached_seconds
        self._monotonic = monotonic
        # stream id -> when what this process holds of it was last known to
        # be all of it (its own append, or a read that found no next commit)
        self._complete_at: OrderedDict[str, float] = OrderedDict()
        self._pending: list[_PendingCommit] = []
        self._swept_through = 0
        self._group_lock = asyncio.Lock()
        self._written_here: OrderedDict[int, StoredCommit] = OrderedDict()
        # Set on every commit, so an in-process relay publishes at once.
        self.committed = asyncio.Event()
        # The relay of this process tells the checkpoint when it knows it
        # (it holds the lease), so a claim need not read it.
        self.known_checkpoint: Callable[[], int | None] = lambda: None

    async def ensure_indexes(self) -> None:
        await self.commits.create_index("tracking", unique=True, name="tracking_unique")
        await self.commits.create_index("position", unique=True, name="position_unique")

    async def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        context: CommitContext,
        tracking: Tracking | None = None,
    ) -> list[Envelope[Event]]:
        """Commit `events` after `expected_version`; returns them in their envelopes."""
        if expected_version < 0:
            raise ValueError(f"expected_version must be >= 0, got {expected_version}")
        if not events:
            return []
        for event in events:
            if event.aggregate_type != aggregate_type:
                raise TypeError(f"{event.event_type} does not belong to {aggregate_type}")

        now = self._clock()
        envelopes = wrap_commit(
            events, self.producer, aggregate_id, expected_version, context, occurred_at=now
        )
        stream_id = stream_id_of(aggregate_type, aggregate_id)
        commit_id = commit_id_of(stream_id, expected_version + 1)
        tracking_key = tracking.key if tracking else f"commit:{uuid4()}"
        document: Document = {
            "_id": commit_id,
            "stream_id": stream_id,
            "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id,
            "version": expected_version + 1,
            "last_version": expected_version + len(events),
            "position": 0,  # claimed below
            "tracking": tracking_key,
            "correlation_id": context.correlation_id,
            "committed_at": now,
            "events": [envelope.to_document() for envelope in envelopes],
        }
        for _attempt in range(self.MAX_CLAIM_ATTEMPTS):
            outcome = await self._write_in_group(document, envelopes)
            if outcome == "written":
                break
            if outcome == "refused":
                await self._raise_conflict(commit_id, tracking_key, tracking)
            # "tombstoned": the relay gave up on this slow claim: claim again
        else:
            raise RuntimeError(f"no position for {commit_id} after {self.MAX_CLAIM_ATTEMPTS}")
        self._remember(stream_id, expected_version, envelopes)
        self.committed.set()
        for envelope in envelopes:
            EVENTS_APPENDED.labels(self.producer, envelope.event_type).inc()
        return envelopes

    async def load(
        self,
        aggregate_type: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        trust_seconds: float | None = None,
    ) -> list[Envelope[Event]]:
        """Every event of the stream after `after_version`, in version order.
        `trust_seconds` overrides the store's window for this load (0: ask)."""
        stream_id = stream_id_of(aggregate_type, aggregate_id)
        known = list(self._cache.get(stream_id, ()))
        trusted = self._trusted(stream_id, trust_seconds)
        if known and len(known) >= self._versions.get(stream_id, 0) and trusted:
            return known[after_version:]
        asked_at = self._monotonic()
        while True:
            commit = await self.commits.find_one(
                {"_id": commit_id_of(stream_id, len(known) + 1)}, {"events": 1}
            )
            if commit is None:
                break
            for raw in commit["events"]:
                envelope = decode_document(raw)
                if envelope.aggregate_version != len(known) + 1:
                    raise StreamCorrupted(
                        f"{stream_id}: version {envelope.aggregate_version} "
                        f"where {len(known) + 1} belongs"
                    )
                known.append(envelope)
        if known:
            self._cache_stream(stream_id, known)
            self._mark_complete(stream_id, asked_at)
        return known[after_version:]

    async def last_version(
        self, aggregate_type: str, aggregate_id: str, *, trust_seconds: float | None = None
    ) -> int:
        """The stream's current version (0 if empty), without decoding its events:
        the expected version for appending to a long stream."""
        stream_id = stream_id_of(aggregate_type, aggregate_id)
        version = max(len(self._cache.get(stream_id, ())), self._versions.get(stream_id, 0))
        if version and self._trusted(stream_id, trust_seconds):
            return version
        asked_at = self._monotonic()
        while True:
            commit = await self.commits.find_one(
                {"_id": commit_id_of(stream_id, version + 1)}, {"last_version": 1}
            )
            if commit is None:
                break
            version = int(commit["last_version"])
        self._remember_version(stream_id, version)
        if version:
            self._mark_complete(stream_id, asked_at)
        return version

    async def read_commits(self, after_position: int = 0, limit: int = 500) -> list[StoredCommit]:
        """Commits in position order, for rebuilding projections. Stops before a
        position that is claimed but not yet written, so a reader that
        checkpoints the last position it got never skips a commit."""
        # The claims first: a claim made after this read is above every
        # position read below, and a claim gone by then was published.
        state = await self.outbox_state()
        if state.highest <= after_position:
            return []  # nothing new: spare the scan of the commits
        query: Document = {"position": {"$gt": after_position}}
        cursor = self.commits.find(query).sort("position", ASCENDING).limit(limit)
        written = [doc async for doc in cursor]
        positions = {int(doc["position"]) for doc in written}
        in_flight = min(
            (
                claim.position
                for claim in state.claims
                if not claim.void
                and claim.position > after_position
                and claim.position not in positions
            ),
            default=None,
        )
        return [
            self._to_stored(doc, state.checkpoint)
            for doc in written
            if (in_flight is None or int(doc["position"]) < in_flight)
            and doc["stream_id"] != VOID_STREAM
        ]

    # -- the outbox: claims, checkpoint, tombstones (driven by the relay) ------

    async def outbox_state(self) -> OutboxState:
        """The checkpoint and pending claims: one read of the small outbox."""
        checkpoint = 0
        claims: list[OutboxClaim] = []
        async for doc in self.outbox.find({}):
            if doc["_id"] == CHECKPOINT_ID:
                checkpoint = int(doc["position"])
            else:
                claims.append(
                    OutboxClaim(
                        position=int(doc["position"]),
                        commit_id=doc["commit_id"],
                        claimed_at=doc["claimed_at"],
                        void=bool(doc.get("void", False)),
                    )
                )
        pending = sorted((c for c in claims if c.position > checkpoint), key=_by_position)
        return OutboxState(checkpoint, tuple(pending))

    async def check_claim(self, claim: OutboxClaim) -> ClaimCheck:
        """What became of a claim: its commit, or whether none will ever come."""
        if claim.void:
            return ClaimCheck(commit=None, dead=True)
        doc = await self.commits.find_one({"_id": claim.commit_id})
        if doc is None:
            return ClaimCheck(commit=None, dead=False)  # not written (yet)
        if int(doc["position"]) != claim.position:
            # Its writer lost the race for the stream version: the winner's
            # commit has this `_id`, at its own position.
            return ClaimCheck(commit=None, dead=True)
        return ClaimCheck(commit=self._to_stored(doc, claim.position - 1), dead=False)

    async def void(self, claim: OutboxClaim) -> StoredCommit | None:
        """Give up on a claim whose writer is gone. Returns the commit instead
        if it was written after all (then it must be published)."""
        try:
            await self.commits.insert_one(
                {
                    "_id": _tombstone_id(claim.position),
                    "stream_id": VOID_STREAM,
                    "aggregate_type": VOID_STREAM,
                    "aggregate_id": claim.commit_id,
                    "version": 0,
                    "last_version": 0,
                    "position": claim.position,
                    "tracking": _tombstone_id(claim.position),
                    "correlation_id": "",
                    "committed_at": self._clock(),
                    "events": [],
                }
            )
        except DuplicateKeyError:
            check = await self.check_claim(claim)
            if check.commit is not None:
                return check.commit
        await self._void_claim(claim.position)
        return None

    async def advance_checkpoint(self, position: int) -> None:
        """Record that every position up to `position` is published (or void),
        then drop the claims behind it."""
        await self.outbox.update_one(
            {"_id": CHECKPOINT_ID}, {"$set": {"position": position}}, upsert=True
        )
        # Claims behind the checkpoint are ignored by every reader, so they
        # are swept in runs rather than on every pass (one command fewer).
        if (
            position - self._swept_through >= self.SWEEP_CLAIMS_EVERY
            or position < self._swept_through
        ):
            await self.outbox.delete_many({"_id": {"$lte": position_key(position)}})
            self._swept_through = position

    # -- internals ---------------------------------------------------------

    async def _write_in_group(self, document: Document, envelopes: list[Envelope[Event]]) -> str:
        """Write one commit together with whatever else is waiting (group commit)."""
        pending = _PendingCommit(document, envelopes, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        async with self._group_lock:
            if not pending.outcome.done():
                group = self._pending[: self.MAX_GROUP_COMMIT]
                del self._pending[: len(group)]
                # Shielded: a cancelled caller must not cut a write short for
                # the others (nor cancel PyMongo mid-operation).
                await asyncio.shield(self._write_group(group))
        return await pending.outcome

    async def _write_group(self, group: list[_PendingCommit]) -> None:
        try:
            positions = await self._claim_positions(group)
            documents = []
            for pending, position in zip(group, positions, strict=True):
                pending.document["position"] = position
                documents.append(pending.document)
            refused: set[int] = set()
            try:
                await self.commits.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                refused = duplicate_indexes(exc)
            for index, pending in enumerate(group):
                position = positions[index]
                if index not in refused:
                    self._hand_to_relay(pending, position)
                    pending.outcome.set_result("written")
                elif await self.commits.find_one({"_id": _tombstone_id(position)}, {"_id": 1}):
                    pending.outcome.set_result("tombstoned")
                else:
                    await self._void_claim(position)
                    pending.outcome.set_result("refused")
        except BaseException as exc:
            for pending in group:
                if not pending.outcome.done():
                    pending.outcome.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                    )
            if not isinstance(exc, Exception):
                raise

    async def _claim_positions(self, group: Sequence[_PendingCommit]) -> list[int]:
        """Claim a dense run of positions, one per commit of `group`: one
        ordered `insert_many` of claims (what another process took first
        stops it: look again), then one read of the checkpoint."""
        positions: list[int] = []
        for _attempt in range(self.MAX_CLAIM_ATTEMPTS):
            if len(positions) == len(group):
                break
            if self._last_claimed is None:
                self._last_claimed = (await self.outbox_state()).highest
            first = self._last_claimed + 1
            wanted = group[len(positions) :]
            claims = [
                {
                    "_id": position_key(first + offset),
                    "position": first + offset,
                    "commit_id": pending.document["_id"],
                    "claimed_at": pending.document["committed_at"],
                    "void": False,
                }
                for offset, pending in enumerate(wanted)
            ]
            taken = len(claims)
            try:
                await self.outbox.insert_many(claims, ordered=True)
            except BulkWriteError as exc:
                duplicate_indexes(exc)
                taken = int(exc.details.get("nInserted", 0))
            positions.extend(range(first, first + taken))
            if taken < len(claims):
                self._last_claimed = None  # another process took the next one: look again
                continue
            self._last_claimed = first + taken - 1
            if positions[0] <= await self._checkpoint():
                # A stale hint took slots the relay had already passed and
                # freed: give them all back and claim afresh (rare).
                for position in positions:
                    await self.outbox.delete_one({"_id": position_key(position)})
                positions = []
                self._last_claimed = None
        if len(positions) != len(group):
            raise RuntimeError(f"could not claim positions for {len(group)} commits")
        return positions

    async def _checkpoint(self) -> int:
        known = self.known_checkpoint()
        if known is not None:
            return known
        checkpoint = await self.outbox.find_one({"_id": CHECKPOINT_ID})
        return int(checkpoint["position"]) if checkpoint is not None else 0

    def _hand_to_relay(self, pending: _PendingCommit, position: int) -> None:
        document = pending.document
        self._written_here[position] = StoredCommit(
            position=position,
            stream_id=document["stream_id"],
            version=int(document["version"]),
            events=tuple(pending.envelopes),
            committed_at=document["committed_at"],
            published=False,
        )
        while len(self._written_here) > self.MAX_HANDED_TO_RELAY:
            self._written_here.popitem(last=False)

    def written_here(self, position: int) -> StoredCommit | None:
        """The commit this process wrote at `position`, if it still has it."""
        return self._written_here.get(position)

    def forget_written_through(self, position: int) -> None:
        """The relay has passed `position`: drop what was kept for it."""
        while self._written_here:
            first = next(iter(self._written_here))
            if first > position:
                break
            del self._written_here[first]

    async def _void_claim(self, position: int) -> None:
        await self.outbox.update_one({"_id": position_key(position)}, {"$set": {"void": True}})

    async def _raise_conflict(
        self, commit_id: str, tracking_key: str, tracking: Tracking | None
    ) -> None:
        # Which unique index refused it? Ask the data, not the error text,
        # whose format differs between MongoDB and FerretDB.
        existing = await self.commits.find_one({"_id": commit_id}, {"tracking": 1})
        if existing is not None and existing["tracking"] != tracking_key:
            CONCURRENCY_CONFLICTS.labels(self.producer).inc()
            stream_id, _, version = commit_id.rpartition("@")
            # Another process moved the stream on: read it from the database next time.
            self._complete_at.pop(stream_id, None)
            raise ConcurrencyError(f"{stream_id} already has version {int(version)}")
        if tracking is not None:
            raise AlreadyProcessed(tracking_key)
        raise RuntimeError(f"{commit_id} was refused by a unique index for no known reason")

    def _remember(
        self, stream_id: str, expected_version: int, envelopes: Sequence[Envelope[Event]]
    ) -> None:
        cached = self._cache.get(stream_id)
        known = max(len(cached or ()), self._versions.get(stream_id, 0))
        if cached is not None and len(cached) == expected_version:
            self._cache_stream(stream_id, [*cached, *envelopes])
        elif expected_version == 0:
            self._cache_stream(stream_id, list(envelopes))
        self._remember_version(stream_id, envelopes[-1].aggregate_version)
        if known == expected_version:
            # Nothing of the stream was unknown here, and this commit took the
            # next version: what is held is all of it, as of now.
            self._mark_complete(stream_id, self._monotonic())
        else:
            self._complete_at.pop(stream_id, None)

    def _trusted(self, stream_id: str, trust_seconds: float | None) -> bool:
        window = self._trust_seconds if trust_seconds is None else trust_seconds
        if not window:
            return False
        complete_at = self._complete_at.get(stream_id)
        return complete_at is not None and self._monotonic() - complete_at < window

    def _mark_complete(self, stream_id: str, at: float) -> None:
        self._complete_at.pop(stream_id, None)
        self._complete_at[stream_id] = at
        while len(self._complete_at) > self.CACHED_EVENTS:
            self._complete_at.popitem(last=False)

    def _cache_stream(self, stream_id: str, envelopes: list[Envelope[Event]]) -> None:
        previous = self._cache.pop(stream_id, None)
        self._cached_events -= len(previous or ())
        self._cache[stream_id] = envelopes
        self._cached_events += len(envelopes)
        while self._cached_events > self.CACHED_EVENTS and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cached_events -= len(evicted)

    def _remember_version(self, stream_id: str, version: int) -> None:
        self._versions[stream_id] = max(version, self._versions.pop(stream_id, 0))
        while len(self._versions) > self.CACHED_EVENTS:
            self._versions.popitem(last=False)

    @staticmethod
    def _to_stored(doc: dict[str, Any], checkpoint: int) -> StoredCommit:
        return StoredCommit(
            position=int(doc["position"]),
            stream_id=doc["stream_id"],
            version=int(doc["version"]),
            events=tuple(decode_document(raw) for raw in doc["events"]),
            committed_at=doc["committed_at"],
            published=int(doc["position"]) <= checkpoint,
        )


def _tombstone_id(position: int) -> str:
    return f"{VOID_STREAM}@{position_key(position)}"


def _by_position(claim: OutboxClaim) -> int:
    return claim.position
