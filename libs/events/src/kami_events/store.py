"""The event store: one MongoDB collection per service, one document per commit.

A commit holds the events of one command for one stream (DESIGN §5). Its
document is written with a single `insert_one`, so it is atomic on MongoDB 7+
and on FerretDB 1.24 alike, and it is also the outbox row: the relay publishes
commits whose `published` is false, in `position` order.

- Optimistic concurrency: a unique index on `(stream_id, version)`, where
  `version` is the commit's first event version. Two writers that loaded the
  same stream version both try to insert that version; one gets
  `ConcurrencyError`.
- Exactly-once effects for consumers: a commit may carry a tracking key
  (`<consumer>:<event_id>` of the message that caused it) under a unique
  index, so the effect and the "processed" mark are one write. A second
  attempt gets `AlreadyProcessed`. Commits without tracking get a unique
  filler value, because FerretDB has no partial indexes.
- `position` is a dense store-wide sequence: the writer reads the highest
  position and inserts at the next one under a unique index, retrying when
  another commit took it. A later commit of a stream therefore always has a
  higher position (its writer read the earlier commit first), which is what
  the relay's per-stream ordering needs.

Every race here is decided by a unique index on an insert, the one write
that is atomic on FerretDB 1.24 (its conditional updates and `$inc` are not:
see docs/storage.md).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.metrics import CONCURRENCY_CONFLICTS, EVENTS_APPENDED
from kami_events.mongo import Document
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
        self, aggregate_type: str, aggregate_id: str, after_version: int = 0
    ) -> list[Envelope[Event]]: ...

    async def last_version(self, aggregate_type: str, aggregate_id: str) -> int: ...


class MongoEventStore:
    # Concurrent appends to other streams can take the position this writer
    # read; it retries with the next one. Bounded so a broken index cannot spin.
    MAX_POSITION_ATTEMPTS = 100

    def __init__(
        self,
        database: AsyncDatabase[Document],
        *,
        producer: str,
        clock: Clock = utc_now,
        collection: str = "events",
    ) -> None:
        self.producer = producer
        self.commits: AsyncCollection[Document] = database[collection]
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self.commits.create_index(
            [("stream_id", ASCENDING), ("version", ASCENDING)],
            unique=True,
            name="stream_version_unique",
        )
        await self.commits.create_index("tracking", unique=True, name="tracking_unique")
        await self.commits.create_index("position", unique=True, name="position_unique")
        await self.commits.create_index(
            [("published", ASCENDING), ("position", ASCENDING)], name="outbox"
        )

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
        tracking_key = tracking.key if tracking else f"commit:{uuid4()}"
        document: Document = {
            "stream_id": stream_id,
            "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id,
            "version": expected_version + 1,
            "last_version": expected_version + len(events),
            "position": 0,  # assigned below
            "tracking": tracking_key,
            "correlation_id": context.correlation_id,
            "committed_at": now,
            "published": False,
            "events": [envelope.to_document() for envelope in envelopes],
        }
        await self._insert_at_next_position(document, expected_version, tracking_key, tracking)
        for envelope in envelopes:
            EVENTS_APPENDED.labels(self.producer, envelope.event_type).inc()
        return envelopes

    async def load(
        self, aggregate_type: str, aggregate_id: str, after_version: int = 0
    ) -> list[Envelope[Event]]:
        """Every event of the stream after `after_version`, in version order."""
        stream_id = stream_id_of(aggregate_type, aggregate_id)
        cursor = self.commits.find(
            {"stream_id": stream_id, "last_version": {"$gt": after_version}},
            {"events": 1, "version": 1},
        ).sort("version", ASCENDING)
        envelopes: list[Envelope[Event]] = []
        expected = None
        async for commit in cursor:
            for raw in commit["events"]:
                envelope = decode_document(raw)
                if expected is not None and envelope.aggregate_version != expected:
                    raise StreamCorrupted(
                        f"{stream_id}: version {envelope.aggregate_version} follows {expected - 1}"
                    )
                expected = envelope.aggregate_version + 1
                if envelope.aggregate_version > after_version:
                    envelopes.append(envelope)
        if envelopes and envelopes[0].aggregate_version != after_version + 1:
            raise StreamCorrupted(
                f"{stream_id}: starts at version {envelopes[0].aggregate_version}, "
                f"expected {after_version + 1}"
            )
        return envelopes

    async def last_version(self, aggregate_type: str, aggregate_id: str) -> int:
        """The stream's current version (0 if empty), without loading its events:
        the expected version for appending to a long stream."""
        commit = await self.commits.find_one(
            {"stream_id": stream_id_of(aggregate_type, aggregate_id)},
            {"last_version": 1},
            sort=[("version", -1)],
        )
        return int(commit["last_version"]) if commit else 0

    async def read_commits(
        self, after_position: int = 0, limit: int = 500, *, unpublished_only: bool = False
    ) -> list[StoredCommit]:
        """Commits in position order: for the outbox relay and for rebuilding projections."""
        query: Document = {"position": {"$gt": after_position}}
        if unpublished_only:
            query["published"] = False
        cursor = self.commits.find(query).sort("position", ASCENDING).limit(limit)
        return [self._to_stored(doc) async for doc in cursor]

    async def mark_published(self, positions: Sequence[int]) -> None:
        await self.commits.update_many(
            {"position": {"$in": list(positions)}, "published": False},
            {"$set": {"published": True, "published_at": self._clock()}},
        )

    async def _insert_at_next_position(
        self,
        document: Document,
        expected_version: int,
        tracking_key: str,
        tracking: Tracking | None,
    ) -> None:
        stream_id = document["stream_id"]
        for attempt in range(self.MAX_POSITION_ATTEMPTS):
            document["position"] = await self._last_position() + 1
            document.pop("_id", None)  # insert_one set it on the failed attempt
            try:
                await self.commits.insert_one(document)
                return
            except DuplicateKeyError:
                pass
            # Which unique index refused it? Ask the data, not the error text,
            # whose format differs between MongoDB and FerretDB.
            if tracking and await self.commits.find_one({"tracking": tracking_key}, {"_id": 1}):
                raise AlreadyProcessed(tracking_key)
            taken = {"stream_id": stream_id, "version": expected_version + 1}
            if await self.commits.find_one(taken, {"_id": 1}):
                CONCURRENCY_CONFLICTS.labels(self.producer).inc()
                raise ConcurrencyError(f"{stream_id} already has version {expected_version + 1}")
            # Another stream's commit took the position: back off a little, retry.
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))  # noqa: S311
        raise RuntimeError(f"no free position after {self.MAX_POSITION_ATTEMPTS} attempts")

    async def _last_position(self) -> int:
        last = await self.commits.find_one({}, {"position": 1}, sort=[("position", -1)])
        return int(last["position"]) if last else 0

    @staticmethod
    def _to_stored(doc: dict[str, Any]) -> StoredCommit:
        return StoredCommit(
            position=int(doc["position"]),
            stream_id=doc["stream_id"],
            version=int(doc["version"]),
            events=tuple(decode_document(raw) for raw in doc["events"]),
            committed_at=doc["committed_at"],
            published=bool(doc["published"]),
        )
