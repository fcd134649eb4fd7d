"""Load an aggregate from its stream and save what it decided: the
`load, decide, save` of every command handler."""

from __future__ import annotations

from typing import Generic, TypeVar

from kami_events.aggregate import Aggregate
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.store import CommitContext, EventStore, Tracking

A = TypeVar("A", bound=Aggregate)


class AggregateRepository(Generic[A]):
    def __init__(self, store: EventStore, aggregate_class: type[A]) -> None:
        self._store = store
        self._class = aggregate_class

    async def get(self, aggregate_id: str) -> A | None:
        """The aggregate rebuilt from its events, or None if it has none."""
        envelopes = await self._store.load(self._class.aggregate_type, aggregate_id)
        if not envelopes:
            return None
        return self._class.rehydrate(aggregate_id, (e.payload for e in envelopes))

    async def save(
        self, aggregate: A, context: CommitContext, tracking: Tracking | None = None
    ) -> list[Envelope[Event]]:
        """Append the aggregate's pending events at the version it was loaded at.

        Raises `ConcurrencyError` if another writer got there first, or
        `AlreadyProcessed` if `tracking`'s message already produced a commit.
        """
        envelopes = await self._store.append(
            self._class.aggregate_type,
            aggregate.id,
            aggregate.version,
            aggregate.pending_events,
            context,
            tracking,
        )
        aggregate.mark_committed()
        return envelopes
