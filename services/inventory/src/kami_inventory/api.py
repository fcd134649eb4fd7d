"""Inventory's HTTP API: thin routes that validate, dispatch to `handlers` and
shape the answer. Sellers see only their own offers' pools; secrets leave only
through the internal reveal route, to a service credential."""

from __future__ import annotations

import codecs
import re
from datetime import datetime
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from kami_events.catalogue.common import ID_PATTERN, DeliveryMode, Id
from kami_events.catalogue.identity import Role
from kami_inventory import handlers
from kami_inventory.domain.imports import FileFormat, ImportReport, ImportTooLarge, Rejection
from kami_inventory.domain.keys import KeyStatus
from kami_inventory.domain.offers import NotAnAutoDeliveryOffer, NotYourOffer, OfferNotFound
from kami_inventory.domain.stock import StockLevels
from kami_inventory.handlers import (
    EmptyImport,
    ImportIdReused,
    ImportKeys,
    Inventory,
    RequestIdReused,
    ServiceNotAllowed,
    VoidKeys,
)
from kami_web.auth import CallingService, Principal, require_roles
from kami_web.errors import ApiError, ErrorResponse, error_body

router = APIRouter()


def _inventory(request: Request) -> Inventory:
    inventory: Inventory = request.app.state.inventory
    return inventory


Inv = Annotated[Inventory, Depends(_inventory)]
Seller = Annotated[Principal, Depends(require_roles(Role.SELLER))]
OfferId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
OrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="The import (or request) id: a retry with the same id does nothing new.",
    ),
]
_ID = re.compile(ID_PATTERN)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in statuses}


# --- shapes --------------------------------------------------------------------


class StockOut(BaseModel):
    offer_id: str
    available: int
    reserved: int
    sold: int
    blocked: int
    voided: int
    expired: int = Field(description="Keys past their expiry that were never sold.")

    @classmethod
    def of(cls, offer_id: str, stock: StockLevels) -> StockOut:
        return cls(
            offer_id=offer_id,
            available=stock.available,
            reserved=stock.reserved,
            sold=stock.sold,
            blocked=stock.blocked,
            voided=stock.voided,
            expired=stock.expired,
        )


class OfferOut(BaseModel):
    offer_id: str
    product_id: str
    delivery_mode: DeliveryMode | None
    listed: bool
    stock: StockOut


class RejectedLineOut(BaseModel):
    line: int
    reason: Rejection
    message: str


class ImportReportOut(BaseModel):
    import_id: str
    offer_id: str
    format: FileFormat
    imported: int
    duplicates: int = Field(description="Lines whose key is in the file or the pool already.")
    rejected: int = Field(description="Lines rejected for any other reason.")
    earliest_expires_at: datetime | None
    rejected_lines: list[RejectedLineOut]

    @classmethod
    def of(cls, report: ImportReport) -> ImportReportOut:
        return cls(
            import_id=report.import_id,
            offer_id=report.offer_id,
            format=report.file_format,
            imported=report.imported,
            duplicates=report.duplicates,
            rejected=report.rejected,
            earliest_expires_at=report.earliest_expires_at,
            rejected_lines=[
                RejectedLineOut(line=r.line, reason=r.reason, message=r.message)
                for r in report.rejected_lines
            ],
        )


class ImportBody(BaseModel):
    """A key file sent as JSON."""

    import_id: Id | None = None
    format: FileFormat
    content: str = Field(description="The file's text: CSV `key,expires_at` lines, or TXT keys.")
    expires_at: AwareDatetime | None = Field(
        default=None, description="Expiry of keys that carry none (TXT, empty CSV cells)."
    )


class KeyOut(BaseModel):
    key_id: str
    status: KeyStatus
    expires_at: datetime
    order_id: str | None
    reserved_until: datetime | None
    reason: str | None
    hint: str | None = Field(description="At most the key's last four characters.")


class KeyPage(BaseModel):
    keys: list[KeyOut]
    next_after: str | None = Field(description="Pass as `after` for the next page.")


class KeyIdsBody(BaseModel):
    key_ids: list[Id] = Field(min_length=1, max_length=1000)


class KeyStatusOut(BaseModel):
    key_id: str
    status: str


class VoidOut(BaseModel):
    voided: list[str]
    refused: list[KeyStatusOut] = Field(
        description="Keys not voided, with their status (only available keys can be), "
        "or `not_found` for keys not in this pool."
    )


class RevealedKeyOut(BaseModel):
    key_id: str
    secret: str
    status: KeyStatus
    expires_at: datetime


class RevealOut(BaseModel):
    order_id: str
    keys: list[RevealedKeyOut]
    unavailable: list[KeyStatusOut] = Field(
        description="Keys whose secret is withheld: `blocked`, `voided`, `available`, "
        "`expired`, `not_in_order` or `unreadable`."
    )


# --- seller routes -------------------------------------------------------------


@router.get("/offers", tags=["seller"], summary="My offers with their stock")
async def my_offers(seller: Seller, inv: Inv) -> list[OfferOut]:
    return [
        OfferOut(
            offer_id=offer.offer_id,
            product_id=offer.product_id,
            delivery_mode=offer.delivery_mode,
            listed=offer.listed,
            stock=StockOut.of(offer.offer_id, stock),
        )
        for offer, stock in await handlers.offers_of(seller.subject, inv)
    ]


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ImportBody.model_json_schema()},
            "text/csv": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "format": {"type": "string", "enum": ["csv", "txt"]},
                        "import_id": {"type": "string"},
                        "expires_at": {"type": "string", "format": "date-time"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/offers/{offer_id}/imports",
    tags=["seller"],
    status_code=201,
    summary="Import keys (CSV or TXT) into my offer's pool",
    description=(
        "The file comes as JSON (`format`, `content`), as a `text/csv` or `text/plain` "
        "body (format from `?format=` or the media type), or as a multipart upload "
        "(`file`). The import id comes from the `Idempotency-Key` header or the body's "
        "`import_id`. 201 for a new import; 200 with the same report for a repeat."
    ),
    openapi_extra=_IMPORT_BODY,
    responses={
        200: {"description": "A repeat of an earlier import: its report"},
        **_errors(403, 404, 409, 413, 415, 422),
    },
)
async def import_keys(
    offer_id: OfferId,
    request: Request,
    response: Response,
    seller: Seller,
    inv: Inv,
    idempotency_key: IdempotencyKey = None,
    file_format: Annotated[
        FileFormat | None, Query(alias="format", description="For text bodies.")
    ] = None,
    expires_at: Annotated[
        AwareDatetime | None, Query(description="For text bodies: expiry of keys without one.")
    ] = None,
) -> ImportReportOut:
    body = await _read_limited(request, request.app.state.max_import_bytes)
    upload = await _upload(request, body, file_format, expires_at)
    command = ImportKeys(
        seller_id=seller.subject,
        offer_id=offer_id,
        import_id=_import_id(idempotency_key, upload.import_id),
        file_format=upload.format,
        content=upload.content,
        expires_at=upload.expires_at,
    )
    report, replayed = await handlers.import_keys(command, inv)
    if replayed:
        response.status_code = 200
    return ImportReportOut.of(report)


@router.get(
    "/offers/{offer_id}/imports/{import_id}",
    tags=["seller"],
    summary="The report of one of my imports",
    responses=_errors(403, 404),
)
async def get_import(
    offer_id: OfferId,
    import_id: Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)],
    seller: Seller,
    inv: Inv,
) -> ImportReportOut:
    report = await handlers.import_report(seller.subject, offer_id, import_id, inv)
    if report is None:
        raise ApiError(404, "import_not_found", f"No finished import {import_id} in this offer.")
    return ImportReportOut.of(report)


@router.get(
    "/offers/{offer_id}/stock",
    tags=["seller"],
    summary="My offer's keys counted by state",
    responses=_errors(403, 404),
)
async def stock(offer_id: OfferId, seller: Seller, inv: Inv) -> StockOut:
    return StockOut.of(offer_id, await handlers.stock_of(seller.subject, offer_id, inv))


@router.get(
    "/offers/{offer_id}/keys",
    tags=["seller"],
    summary="My offer's keys, a page at a time (never their secrets)",
    responses=_errors(403, 404),
)
async def list_keys(
    offer_id: OfferId,
    seller: Seller,
    inv: Inv,
    status: KeyStatus | None = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> KeyPage:
    listed = await handlers.list_keys(
        seller.subject, offer_id, inv, status=status, after=after, limit=limit
    )
    keys = [
        KeyOut(
            key_id=item.key.key_id,
            status=item.key.status,
            expires_at=item.key.expires_at,
            order_id=item.key.order_id,
            reserved_until=item.key.reserved_until,
            reason=item.key.reason,
            hint=item.hint,
        )
        for item in listed
    ]
    return KeyPage(keys=keys, next_after=keys[-1].key_id if len(keys) == limit else None)


@router.post(
    "/offers/{offer_id}/keys/void",
    tags=["seller"],
    summary="Void available keys of my offer for good",
    description="Only available keys can be voided. With an `Idempotency-Key`, a retry "
    "returns the same outcome.",
    responses=_errors(403, 404, 409, 422),
)
async def void_keys(
    offer_id: OfferId,
    body: KeyIdsBody,
    seller: Seller,
    inv: Inv,
    idempotency_key: IdempotencyKey = None,
) -> VoidOut:
    request_id = _valid_id(idempotency_key) if idempotency_key else str(uuid4())
    outcome = await handlers.void_seller_keys(
        VoidKeys(seller.subject, offer_id, tuple(body.key_ids), request_id), inv
    )
    return VoidOut(
        voided=list(outcome.voided),
        refused=[KeyStatusOut(key_id=k.key_id, status=k.status) for k in outcome.refused],
    )


# --- internal: delivery --------------------------------------------------------


@router.post(
    "/internal/orders/{order_id}/keys/reveal",
    tags=["internal"],
    summary="The secrets of an order's keys, for delivery (service credential)",
    responses=_errors(401, 403, 422),
)
async def reveal(
    order_id: OrderId,
    body: KeyIdsBody,
    service: CallingService,
    inv: Inv,
    response: Response,
) -> RevealOut:
    result = await handlers.reveal_keys(order_id, body.key_ids, service.subject, inv)
    response.headers["Cache-Control"] = "no-store"
    return RevealOut(
        order_id=order_id,
        keys=[
            RevealedKeyOut(
                key_id=k.key_id, secret=k.secret, status=k.status, expires_at=k.expires_at
            )
            for k in result.revealed
        ],
        unavailable=[KeyStatusOut(key_id=k.key_id, status=k.status) for k in result.withheld],
    )


# --- reading an upload ---------------------------------------------------------


class _Upload(BaseModel):
    import_id: str | None
    format: FileFormat
    content: str
    expires_at: datetime | None


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(None, limit)
    return bytes(body)


def _too_large(size: int | None, limit: int) -> ApiError:
    what = f"{size} bytes" if size is not None else f"over {limit} bytes"
    return ApiError(
        413,
        "import_too_large",
        f"The upload is {what}; one import takes at most {limit} bytes. Split the file.",
    )


async def _upload(
    request: Request,
    body: bytes,
    file_format: FileFormat | None,
    expires_at: datetime | None,
) -> _Upload:
    media_type, _, params = request.headers.get("content-type", "").partition(";")
    media_type = media_type.strip().lower()
    if media_type == "application/json":
        try:
            parsed = ImportBody.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            ) from None
        return _Upload(
            import_id=parsed.import_id,
            format=parsed.format,
            content=parsed.content,
            expires_at=parsed.expires_at,
        )
    if media_type in ("text/csv", "text/plain"):
        implied = FileFormat.CSV if media_type == "text/csv" else FileFormat.TXT
        return _Upload(
            import_id=None,
            format=file_format or implied,
            content=_text(body, _charset(params)),
            expires_at=expires_at,
        )
    if media_type == "multipart/form-data":
        return await _multipart(request, body)
    raise ApiError(
        415,
        "unsupported_media_type",
        "Send the file as application/json, text/csv, text/plain or multipart/form-data.",
    )


async def _multipart(request: Request, body: bytes) -> _Upload:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "file_required", "Attach the key file as the form field `file`.")
    named = (upload.filename or "").lower()
    chosen = form.get("format")
    if isinstance(chosen, str) and chosen:
        try:
            file_format = FileFormat(chosen.lower())
        except ValueError:
            raise ApiError(422, "invalid_format", "format must be csv or txt.") from None
    elif named.endswith(".csv"):
        file_format = FileFormat.CSV
    elif named.endswith(".txt"):
        file_format = FileFormat.TXT
    else:
        raise ApiError(
            422, "format_required", "Name the file *.csv or *.txt, or send the field `format`."
        )
    expiry = form.get("expires_at")
    expires_at = None
    if isinstance(expiry, str) and expiry:
        try:
            expires_at = datetime.fromisoformat(expiry)
        except ValueError:
            expires_at = None
        if expires_at is None or expires_at.tzinfo is None:
            raise ApiError(
                422, "invalid_expires_at", "expires_at must be a date-time with a time zone."
            )
    import_id = form.get("import_id")
    return _Upload(
        import_id=import_id if isinstance(import_id, str) and import_id else None,
        format=file_format,
        content=_text(await upload.read(), "utf-8"),
        expires_at=expires_at,
    )


def _charset(params: str) -> str:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _text(raw: bytes, charset: str) -> str:
    try:
        codecs.lookup(charset)
    except LookupError:
        raise ApiError(422, "bad_encoding", f"Unknown charset {charset!r}.") from None
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        raise ApiError(
            422,
            "bad_encoding",
            f"The file is not valid {charset} text (UTF-8 unless a charset is given).",
        ) from None


def _valid_id(value: str) -> str:
    if len(value) > 64 or not _ID.fullmatch(value):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            "The id must be 1-64 characters: letters, digits and _.:- (not first).",
        )
    return value


def _import_id(header: str | None, body: str | None) -> str:
    if header and body and header != body:
        raise ApiError(
            422, "import_id_mismatch", "The Idempotency-Key header and import_id differ."
        )
    chosen = header or body
    if not chosen:
        raise ApiError(
            422,
            "import_id_required",
            "Name the import with an Idempotency-Key header (or import_id), so a retry "
            "cannot import the file twice.",
        )
    return _valid_id(chosen)


# --- domain refusals as 4xx -------------------------------------------------------

_REFUSALS: dict[type[Exception], tuple[int, str, str]] = {
    OfferNotFound: (404, "offer_not_found", "No such offer."),
    NotYourOffer: (403, "not_your_offer", "The offer belongs to another seller."),
    NotAnAutoDeliveryOffer: (
        409,
        "manual_delivery_offer",
        "The offer is delivered manually by the seller; it holds no keys.",
    ),
    ImportIdReused: (
        409,
        "import_id_reused",
        "This import id was used for a different file; use a new id for a new file.",
    ),
    EmptyImport: (422, "empty_import", "The file has no lines."),
    RequestIdReused: (
        409,
        "idempotency_key_reused",
        "This Idempotency-Key was used for different keys.",
    ),
    ServiceNotAllowed: (403, "service_not_allowed", "This service may not reveal keys."),
}


def install_error_mapping(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ImportTooLarge):
            return JSONResponse(error_body("import_too_large", f"{exc}."), status_code=413)
        status, code, message = _REFUSALS[type(exc)]
        return JSONResponse(error_body(code, message), status_code=status)

    app.add_exception_handler(ImportTooLarge, refused)
    for exception in _REFUSALS:
        app.add_exception_handler(exception, refused)
