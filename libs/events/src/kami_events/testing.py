"""Fakes for unit tests: the same behaviour as the Mongo adapters, in memory.

Integration and end-to-end tests use the real servers instead (DESIGN §8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kami_events.clock import Clock, ManualClock, utc_now
from kami_events.consumer import IncomingMessage
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.store import (
    AlreadyProcessed,
    CommitContext,
    ConcurrencyError,
    Tracking,
    stream_id_of,
    wrap_commit,
)

__all__ = [
    "InMemoryEventStore",
    "InMemoryInbox",
    "ManualClock",
    "RecordingDeadLetters",
]


class InMemoryEventStore:
    """Optimistic concurrency and tracking exactly as `MongoEventStore` does them."""

    def __init__(self, *, producer: str = "test", clock: Clock = utc_now) -> None:
        self.producer = producer
        self._clock = clock
        self._streams: dict[str, list[Envelope[Event]]] = {}
        self._tracking: set[str] = set()
        self.committed: list[Envelope[Event]] = []

    async def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        context: CommitContext,
        tracking: Tracking | None = None,
    ) -> list[Envelope[Event]]:
        if not events:
            return []
        if tracking is not None and tracking.key in self._tracking:
            raise AlreadyProcessed(tracking.key)
        stream = self._streams.setdefault(stream_id_of(aggregate_type, aggregate_id), [])
        if len(stream) != expected_version:
            raise ConcurrencyError(
                f"{aggregate_type}/{aggregate_id} is at {len(stream)}, not {expected_version}"
            )
        envelopes = wrap_commit(
            events,
            self.producer,
            aggregate_id,
            expected_version,
            context,
            occurred_at=self._clock(),
        )
        stream.extend(envelopes)
        self.committed.extend(envelopes)
        if tracking is not None:
            self._tracking.add(tracking.key)
        return envelopes

    async def load(
        self,
        aggregate_type: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        trust_seconds: float | None = None,
    ) -> list[Envelope[Event]]:
        stream = self._streams.get(stream_id_of(aggregate_type, aggregate_id), [])
        return stream[after_version:]

    async def last_version(
        self, aggregate_type: str, aggregate_id: str, *, trust_seconds: float | None = None
    ) -> int:
        return len(self._streams.get(stream_id_of(aggregate_type, aggregate_id), []))


class InMemoryInbox:
    """The inbox's contract in memory: claims, finished batches, outcomes."""

    def __init__(self) -> None:
        self.claims: dict[str, str] = {}  # key -> the batch that claimed it
        self.outcomes: dict[str, str] = {}
        self.finished_batches: set[str] = set()

    @property
    def records(self) -> dict[str, str]:
        """Each finished message's outcome (`handled` unless recorded otherwise)."""
        return {
            key: self.outcomes.get(key, "handled")
            for key, batch in self.claims.items()
            if batch in self.finished_batches or key in self.outcomes
        }

    async def claim(self, keys: Sequence[str], batch: str) -> set[str]:
        finished = {key for key in keys if key in self.records}
        for key in keys:
            if key not in finished:
                self.claims[key] = batch
        return finished

    async def finish(self, batch: str, outcomes: Mapping[str, str]) -> None:
        self.outcomes.update(outcomes)
        self.finished_batches.add(batch)


class RecordingDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[IncomingMessage, dict[str, str]]] = []

    async def send(self, message: IncomingMessage, headers: dict[str, str]) -> None:
        self.sent.append((message, headers))
