"""Every service's operator routes for its own dead-letter topic: what its
consumer gave up on, and sending it back (`kami_events.dead_letters`, the code
`kami dlq list|redrive` runs too, with the same redrive log in
`<prefix>_operations`, so a letter redriven here is not sent again by the CLI
and the other way round).

A service lists and redrives only its own topic and clears only its own
inbox's `dead_lettered` mark; the operator console asks each service in turn.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from kami_events import dead_letters
from kami_events.catalogue.identity import Role
from kami_events.runtime import ServiceRuntime
from kami_events.topics import dead_letter_topic
from kami_web.auth import Principal, require_roles
from kami_web.errors import ApiError, ErrorResponse

Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 503)
}


class DeadLetterView(BaseModel):
    service: str
    id: str = Field(description="`PARTITION:OFFSET` on the dead-letter topic")
    event_type: str
    event_id: str | None
    error: str
    source_topic: str | None
    source_partition: str | None
    source_offset: str | None
    failed_at: str
    attempts: str | None
    redriven_at: str | None = Field(description="When it was sent back; null: not yet")


class DeadLetterList(BaseModel):
    service: str
    topic: str
    dead_letters: list[DeadLetterView]


class RedriveRequest(BaseModel):
    ids: list[Annotated[str, Field(pattern=r"^\d{1,9}(:\d{1,18})?$")]] = Field(
        default_factory=list, max_length=500, description="`PARTITION:OFFSET` (or `OFFSET`)"
    )
    all: bool = Field(default=False, description="Every dead letter not redriven yet")

    @model_validator(mode="after")
    def _one_of(self) -> RedriveRequest:
        if bool(self.ids) == self.all:
            raise ValueError("say which: `ids`, or `all: true`")
        return self


class RedriveOutcomeView(BaseModel):
    id: str
    event_type: str
    source_topic: str | None
    sent: bool
    why: str = Field(description="`sent`, or why it was not")


class RedriveReport(BaseModel):
    service: str
    sent: int
    skipped: int
    outcomes: list[RedriveOutcomeView]


def dead_letter_router(runtime: ServiceRuntime) -> APIRouter:
    service = runtime.settings.service_name
    bootstrap = runtime.settings.kafka_bootstrap
    router = APIRouter(tags=["operations"])

    def redrive_log() -> dead_letters.RedriveLog:
        database = dead_letters.operations_database(runtime.settings.database_name, service)
        return dead_letters.RedriveLog(runtime.mongo[database][dead_letters.REDRIVES_COLLECTION])

    async def read() -> list[dead_letters.DeadLetter]:
        try:
            return await dead_letters.read_dead_letters(bootstrap, service)
        except dead_letters.KafkaUnreachable as exc:
            raise ApiError(503, "kafka_unreachable", exc.message) from None

    @router.get(
        "/dead-letters",
        summary="What this service's consumer dead-lettered, oldest first (operators)",
        responses=_ERRORS,
    )
    async def list_dead_letters(operator: Operator) -> DeadLetterList:
        letters = await read()
        sent = await redrive_log().sent(letters)
        return DeadLetterList(
            service=service,
            topic=dead_letter_topic(service),
            dead_letters=[
                DeadLetterView(**dead_letters.describe(letter, sent.get(letter.record_id)))
                for letter in letters
            ],
        )

    @router.post(
        "/dead-letters/redrive",
        summary="Send dead letters back to their source topic, each once (operators)",
        responses=_ERRORS,
    )
    async def redrive(body: RedriveRequest, operator: Operator) -> RedriveReport:
        letters = await read()
        try:
            chosen = letters if body.all else dead_letters.select(letters, body.ids)
        except dead_letters.UnknownDeadLetter as exc:
            raise ApiError(404, "dead_letter_not_found", exc.message) from None
        # The topic holds only what this service's consumer gave up on: its inbox.
        inboxes = dead_letters.Inboxes(lambda consumer: runtime.db["inbox"])
        try:
            outcomes = await dead_letters.redrive(
                bootstrap, chosen, redrive_log(), inboxes, client_id=f"kami-{service}-redrive"
            )
        except dead_letters.KafkaUnreachable as exc:
            raise ApiError(503, "kafka_unreachable", exc.message) from None
        sent = sum(outcome.sent for outcome in outcomes)
        return RedriveReport(
            service=service,
            sent=sent,
            skipped=len(outcomes) - sent,
            outcomes=[
                RedriveOutcomeView(
                    id=outcome.letter.id,
                    event_type=outcome.letter.event_type,
                    source_topic=outcome.letter.source_topic,
                    sent=outcome.sent,
                    why=outcome.why,
                )
                for outcome in outcomes
            ],
        )

    return router
