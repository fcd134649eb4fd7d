"""Event-sourced aggregates: command methods check invariants and `_trigger`
events; `apply` changes state from an event. The same `apply` rebuilds an
aggregate from its stream, so there is one place where state changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Self

from kami_events.event import Event


class Aggregate:
    """Base of every aggregate. Pure: no I/O, no clock (pass times in commands)."""

    aggregate_type: ClassVar[str]

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        # Events committed so far: the expected version of the next append.
        self.version = 0
        self._pending: list[Event] = []

    @classmethod
    def rehydrate(cls, aggregate_id: str, history: Iterable[Event]) -> Self:
        aggregate = cls(aggregate_id)
        for event in history:
            aggregate.apply(event)
            aggregate.version += 1
        return aggregate

    def apply(self, event: Event) -> None:
        """Mutate state from one event. Subclasses override; never raise for a past event."""
        raise TypeError(f"{type(self).__name__} cannot apply {event.event_type}")

    def _trigger(self, event: Event) -> None:
        if event.aggregate_type != self.aggregate_type:
            raise TypeError(
                f"{event.event_type} belongs to {event.aggregate_type}, "
                f"not to {self.aggregate_type}"
            )
        self.apply(event)
        self._pending.append(event)

    @property
    def pending_events(self) -> tuple[Event, ...]:
        return tuple(self._pending)

    def mark_committed(self) -> None:
        """After a successful append: the pending events are now history."""
        self.version += len(self._pending)
        self._pending.clear()
