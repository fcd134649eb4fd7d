"""Delivery's HTTP API: thin routes that validate, dispatch to `handlers`, and shape answers.

Buyers (any signed-in user, for their own keys): the key vault, its audited
reveal and export, arrival confirmation and site messages. Sellers: their
open manual deliveries and the submission of keys. Another user's key,
order or delivery is a 404, never a 403: its existence is not disclosed.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kami_delivery import handlers
from kami_delivery.adapters.ports import VaultEntry
from kami_delivery.domain.delivery import delivery_id_for
from kami_delivery.domain.keys import MAX_SECRET_LENGTH, CardSecret
from kami_delivery.domain.manual import ManualTask
from kami_delivery.domain.rejections import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    Rejection,
)
from kami_delivery.handlers import DeliveryDeps
from kami_events.catalogue.common import ID_PATTERN, DeliveryMode
from kami_events.catalogue.identity import Role
from kami_web.auth import CallingService, CurrentUser, Principal, require_roles
from kami_web.errors import ErrorResponse, error_body

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
}


def _deps(request: Request) -> DeliveryDeps:
    deps: DeliveryDeps = request.app.state.delivery
    return deps


Deps = Annotated[DeliveryDeps, Depends(_deps)]
Seller = Annotated[Principal, Depends(require_roles(Role.SELLER))]
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given[:64] if given and given.isascii() else str(uuid4())


def _client(request: Request) -> str | None:
    host = request.client.host if request.client else None
    agent = request.headers.get("user-agent", "")[:120]
    return f"{host or '?'} {agent}".strip() or None


# -- the buyer's vault -----------------------------------------------------------------


class VaultKey(BaseModel):
    key_id: str
    order_id: str
    offer_id: str
    product_id: str
    mode: DeliveryMode
    masked: str = Field(
        description="The key with all but (for long keys) its last 4 characters hidden."
    )
    delivered_at: datetime
    expires_at: datetime | None


class VaultPage(BaseModel):
    keys: list[VaultKey]


class RevealedSecret(BaseModel):
    key_id: str
    order_id: str
    secret: str
    expires_at: datetime | None


def _vault_key(entry: VaultEntry) -> VaultKey:
    return VaultKey(
        key_id=entry.key_id,
        order_id=entry.order_id,
        offer_id=entry.offer_id,
        product_id=entry.product_id,
        mode=entry.mode,
        masked=entry.masked,
        delivered_at=entry.stored_at,
        expires_at=entry.expires_at,
    )


@router.get("/vault", tags=["vault"], summary="My delivered keys, masked", responses=ERRORS)
async def my_keys(
    user: CurrentUser,
    deps: Deps,
    order_id: Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN)] = None,
    limit: Limit = 100,
) -> VaultPage:
    entries = await handlers.list_vault(deps, user.subject, order_id=order_id, limit=limit)
    return VaultPage(keys=[_vault_key(e) for e in entries])


@router.post(
    "/vault/{key_id}/reveal",
    tags=["vault"],
    summary="Reveal one of my keys in plaintext (audited)",
    responses={**ERRORS, 410: {"model": ErrorResponse}},
)
async def reveal(
    key_id: IdPath, user: CurrentUser, deps: Deps, request: Request, response: Response
) -> RevealedSecret:
    entry, secret = await handlers.reveal_key(deps, user.subject, key_id, client=_client(request))
    response.headers.update(NO_STORE)
    return RevealedSecret(
        key_id=entry.key_id,
        order_id=entry.order_id,
        secret=secret.reveal(),
        expires_at=entry.expires_at,
    )


class ExportFormat(StrEnum):
    CSV = "csv"
    TXT = "txt"


@router.get(
    "/vault/export",
    tags=["vault"],
    summary="Export my keys in plaintext as CSV or TXT (audited)",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"text/csv": {}, "text/plain": {}}}},
)
async def export(
    user: CurrentUser,
    deps: Deps,
    request: Request,
    export_format: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.CSV,
    order_id: Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN)] = None,
    limit: Limit = 1000,
) -> Response:
    rows = await handlers.export_keys(
        deps,
        user.subject,
        export_format=export_format.value,
        order_id=order_id,
        limit=limit,
        client=_client(request),
    )
    if export_format is ExportFormat.CSV:
        content, media_type = _csv(rows), "text/csv; charset=utf-8"
    else:
        content, media_type = (
            "".join(f"{s.reveal()}\n" for _, s in rows),
            "text/plain; charset=utf-8",
        )
    name = f"kami-keys{'-' + order_id if order_id else ''}.{export_format.value}"
    return Response(
        content,
        media_type=media_type,
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )


def _csv(rows: list[tuple[VaultEntry, CardSecret]]) -> str:
    out = io.StringIO()
    # Every field quoted; secrets are written exactly as delivered (never altered
    # to defuse spreadsheet formulas: a changed key would not redeem).
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(
        ["key_id", "order_id", "product_id", "offer_id", "delivered_at", "expires_at", "secret"]
    )
    for entry, secret in rows:
        writer.writerow(
            [
                entry.key_id,
                entry.order_id,
                entry.product_id,
                entry.offer_id,
                entry.stored_at.isoformat(),
                entry.expires_at.isoformat() if entry.expires_at else "",
                secret.reveal(),
            ]
        )
    return out.getvalue()


# -- arrival ------------------------------------------------------------------------------


class Arrival(BaseModel):
    order_id: str
    delivery_id: str
    already_confirmed: bool


@router.post(
    "/orders/{order_id}/arrival",
    tags=["orders"],
    summary="Confirm my keys arrived and work (completes the order)",
    responses=ERRORS,
)
async def confirm_arrival(
    order_id: IdPath, user: CurrentUser, deps: Deps, request: Request
) -> Arrival:
    confirmed = await handlers.confirm_arrival(deps, user.subject, order_id, _request_id(request))
    return Arrival(
        order_id=order_id, delivery_id=delivery_id_for(order_id), already_confirmed=not confirmed
    )


# -- site messages -------------------------------------------------------------------------


class Message(BaseModel):
    message_id: str
    kind: str
    title: str
    body: str
    order_id: str
    created_at: datetime
    read_at: datetime | None


class Messages(BaseModel):
    messages: list[Message]


@router.get(
    "/messages", tags=["messages"], summary="My site messages, newest first", responses=ERRORS
)
async def my_messages(
    user: CurrentUser, deps: Deps, unread: bool = False, limit: Limit = 50
) -> Messages:
    found = await deps.messages.list_for(user.subject, unread_only=unread, limit=limit)
    return Messages(
        messages=[
            Message(
                message_id=m.message_id,
                kind=m.kind.value,
                title=m.title,
                body=m.body,
                order_id=m.order_id,
                created_at=m.created_at,
                read_at=m.read_at,
            )
            for m in found
        ]
    )


@router.post(
    "/messages/{message_id}/read",
    tags=["messages"],
    summary="Mark one of my messages read",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
)
async def read_message(
    message_id: Annotated[str, Path(min_length=1, max_length=200)], user: CurrentUser, deps: Deps
) -> Response:
    if not await deps.messages.mark_read(user.subject, message_id, deps.clock()):
        raise NotFound("message_not_found", "No message with this id is yours.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- the seller's manual deliveries -------------------------------------------------------------


class ManualDelivery(BaseModel):
    delivery_id: str
    order_id: str
    offer_id: str
    product_id: str
    buyer_id: str
    quantity: int
    buyer_fields: dict[str, str]
    paid_at: datetime
    deadline: datetime


class ManualDeliveries(BaseModel):
    deliveries: list[ManualDelivery]


class KeySubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[Annotated[str, Field(min_length=1, max_length=MAX_SECRET_LENGTH)]] = Field(
        min_length=1, max_length=1000, repr=False
    )


class Submitted(BaseModel):
    delivery_id: str
    order_id: str
    key_ids: list[str]


def _manual(task: ManualTask) -> ManualDelivery:
    return ManualDelivery(
        delivery_id=task.delivery_id,
        order_id=task.order.order_id,
        offer_id=task.order.offer_id,
        product_id=task.order.product_id,
        buyer_id=task.order.buyer_id,
        quantity=task.order.quantity,
        buyer_fields=dict(task.order.buyer_fields),
        paid_at=task.paid_at,
        deadline=task.deadline,
    )


@router.get(
    "/seller/deliveries",
    tags=["seller"],
    summary="My manual deliveries awaiting keys, soonest deadline first",
    responses=ERRORS,
)
async def seller_deliveries(seller: Seller, deps: Deps, limit: Limit = 100) -> ManualDeliveries:
    tasks = await handlers.open_manual_deliveries(deps, seller.subject, limit)
    return ManualDeliveries(deliveries=[_manual(t) for t in tasks])


@router.post(
    "/seller/deliveries/{delivery_id}/keys",
    tags=["seller"],
    summary="Deliver a manual order's keys to its buyer",
    status_code=status.HTTP_201_CREATED,
    responses={**ERRORS, 422: {"model": ErrorResponse}},
)
async def submit_keys(
    delivery_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: KeySubmission,
    seller: Seller,
    deps: Deps,
    request: Request,
) -> Submitted:
    order_id, key_ids = await handlers.submit_manual_keys(
        deps, seller.subject, delivery_id, body.keys, _request_id(request)
    )
    return Submitted(delivery_id=delivery_id, order_id=order_id, key_ids=key_ids)


# -- key verification (internal, for after-sales) ---------------------------------------------


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_ids: list[Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]] = Field(
        min_length=1, max_length=1000
    )


class KeyVerdict(BaseModel):
    key_id: str
    verdict: str = Field(description="valid, already_used, invalid or unknown")


class Verdicts(BaseModel):
    order_id: str
    verdicts: list[KeyVerdict]


@router.post(
    "/internal/orders/{order_id}/keys/verify",
    tags=["internal"],
    summary="Ask each key's issuer whether the order's delivered keys still work (service only)",
    responses=ERRORS,
)
async def verify_keys(
    order_id: IdPath, body: VerifyRequest, service: CallingService, deps: Deps
) -> Verdicts:
    found = await handlers.verify_keys(deps, service.subject, order_id, body.key_ids)
    return Verdicts(
        order_id=order_id,
        verdicts=[KeyVerdict(key_id=key_id, verdict=v.value) for key_id, v in found],
    )


class FetchKeysRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)


class FetchedKey(BaseModel):
    key_id: str
    secret: str
    expires_at: datetime | None


class FetchedKeys(BaseModel):
    order_id: str
    keys: list[FetchedKey]


@router.post(
    "/internal/orders/{order_id}/keys/reveal",
    tags=["internal"],
    summary="An order's plaintext keys, for the reseller service acting for their owner",
    description="Only the reseller service may call it (for the orders its resellers "
    "placed); every call is audited as an export by the owner.",
    responses=ERRORS,
)
async def fetch_keys(
    order_id: IdPath,
    body: FetchKeysRequest,
    service: CallingService,
    deps: Deps,
    response: Response,
) -> FetchedKeys:
    rows = await handlers.fetch_order_keys(deps, service.subject, body.owner_id, order_id)
    response.headers.update(NO_STORE)
    return FetchedKeys(
        order_id=order_id,
        keys=[
            FetchedKey(key_id=e.key_id, secret=s.reveal(), expires_at=e.expires_at) for e, s in rows
        ],
    )


class RedactRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, Field(max_length=2000)]] = Field(
        min_length=1, max_length=20, repr=False, description="Free text a buyer or agent typed."
    )


class Redacted(BaseModel):
    order_id: str
    texts: list[str] = Field(description="The texts, each key of the order as `[card key <id>]`.")
    redacted: int = Field(description="How many keys were found and replaced.")


@router.post(
    "/internal/orders/{order_id}/keys/redact",
    tags=["internal"],
    summary="Replace the order's keys in free text by their ids (service only)",
    description="For after-sales, before it stores a ticket's messages: a buyer may paste a "
    "key into a complaint. Found whatever its case, with spaces or dashes added or left "
    "out. The keys never leave delivery.",
    responses=ERRORS,
)
async def redact_keys(
    order_id: IdPath, body: RedactRequest, service: CallingService, deps: Deps
) -> Redacted:
    texts, found = await handlers.redact_keys(deps, service.subject, order_id, body.texts)
    return Redacted(order_id=order_id, texts=texts, redacted=found)


# -- errors ----------------------------------------------------------------------------------


_STATUS: dict[type[Rejection], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    Gone: status.HTTP_410_GONE,
    InvalidInput: 422,
}


def install_rejection_handler(app: FastAPI) -> None:
    @app.exception_handler(Rejection)
    async def rejected(request: Request, exc: Rejection) -> JSONResponse:
        code = next(
            (s for kind, s in _STATUS.items() if isinstance(exc, kind)), status.HTTP_400_BAD_REQUEST
        )
        return JSONResponse(error_body(exc.code, exc.message), status_code=code)
