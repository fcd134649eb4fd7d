"""The base of every event payload, and the registry that maps a wire
`(event_type, schema_version)` back to its model.

An event class is frozen, rejects unknown fields, and has three class
variables: `aggregate_type` (which also names its topic), `event_type`
(defaults to the class name) and `schema_version` (defaults to 1). A base
class meant only to be subclassed sets `abstract = True` in its body. A change
that would break an old consumer is a new class with the same `event_type`
and the next `schema_version`, e.g. `class OrderPlacedV2(Event)`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from kami_events.topics import topic_for


class UnknownEventType(LookupError):
    """No model is registered for an `(event_type, schema_version)` pair."""


class Event(BaseModel):
    """A fact that happened to one aggregate. Subclass it to declare an event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aggregate_type: ClassVar[str]
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    # A base shared by several events (e.g. one per aggregate) sets this in
    # its own body so that it is not registered as an event itself.
    abstract: ClassVar[bool] = True

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__
        if not hasattr(cls, "aggregate_type"):
            raise TypeError(f"event {cls.__name__} declares no aggregate_type")
        if cls.schema_version < 1:
            raise TypeError(f"{cls.__name__}.schema_version must be >= 1")
        topic_for(cls.aggregate_type)  # validates the aggregate type's shape
        EVENT_REGISTRY.register(cls)

    @classmethod
    def topic(cls) -> str:
        return topic_for(cls.aggregate_type)


class EventRegistry:
    """Every declared event model, by its wire identity."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], type[Event]] = {}

    def register(self, cls: type[Event]) -> None:
        key = (cls.event_type, cls.schema_version)
        existing = self._by_key.get(key)
        if existing is not None and existing is not cls:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} redeclares {key[0]} v{key[1]}, "
                f"already declared by {existing.__module__}.{existing.__qualname__}"
            )
        self._by_key[key] = cls

    def lookup(self, event_type: str, schema_version: int) -> type[Event]:
        try:
            return self._by_key[(event_type, schema_version)]
        except KeyError:
            raise UnknownEventType(
                f"unknown event {event_type!r} schema version {schema_version}"
            ) from None

    def all(self) -> list[type[Event]]:
        return sorted(self._by_key.values(), key=lambda c: (c.event_type, c.schema_version))


EVENT_REGISTRY = EventRegistry()
