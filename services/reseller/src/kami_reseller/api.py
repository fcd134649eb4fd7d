"""The reseller service's HTTP API: thin routes that authenticate, validate,
dispatch to `handlers` and shape the answer.

Operators (a user token with the `operator` role):

- `POST /resellers`: approve an identity user as a reseller;
- `GET /resellers`: the approved resellers;
- `POST /resellers/{id}/credentials`: a new key id and secret, the secret shown once;
- `DELETE /resellers/{id}/credentials/{key_id}`: revoke a credential.

Resellers (every `/v1` request HMAC-signed, see docs/reseller.md; a refused
signature is a 401 whose `code` says why):

- `GET /v1/me`; `GET /v1/catalogue`: the resellable offers at the reseller's prices;
- `PUT /v1/markups/default`, `PUT /v1/markups/{offer_id}`: its markups;
- `PUT /v1/webhook`: where its webhooks go;
- `POST /v1/orders` (idempotent by `client_order_id`), `GET /v1/orders`,
  `GET /v1/orders/{id}`, `GET /v1/orders/{id}/keys` (once delivered);
- `GET /v1/webhooks`, `GET /v1/webhooks/{id}` (every attempt),
  `POST /v1/webhooks/{id}/resend`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kami_events.catalogue.common import ID_PATTERN
from kami_events.catalogue.identity import Role
from kami_reseller import handlers
from kami_reseller.adapters.keys import KeysUnavailable
from kami_reseller.domain.order import ResellerOrder
from kami_reseller.domain.reseller import MAX_MARKUP_BP, Reseller, ResellerRefused
from kami_reseller.domain.signing import SignatureRefused
from kami_reseller.handlers import NotFound, ResellerDeps
from kami_web.auth import Principal, require_roles
from kami_web.errors import ApiError, ErrorResponse, error_body

operators = APIRouter(tags=["operators"])
signed = APIRouter(prefix="/v1", tags=["reseller API (signed)"])

Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
MarkupBp = Annotated[int, Field(ge=0, le=MAX_MARKUP_BP, strict=True)]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422, 502)
}


def _deps(request: Request) -> ResellerDeps:
    return request.app.state.reseller  # type: ignore[no-any-return]


Deps = Annotated[ResellerDeps, Depends(_deps)]


async def _signed_reseller(request: Request, deps: Deps) -> Reseller:
    body = await request.body()
    try:
        return await handlers.authenticate(
            deps,
            request.method,
            request.url.path,
            request.url.query,
            dict(request.headers),
            body,
        )
    except SignatureRefused as refused:
        raise ApiError(401, refused.reason.value, refused.message) from refused


SignedReseller = Annotated[Reseller, Depends(_signed_reseller)]

# -- bodies and views -------------------------------------------------------------------


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    default_markup_bp: MarkupBp = Field(
        default=0, description="Markup on every resellable offer, in 1/10000 (1000 = +10%)."
    )


class CredentialView(BaseModel):
    key_id: str
    active: bool
    issued_at: datetime


class ResellerView(BaseModel):
    reseller_id: str
    user_id: str | None
    default_markup_bp: int
    markups: dict[str, int]
    webhook_url: str | None
    credentials: list[CredentialView]


class IssuedCredentialView(BaseModel):
    reseller_id: str
    key_id: str
    secret: str = Field(
        description="Shown this once; Kami keeps it encrypted and never shows it again."
    )


class MarkupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    markup_bp: MarkupBp


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=8, max_length=500, pattern=r"^https?://")


class CatalogueEntryView(BaseModel):
    offer_id: str
    product_id: str
    seller_id: str
    offer_price: int = Field(description="The offer's price, fen.")
    markup_bp: int
    price: int = Field(description="What this reseller pays per key, fen.")
    min_quantity_per_order: int
    max_quantity_per_order: int


class CatalogueView(BaseModel):
    offers: list[CatalogueEntryView]
    next_after: str | None


class PlaceOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_order_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="The reseller's own id for the order: the same id again is the same order.",
    )
    offer_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    quantity: int = Field(ge=1, le=1000, strict=True)
    customer_ref: str | None = Field(default=None, max_length=64)


class OrderView(BaseModel):
    order_id: str
    state: str
    offer_id: str
    quantity: int
    offer_total: int
    reseller_total: int
    margin: int
    customer_ref: str | None
    key_ids: list[str]
    refunded_amount: int
    reason: str | None


class OrderList(BaseModel):
    orders: list[dict[str, Any]]


class KeyView(BaseModel):
    key_id: str
    secret: str
    expires_at: str | None


class KeysView(BaseModel):
    order_id: str
    keys: list[KeyView]


class AttemptView(BaseModel):
    number: int
    started_at: datetime
    finished_at: datetime | None = None
    url: str | None = None
    status_code: int | None = None
    succeeded: bool = False
    error: str | None = None
    response_excerpt: str | None = None
    duration_ms: float | None = None


class WebhookView(BaseModel):
    webhook_id: str
    type: str
    order_id: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    body: str
    attempts: list[AttemptView] = []


class WebhookList(BaseModel):
    webhooks: list[WebhookView]


def _order_view(order: ResellerOrder) -> OrderView:
    return OrderView(
        order_id=order.id,
        state=str(order.state),
        offer_id=order.offer_id,
        quantity=order.quantity,
        offer_total=order.total,
        reseller_total=order.reseller_total,
        margin=order.margin,
        customer_ref=order.customer_ref,
        key_ids=order.key_ids,
        refunded_amount=order.refunded_amount,
        reason=order.close_reason,
    )


async def _reseller_view(deps: ResellerDeps, reseller: Reseller) -> ResellerView:
    credentials = await deps.stores.credentials_of(reseller.id)
    return ResellerView(
        reseller_id=reseller.id,
        user_id=reseller.user_id,
        default_markup_bp=reseller.default_markup_bp,
        markups=reseller.markups,
        webhook_url=reseller.webhook_url,
        credentials=[
            CredentialView(key_id=c["_id"], active=bool(c["active"]), issued_at=c["issued_at"])
            for c in credentials
        ],
    )


def _webhook_view(doc: dict[str, Any], attempts: list[dict[str, Any]] | None = None) -> WebhookView:
    return WebhookView(
        webhook_id=doc["_id"],
        type=doc["type"],
        order_id=doc["order_id"],
        status=doc["status"],
        attempt_count=int(doc["attempt_count"]),
        next_attempt_at=doc.get("next_attempt_at"),
        created_at=doc["created_at"],
        body=doc["body"],
        attempts=[
            AttemptView(**{k: v for k, v in a.items() if k in AttemptView.model_fields})
            for a in attempts or []
        ],
    )


# -- operators --------------------------------------------------------------------------


@operators.post(
    "/resellers", status_code=201, summary="Approve a user as a reseller", responses=ERRORS
)
async def approve(body: ApproveBody, operator: Operator, deps: Deps) -> ResellerView:
    reseller = await handlers.approve(deps, body.user_id, operator.subject, body.default_markup_bp)
    return await _reseller_view(deps, reseller)


@operators.get("/resellers", summary="The approved resellers", responses=ERRORS)
async def list_resellers(operator: Operator, deps: Deps) -> list[ResellerView]:
    found = []
    for doc in await deps.stores.resellers_list():
        reseller = await deps.resellers.get(doc["_id"])
        if reseller is not None:
            found.append(await _reseller_view(deps, reseller))
    return found


@operators.post(
    "/resellers/{reseller_id}/credentials",
    status_code=201,
    summary="Issue an API credential (the secret is shown once)",
    responses=ERRORS,
)
async def issue_credential(
    reseller_id: IdPath, operator: Operator, deps: Deps, response: Response
) -> IssuedCredentialView:
    issued = await handlers.issue_credential(deps, reseller_id)
    response.headers["Cache-Control"] = "no-store"
    return IssuedCredentialView(reseller_id=reseller_id, key_id=issued.key_id, secret=issued.secret)


@operators.delete(
    "/resellers/{reseller_id}/credentials/{key_id}",
    status_code=204,
    summary="Revoke an API credential",
    responses=ERRORS,
)
async def revoke_credential(
    reseller_id: IdPath, key_id: IdPath, operator: Operator, deps: Deps
) -> Response:
    await handlers.revoke_credential(deps, reseller_id, key_id, operator.subject)
    return Response(status_code=204)


# -- the signed reseller API ------------------------------------------------------------


@signed.get("/me", summary="This reseller: markups, webhook URL, credentials", responses=ERRORS)
async def me(reseller: SignedReseller, deps: Deps) -> ResellerView:
    return await _reseller_view(deps, reseller)


@signed.get("/catalogue", summary="Resellable offers at this reseller's prices", responses=ERRORS)
async def catalogue(
    reseller: SignedReseller,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN)] = None,
) -> CatalogueView:
    entries = await handlers.catalogue(deps, reseller, limit, after)
    return CatalogueView(
        offers=[CatalogueEntryView(**vars(e)) for e in entries],
        next_after=entries[-1].offer_id if len(entries) == limit else None,
    )


@signed.put("/markups/default", summary="Set the default markup", responses=ERRORS)
async def set_default_markup(
    body: MarkupBody, reseller: SignedReseller, deps: Deps
) -> ResellerView:
    reseller = await handlers.set_markup(deps, reseller, None, body.markup_bp)
    return await _reseller_view(deps, reseller)


@signed.put("/markups/{offer_id}", summary="Set the markup on one offer", responses=ERRORS)
async def set_offer_markup(
    offer_id: IdPath, body: MarkupBody, reseller: SignedReseller, deps: Deps
) -> ResellerView:
    reseller = await handlers.set_markup(deps, reseller, offer_id, body.markup_bp)
    return await _reseller_view(deps, reseller)


@signed.put("/webhook", summary="Set (or clear) the webhook URL", responses=ERRORS)
async def set_webhook(body: WebhookBody, reseller: SignedReseller, deps: Deps) -> ResellerView:
    reseller = await handlers.set_webhook(deps, reseller, body.url)
    return await _reseller_view(deps, reseller)


@signed.post(
    "/orders",
    status_code=201,
    summary="Order keys for a customer, paid from the prepaid balance",
    responses=ERRORS,
)
async def place_order(
    body: PlaceOrderBody, reseller: SignedReseller, deps: Deps, response: Response
) -> OrderView:
    order, created = await handlers.place_order(
        deps, reseller, body.client_order_id, body.offer_id, body.quantity, body.customer_ref
    )
    if not created:
        response.status_code = 200
    return _order_view(order)


@signed.get("/orders", summary="This reseller's orders, newest first", responses=ERRORS)
async def list_orders(
    reseller: SignedReseller, deps: Deps, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> OrderList:
    docs = await deps.stores.orders_of(reseller.id, limit)
    return OrderList(
        orders=[{"order_id": d["_id"], **{k: v for k, v in d.items() if k != "_id"}} for d in docs]
    )


@signed.get("/orders/{order_id}", summary="One order", responses=ERRORS)
async def get_order(order_id: IdPath, reseller: SignedReseller, deps: Deps) -> OrderView:
    return _order_view(await handlers.order_of(deps, reseller, order_id))


@signed.get("/orders/{order_id}/keys", summary="The delivered keys, in plaintext", responses=ERRORS)
async def get_keys(
    order_id: IdPath, reseller: SignedReseller, deps: Deps, response: Response
) -> KeysView:
    keys = await handlers.keys_of(deps, reseller, order_id)
    response.headers["Cache-Control"] = "no-store"
    return KeysView(order_id=order_id, keys=[KeyView(**vars(k)) for k in keys])


@signed.get("/webhooks", summary="This reseller's webhooks, newest first", responses=ERRORS)
async def list_webhooks(
    reseller: SignedReseller, deps: Deps, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> WebhookList:
    docs = await deps.stores.webhooks_of(reseller.id, limit)
    return WebhookList(webhooks=[_webhook_view(d) for d in docs])


@signed.get("/webhooks/{webhook_id}", summary="One webhook and every attempt", responses=ERRORS)
async def get_webhook(webhook_id: IdPath, reseller: SignedReseller, deps: Deps) -> WebhookView:
    doc = await deps.stores.webhook(webhook_id)
    if doc is None or doc["reseller_id"] != reseller.id:
        raise ApiError(404, "webhook_not_found", "no such webhook")
    return _webhook_view(doc, await deps.stores.attempts_of(webhook_id))


@signed.post(
    "/webhooks/{webhook_id}/resend",
    status_code=202,
    summary="Send a webhook again (new attempts with backoff)",
    responses=ERRORS,
)
async def resend_webhook(webhook_id: IdPath, reseller: SignedReseller, deps: Deps) -> WebhookView:
    await handlers.resend_webhook(deps, reseller, webhook_id)
    doc = await deps.stores.webhook(webhook_id)
    assert doc is not None
    return _webhook_view(doc, await deps.stores.attempts_of(webhook_id))


# -- errors ------------------------------------------------------------------------------

_REFUSED_STATUS = {
    "not_approved": 409,
    "already_approved": 409,
    "idempotency_key_reused": 409,
    "not_delivered": 409,
    "too_many_credentials": 409,
    "unknown_key": 404,
}


def install_refusal_handlers(app: FastAPI) -> None:
    @app.exception_handler(ResellerRefused)
    async def refused(request: Request, exc: ResellerRefused) -> JSONResponse:
        status = _REFUSED_STATUS.get(exc.code, 422)
        return JSONResponse(error_body(exc.code, exc.message), status_code=status)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=404)

    @app.exception_handler(KeysUnavailable)
    async def unavailable(request: Request, exc: KeysUnavailable) -> JSONResponse:
        return JSONResponse(error_body("keys_unavailable", str(exc)), status_code=502)
