"""Ordering's HTTP API: thin routes that validate, dispatch to the handlers and
shape the answer.

- `POST /orders` (buyer, `Idempotency-Key` required): place an order at the
  offer's price; the same request again returns the same order;
- `GET /orders`: the caller's own orders, newest first, by pages;
- `GET /orders/{id}` and `GET /orders/{id}/timeline`: for the buyer who owns
  the order and for support and operators; anyone else gets 404. With
  `?wait_for=STATE&timeout=S` the first waits (a long poll) until the order
  is in that state or past it, or cannot reach it, or S seconds passed;
- `POST /orders/{id}/cancel`: the buyer cancels an order not yet paid;
- `GET /sagas/past-deadline` (operators): orders whose deadline passed longer
  ago than the poller should take to fire it (`kami sagas stuck`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kami_events.catalogue.common import ID_PATTERN
from kami_events.catalogue.identity import Role
from kami_events.clock import Clock
from kami_ordering import metrics
from kami_ordering.adapters.order_views import InvalidCursor, MongoOrderViews
from kami_ordering.adapters.repository import LoadedOrder, OrderRepository
from kami_ordering.adapters.status_reads import counted_as_status_read
from kami_ordering.adapters.timeline import MongoTimeline, entry_of
from kami_ordering.domain.order import Order, OrderState, SagaTimers
from kami_ordering.domain.terms import PlacementRefused, RefusalKind
from kami_ordering.handlers import (
    IdempotencyKeyReused,
    OrderNotFound,
    OrderPlacement,
    PlaceOrder,
    PurchaseSaga,
    TransitionRefused,
)
from kami_ordering.order_changes import MAX_WAIT_SECONDS, OrderStatus
from kami_web.auth import CurrentUser, Principal, require_roles
from kami_web.errors import ApiError, ErrorResponse

router = APIRouter(tags=["orders"])

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
STAFF = frozenset({Role.SUPPORT, Role.OPERATOR})
DEFAULT_WAIT_SECONDS = 10.0

Buyer = Annotated[Principal, Depends(require_roles(Role.BUYER))]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]


@dataclass(frozen=True)
class Ordering:
    """What the routes need; built by `kami_ordering.app`."""

    placement: OrderPlacement
    saga: PurchaseSaga
    repository: OrderRepository
    status: OrderStatus
    views: MongoOrderViews
    timeline: MongoTimeline
    timers: SagaTimers
    clock: Clock
    # A deadline this much in the past counts as missed (the poller is late or stuck).
    overdue_after: timedelta


def _ordering(request: Request) -> Ordering:
    return request.app.state.ordering  # type: ignore[no-any-return]


Deps = Annotated[Ordering, Depends(_ordering)]

# -- bodies ---------------------------------------------------------------------------


class PlaceOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offer_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    quantity: int = Field(ge=1, le=1000, strict=True)
    buyer_fields: dict[
        Annotated[str, Field(min_length=1, max_length=40)], Annotated[str, Field(max_length=500)]
    ] = Field(
        default_factory=dict,
        max_length=10,
        description="The values the product asks for (e.g. game_account, server).",
    )
    coupon_code: str | None = Field(
        default=None,
        min_length=3,
        max_length=32,
        description="A coupon to hold for the order (docs/commerce.md): given back if it is "
        "cancelled, expires or is refunded, used for good once delivered.",
    )


class NextDeadline(BaseModel):
    kind: str
    due_at: datetime


class Deadlines(BaseModel):
    payment_deadline: datetime | None
    reservation_expires_at: datetime | None
    delivery_deadline: datetime | None
    guarantee_ends_at: datetime | None
    next: NextDeadline | None


class RefundView(BaseModel):
    refund_id: str
    payment_id: str
    amount: int
    source: str
    reason: str
    status: str  # requested | refunded
    ends_order: bool


class OrderView(BaseModel):
    order_id: str
    state: str
    buyer_id: str
    seller_id: str
    offer_id: str
    product_id: str
    quantity: int
    unit_price: int
    price_tier_min_quantity: int | None = Field(
        description="The quantity tier the unit price came from (its first quantity), if any."
    )
    flash_sale_id: str | None
    subtotal: int = Field(description="unit_price × quantity, in fen.")
    coupon_code: str | None
    coupon_status: str | None = Field(description="held, released or redeemed.")
    discount: int = Field(description="The coupon's discount, in fen.")
    total: int = Field(description="What the buyer pays: subtotal - discount, in fen.")
    currency: str
    delivery_mode: str
    buyer_fields: dict[str, str]
    key_ids: list[str]
    delivered_key_ids: list[str]
    payment_id: str | None
    paid_amount: int
    refunded_amount: int
    cancel_reason: str | None
    completed_by: str | None
    refunds: list[RefundView]
    deadlines: Deadlines
    placed_at: datetime
    updated_at: datetime
    version: int


class OrderSummaryView(BaseModel):
    order_id: str
    state: str
    offer_id: str
    product_id: str
    seller_id: str
    quantity: int
    total: int
    currency: str
    delivery_mode: str
    placed_at: datetime
    updated_at: datetime


class OrderList(BaseModel):
    orders: list[OrderSummaryView]
    next_cursor: str | None


class TimelineEvent(BaseModel):
    event_id: str
    event_type: str
    producer: str
    occurred_at: datetime
    summary: str


class Timeline(BaseModel):
    order_id: str
    events: list[TimelineEvent]


class OverdueSagaView(BaseModel):
    order_id: str
    state: str
    deadline: str = Field(description="payment, delivery or guarantee")
    due_at: datetime
    overdue_seconds: float


class OverdueSagas(BaseModel):
    as_of: datetime
    overdue_after_seconds: float
    sagas: list[OverdueSagaView]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422)
}

# -- routes ---------------------------------------------------------------------------


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderView,
    summary="Place an order (idempotent by Idempotency-Key)",
    responses={200: {"model": OrderView, "description": "the same request again"}, **ERRORS},
)
async def place_order(
    body: PlaceOrderBody,
    buyer: Buyer,
    deps: Deps,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    request_id: Annotated[str | None, Header(alias="X-Request-ID")] = None,
) -> OrderView:
    if idempotency_key is None:
        raise ApiError(
            400,
            "idempotency_key_required",
            "Send an Idempotency-Key header (e.g. a UUID) so a retried request "
            "cannot place a second order.",
        )
    if not IDEMPOTENCY_KEY.match(idempotency_key):
        raise ApiError(
            400,
            "idempotency_key_invalid",
            "The Idempotency-Key must be 1 to 128 visible ASCII characters.",
        )
    command = PlaceOrder(
        buyer_id=buyer.subject,
        idempotency_key=idempotency_key,
        offer_id=body.offer_id,
        quantity=body.quantity,
        buyer_fields=dict(body.buyer_fields),
        request_id=_request_id(request_id),
        coupon_code=body.coupon_code.strip().upper() if body.coupon_code else None,
    )
    try:
        placed = await deps.placement.place(command)
    except IdempotencyKeyReused:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different order request.",
        ) from None
    except PlacementRefused as refused:
        raise ApiError(_REFUSAL_STATUS[refused.kind], refused.code, refused.message) from None
    if not placed.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/orders/{placed.loaded.order.id}"
    return _order_view(placed.loaded, deps.timers)


@router.get(
    "/orders", response_model=OrderList, summary="My orders, newest first", responses=ERRORS
)
async def list_orders(
    user: CurrentUser,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderList:
    try:
        page = await deps.views.list_for_buyer(user.subject, limit, cursor)
    except InvalidCursor:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None
    return OrderList(
        orders=[OrderSummaryView(**summary.__dict__) for summary in page.orders],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/orders/{order_id}",
    response_model=OrderView,
    summary="One order; with wait_for, once it reaches a state (long poll)",
    description="Without `wait_for`, the order as it is now. With `wait_for=STATE`, "
    "the answer waits until the order is in STATE or past it (`wait_for=RESERVED` "
    "answers for a PAID order too), or can no longer reach it (it was cancelled, "
    "refunded or completed), or `timeout` seconds passed (default 10, at most 30): "
    "then it is the order as it is. Either way `200` with the order: look at "
    "`state`. A buyer's app waits for `RESERVED`, pays, then waits for `DELIVERED`, "
    "asking again after a timeout, instead of polling. A waiting request costs "
    "nothing while its order does not change.",
    responses=ERRORS,
)
async def get_order(
    order_id: str,
    user: CurrentUser,
    deps: Deps,
    wait_for: Annotated[
        OrderState | None,
        Query(description="Answer once the order is in this state or past it (a long poll)."),
    ] = None,
    timeout: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_WAIT_SECONDS,
            description="With wait_for: the longest to wait, in seconds (default 10).",
        ),
    ] = None,
) -> OrderView:
    if timeout is not None and wait_for is None:
        raise ApiError(
            400, "timeout_without_wait_for", "timeout says how long to wait: send wait_for too."
        )
    with counted_as_status_read():
        loaded = await deps.status.read(
            order_id,
            lambda order: _may_see(order, user),
            wait_for,
            DEFAULT_WAIT_SECONDS if timeout is None else timeout,
        )
    metrics.STATUS_REQUESTS.labels("true" if wait_for else "false").inc()
    if loaded is None:
        raise _not_found(order_id)
    return _order_view(loaded, deps.timers)


@router.get(
    "/orders/{order_id}/timeline",
    response_model=Timeline,
    summary="Everything that happened to an order, across services",
    responses=ERRORS,
)
async def get_timeline(order_id: str, user: CurrentUser, deps: Deps) -> Timeline:
    history = await deps.repository.history(order_id)
    if not history or not _may_see(Order.rehydrate(order_id, (e.payload for e in history)), user):
        raise _not_found(order_id)
    own = [entry_of(envelope) for envelope in history]
    others = await deps.timeline.entries(order_id)
    merged = sorted([*own, *others], key=lambda entry: entry.occurred_at)
    return Timeline(order_id=order_id, events=[TimelineEvent(**entry.__dict__) for entry in merged])


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderView,
    summary="Cancel an order that is not paid yet",
    responses=ERRORS,
)
async def cancel_order(
    order_id: str,
    buyer: Buyer,
    deps: Deps,
    request_id: Annotated[str | None, Header(alias="X-Request-ID")] = None,
) -> OrderView:
    try:
        loaded = await deps.saga.cancel_by_buyer(order_id, buyer.subject, _request_id(request_id))
    except OrderNotFound:
        raise _not_found(order_id) from None
    except TransitionRefused as refused:
        raise ApiError(409, "order_not_cancellable", refused.decision.reason) from None
    return _order_view(loaded, deps.timers)


@router.get(
    "/sagas/past-deadline",
    response_model=OverdueSagas,
    tags=["operations"],
    summary="Sagas whose deadline passed and was not acted on (operators)",
    description="The orders behind the `kami_saga_past_deadline` gauge, most overdue first: "
    "a deadline counts once it is `overdue_after_seconds` in the past (the poller fires "
    "deadlines within seconds). Orders held by an open after-sales claim are left out.",
    responses=ERRORS,
)
async def sagas_past_deadline(operator: Operator, deps: Deps) -> OverdueSagas:
    now = deps.clock()
    overdue = await deps.views.past_deadline(now - deps.overdue_after)
    return OverdueSagas(
        as_of=now,
        overdue_after_seconds=deps.overdue_after.total_seconds(),
        sagas=[
            OverdueSagaView(
                order_id=saga.order_id,
                state=saga.state,
                deadline=saga.deadline,
                due_at=saga.due_at,
                overdue_seconds=(now - saga.due_at).total_seconds(),
            )
            for saga in overdue
        ],
    )


# -- helpers --------------------------------------------------------------------------

_REFUSAL_STATUS = {
    RefusalKind.NOT_FOUND: 404,
    RefusalKind.UNAVAILABLE: 409,
    RefusalKind.INVALID: 422,
    RefusalKind.FORBIDDEN: 403,
    RefusalKind.EXHAUSTED: 409,
}


def _request_id(header: str | None) -> str:
    if header and len(header) <= 64 and IDEMPOTENCY_KEY.match(header):
        return header
    return str(uuid4())


def _may_see(order: Order, user: Principal) -> bool:
    return order.buyer_id == user.subject or bool(user.roles & STAFF)


def _not_found(order_id: str) -> ApiError:
    return ApiError(404, "order_not_found", f"There is no order {order_id} for you.")


async def _visible_order(order_id: str, user: Principal, deps: Ordering) -> LoadedOrder:
    loaded = await deps.repository.load(order_id)
    if loaded is None or not _may_see(loaded.order, user):
        raise _not_found(order_id)
    return loaded


def _order_view(loaded: LoadedOrder, timers: SagaTimers) -> OrderView:
    order = loaded.order
    assert order.state is not None
    deadline = order.next_deadline(timers)
    return OrderView(
        order_id=order.id,
        state=order.state.value,
        buyer_id=order.buyer_id,
        seller_id=order.seller_id,
        offer_id=order.offer_id,
        product_id=order.product_id,
        quantity=order.quantity,
        unit_price=order.unit_price.amount,
        price_tier_min_quantity=order.price_tier_min_quantity,
        flash_sale_id=order.flash_sale_id,
        subtotal=order.gross_total.amount,
        coupon_code=order.coupon_code,
        coupon_status=order.coupon_status,
        discount=order.discount,
        total=order.total.amount,
        currency=order.total.currency,
        delivery_mode=order.delivery_mode.value,
        buyer_fields=order.buyer_fields,
        key_ids=list(order.key_ids),
        delivered_key_ids=list(order.delivered_key_ids),
        payment_id=order.payment_id,
        paid_amount=order.paid_amount,
        refunded_amount=order.refunded_amount,
        cancel_reason=order.cancel_reason.value if order.cancel_reason else None,
        completed_by=order.completed_by.value if order.completed_by else None,
        refunds=[
            RefundView(
                refund_id=refund.refund_id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                source=refund.source.value,
                reason=refund.reason.value,
                status="refunded" if refund.done else "requested",
                ends_order=refund.ends_order,
            )
            for refund in order.refunds.values()
        ],
        deadlines=Deadlines(
            payment_deadline=order.payment_deadline,
            reservation_expires_at=order.reservation_expires_at,
            delivery_deadline=order.delivery_deadline,
            guarantee_ends_at=order.guarantee_ends_at,
            next=NextDeadline(kind=deadline.kind.value, due_at=deadline.due_at)
            if deadline
            else None,
        ),
        placed_at=loaded.placed_at,
        updated_at=loaded.updated_at,
        version=order.version,
    )
