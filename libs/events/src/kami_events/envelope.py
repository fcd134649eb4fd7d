"""The envelope every Kami message travels in (DESIGN §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any, Generic, TypeVar, cast
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from kami_events.event import Event

E = TypeVar("E", bound=Event)


class Envelope(BaseModel, Generic[E]):
    """One event with the metadata that routes, orders, dedupes and traces it.

    `correlation_id` ties together everything in one purchase (the order id);
    `causation_id` is the `event_id` of the event that caused this one, or the
    request id of the HTTP command.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str = Field(min_length=1)
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1)
    aggregate_type: str = Field(min_length=1)
    aggregate_id: str = Field(min_length=1)
    aggregate_version: int = Field(ge=1)
    correlation_id: str = Field(min_length=1)
    causation_id: str | None = None
    traceparent: str | None = None
    payload: E

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @classmethod
    def wrap(
        cls,
        event: E,
        *,
        producer: str,
        aggregate_id: str,
        aggregate_version: int,
        correlation_id: str,
        occurred_at: datetime,
        causation_id: str | None = None,
        traceparent: str | None = None,
        event_id: UUID | None = None,
    ) -> Envelope[E]:
        # Parametrised by the event's own class so it serialises every field.
        return envelope_of(type(event))(
            event_id=event_id or uuid4(),
            event_type=event.event_type,
            schema_version=event.schema_version,
            occurred_at=occurred_at,
            producer=producer,
            aggregate_type=event.aggregate_type,
            aggregate_id=aggregate_id,
            aggregate_version=aggregate_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
            traceparent=traceparent,
            payload=event,
        )

    @property
    def kafka_key(self) -> bytes:
        return self.aggregate_id.encode()

    def kafka_headers(self) -> dict[str, str]:
        """Headers repeat the type and ids, so routers and tools need not parse the body."""
        headers = {
            "content-type": "application/json",
            "event_type": self.event_type,
            "schema_version": str(self.schema_version),
            "event_id": str(self.event_id),
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "correlation_id": self.correlation_id,
        }
        if self.causation_id:
            headers["causation_id"] = self.causation_id
        if self.traceparent:
            headers["traceparent"] = self.traceparent
        return headers

    def to_document(self) -> dict[str, Any]:
        """A JSON-compatible dict: what is stored in the event store and sent on the wire."""
        return self.model_dump(mode="json")


@cache
def envelope_of(model: type[E]) -> type[Envelope[E]]:
    """`Envelope[model]`, made once per event class.

    pydantic keeps its parametrised classes only weakly: without this, a
    garbage collection drops them and the next message builds its class anew
    (a model class's construction, about a millisecond, per message).
    """
    return cast(Any, Envelope)[model]  # type: ignore[no-any-return]
