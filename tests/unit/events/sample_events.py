"""Events that exist only for the shared machinery's own tests (aggregate
types under `test.`, which the catalogue checks leave out)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from kami_events.aggregate import Aggregate
from kami_events.event import Event


class CounterEvent(Event):
    abstract = True
    aggregate_type: ClassVar[str] = "test.counter"


class CounterOpened(CounterEvent):
    name: str


class CounterIncremented(CounterEvent):
    by: int = Field(ge=1)


class Counter(Aggregate):
    """A tiny aggregate: opened once, then incremented; never negative steps."""

    aggregate_type: ClassVar[str] = "test.counter"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.name: str | None = None
        self.total = 0

    @classmethod
    def open(cls, aggregate_id: str, name: str) -> Counter:
        counter = cls(aggregate_id)
        counter._trigger(CounterOpened(name=name))
        return counter

    def increment(self, by: int) -> None:
        if self.name is None:
            raise ValueError("counter is not open")
        self._trigger(CounterIncremented(by=by))

    def apply(self, event: Event) -> None:
        match event:
            case CounterOpened(name=name):
                self.name = name
            case CounterIncremented(by=by):
                self.total += by
            case _:
                super().apply(event)
