"""Aftersales' HTTP API: thin routes that validate, dispatch to `handlers`, shape answers.

Buyers open tickets about their own orders and read their own tickets;
support agents work the queue and resolve; operators do both and read the
issue reports. Someone else's ticket or order is a 404, never a 403.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kami_aftersales import handlers
from kami_aftersales.domain.analytics import Seller as AnalyticsSeller
from kami_aftersales.domain.claims import ClaimRefused
from kami_aftersales.domain.ticket import AgentAction, Ticket
from kami_aftersales.handlers import AftersalesDeps, OpenTicket
from kami_events.catalogue.aftersales import FlagReason, IssueCategory, Remedy
from kami_events.catalogue.common import ID_PATTERN
from kami_events.catalogue.identity import Role
from kami_events.money import PositiveAmount
from kami_web.auth import CurrentUser, Principal, require_roles
from kami_web.errors import ErrorResponse, error_body

router = APIRouter()

STAFF = frozenset({Role.SUPPORT, Role.OPERATOR})
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422)
}
# Free text is cleared of card keys by delivery before it is stored; while
# delivery cannot answer, a message is refused (503), never stored as typed.
WITH_TEXT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    503: {"model": ErrorResponse, "description": "Delivery could not check the text for keys"},
}

Agent = Annotated[Principal, Depends(require_roles(Role.SUPPORT, Role.OPERATOR))]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
Seller = Annotated[Principal, Depends(require_roles(Role.SELLER))]
ImageUrl = Annotated[str, Field(max_length=500, pattern=r"^https?://[^\s]+$")]


def _deps(request: Request) -> AftersalesDeps:
    deps: AftersalesDeps = request.app.state.aftersales
    return deps


Deps = Annotated[AftersalesDeps, Depends(_deps)]

# -- bodies -------------------------------------------------------------------------------


class OpenTicketBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    category: IssueCategory
    key_ids: list[Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=1000, description="The keys at fault; none: all of them."
    )
    description: str = Field(min_length=1, max_length=2000, repr=False)
    evidence_urls: list[ImageUrl] = Field(default_factory=list, max_length=10)
    preferred_remedy: Remedy = Field(
        default=Remedy.REFUND,
        description=(
            "If a faulty key is upheld: a refund, or a replacement key from the offer's pool "
            "(given when the pool has one; a refund otherwise)."
        ),
    )


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000, repr=False)
    evidence_urls: list[ImageUrl] = Field(default_factory=list, max_length=10)


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: AgentAction
    amount: PositiveAmount | None = Field(default=None, description="fen (partial refund)")
    note: str | None = Field(
        default=None, max_length=2000, repr=False, description="Shown to the buyer (why)."
    )


class MessageView(BaseModel):
    seq: int
    author_role: str
    mine: bool
    text: str
    evidence_urls: list[str]
    posted_at: datetime


class CompensationView(BaseModel):
    amount: int
    void_key_ids: list[str]
    status: Literal["approved", "requested", "refunded"]
    source: str | None


class ReplacementView(BaseModel):
    key_ids: list[str] = Field(description="The faulty keys being replaced.")
    status: Literal["approved", "delivered", "unavailable"]
    new_key_ids: list[str] = Field(description="In the buyer's vault (once delivered).")
    failure: str | None = Field(description="Why the pool could not replace them (refunded).")


class TicketView(BaseModel):
    ticket_id: str
    order_id: str
    buyer_id: str
    seller_id: str
    offer_id: str
    product_id: str | None
    category: IssueCategory
    key_ids: list[str]
    within_guarantee: bool
    priority: int
    state: str
    level: str | None
    escalation_reason: str | None
    sla_due_at: datetime | None
    resolution: str | None
    resolved_by: str | None
    automatic: bool
    preferred_remedy: Remedy | None
    compensation: CompensationView | None
    replacement: ReplacementView | None
    messages: list[MessageView]
    timeline: list[dict[str, Any]] | None = Field(
        default=None, description="The order's events across services (agents only)."
    )


class TicketSummary(BaseModel):
    ticket_id: str
    order_id: str
    category: str
    state: str
    level: str | None = None
    priority: int
    opened_at: datetime
    sla_due_at: datetime | None = None
    resolution: str | None = None


class TicketList(BaseModel):
    tickets: list[TicketSummary]


class SellerTicketSummary(TicketSummary):
    offer_id: str | None = None
    within_guarantee: bool | None = None


class SellerTicketList(BaseModel):
    tickets: list[SellerTicketSummary]


class Guarantee(BaseModel):
    order_id: str
    stage: str
    within_guarantee: bool
    guarantee_ends_at: datetime | None
    arrival_confirmed: bool
    refundable: int
    settled: bool
    open_ticket_id: str | None
    replacement_available: bool = Field(
        description=(
            "The offer's pool has a sellable key now: a claim asking for a replacement "
            "may get one (inventory's last stock count)."
        )
    )


class IssueLineView(BaseModel):
    product_id: str
    category: str
    count: int


class IssueReport(BaseModel):
    window: str
    issues: list[IssueLineView]


class RateView(BaseModel):
    orders: int
    tickets: dict[str, int]
    claim_rate_bp: int
    invalid_key_rate_bp: int


class SellerReport(BaseModel):
    seller_id: str
    window_days: int
    rates: RateView
    flags: list[dict[str, Any]]


class FlaggedSeller(BaseModel):
    seller_id: str
    offer_ids: list[str] = Field(description="The offers a flag names (a seller-wide one: none).")
    flags: list[dict[str, Any]]


class FlaggedSellers(BaseModel):
    sellers: list[FlaggedSeller]


# -- buyers -----------------------------------------------------------------------------


@router.post(
    "/tickets",
    status_code=201,
    response_model=TicketView,
    tags=["tickets"],
    summary="Open a ticket about one of my orders (decided at once when a rule can)",
    responses={
        200: {"model": TicketView, "description": "the same request again"},
        **WITH_TEXT_ERRORS,
    },
)
async def open_ticket(
    body: OpenTicketBody,
    user: CurrentUser,
    deps: Deps,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise ClaimRefused(
            400, "idempotency_key_invalid", "The Idempotency-Key is 1 to 128 visible characters."
        )
    opened = await handlers.open_ticket(
        deps,
        OpenTicket(
            buyer_id=user.subject,
            order_id=body.order_id,
            category=body.category,
            key_ids=list(body.key_ids),
            description=body.description,
            evidence_urls=tuple(body.evidence_urls),
            idempotency_key=idempotency_key,
            request_id=_request_id(request),
            preferred_remedy=body.preferred_remedy,
        ),
    )
    view = await _view(deps, opened.ticket, user, request)
    return JSONResponse(view.model_dump(mode="json"), status_code=201 if opened.created else 200)


@router.get("/tickets", response_model=TicketList, tags=["tickets"], summary="My tickets")
async def my_tickets(
    user: CurrentUser, deps: Deps, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> TicketList:
    docs = await deps.stores.tickets_of_buyer(user.subject, limit)
    return TicketList(tickets=[_summary(doc) for doc in docs])


@router.get(
    "/tickets/{ticket_id}",
    response_model=TicketView,
    tags=["tickets"],
    summary="One ticket: mine, or any for support (with the order's timeline)",
    responses=ERRORS,
)
async def get_ticket(ticket_id: str, user: CurrentUser, deps: Deps, request: Request) -> TicketView:
    ticket = await _visible(deps, ticket_id, user)
    return await _view(deps, ticket, user, request)


@router.post(
    "/tickets/{ticket_id}/messages",
    status_code=201,
    response_model=TicketView,
    tags=["tickets"],
    summary="Add a message or evidence to a ticket",
    responses=WITH_TEXT_ERRORS,
)
async def add_message(
    ticket_id: str, body: MessageBody, user: CurrentUser, deps: Deps, request: Request
) -> TicketView:
    ticket = await _visible(deps, ticket_id, user)
    await handlers.post_message(
        deps,
        ticket_id,
        author_id=user.subject,
        author_role="buyer" if user.subject == ticket.buyer_id else "support",
        text=body.text,
        evidence_urls=tuple(body.evidence_urls),
    )
    return await _view(deps, ticket, user, request)


@router.get(
    "/orders/{order_id}/guarantee",
    response_model=Guarantee,
    tags=["tickets"],
    summary="Whether my order is still inside its guarantee window",
    responses=ERRORS,
)
async def guarantee(order_id: str, user: CurrentUser, deps: Deps) -> Guarantee:
    facts = await deps.stores.order_facts(order_id)
    if facts is None or (facts.buyer_id != user.subject and not user.roles & STAFF):
        raise ClaimRefused(404, "order_not_found", f"There is no order {order_id} for you.")
    open_claim = await deps.stores.open_ticket_of(order_id)
    return Guarantee(
        **handlers.order_facts_view(facts, deps.clock()),
        open_ticket_id=str(open_claim["ticket_id"]) if open_claim else None,
        replacement_available=await deps.stores.stock_of(facts.offer_id) > 0,
    )


# -- support agents ---------------------------------------------------------------------


@router.get(
    "/queue",
    response_model=TicketList,
    tags=["support"],
    summary="Tickets waiting for an agent: higher after-sales priority first, then oldest",
)
async def queue(
    agent: Agent, deps: Deps, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> TicketList:
    return TicketList(tickets=[_summary(doc) for doc in (await deps.stores.queue())[:limit]])


@router.post(
    "/tickets/{ticket_id}/resolve",
    response_model=TicketView,
    tags=["support"],
    summary=(
        "Resolve an escalated ticket: full or partial refund, a replacement key from the "
        "offer's pool, or reject with a reason"
    ),
    responses=WITH_TEXT_ERRORS,
)
async def resolve(
    ticket_id: str, body: ResolveBody, agent: Agent, deps: Deps, request: Request
) -> TicketView:
    if body.action is AgentAction.REJECT and not (body.note or "").strip():
        raise ClaimRefused(422, "reason_required", "Rejecting a ticket needs a note saying why.")
    ticket = await handlers.decide_ticket(
        deps,
        ticket_id,
        agent_id=agent.subject,
        action=body.action,
        amount=body.amount,
        note=body.note,
        request_id=_request_id(request),
    )
    return await _view(deps, ticket, agent, request)


# -- sellers ------------------------------------------------------------------------------


@router.get(
    "/seller/tickets",
    response_model=SellerTicketList,
    tags=["sellers"],
    summary="Tickets about my orders as a seller, newest first (no buyer or message)",
)
async def seller_tickets(
    seller: Seller,
    deps: Deps,
    state: Annotated[
        Literal["escalated", "resolved", "replacing"] | None, Query(description="Only these")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SellerTicketList:
    docs = await deps.stores.tickets_of_seller(seller.subject, limit, state=state)
    return SellerTicketList(
        tickets=[
            SellerTicketSummary(
                **_summary(doc).model_dump(),
                offer_id=doc.get("offer_id"),
                within_guarantee=doc.get("within_guarantee"),
            )
            for doc in docs
        ]
    )


# -- operators ----------------------------------------------------------------------------


@router.get(
    "/reports/issues",
    response_model=IssueReport,
    tags=["reports"],
    summary="The most frequent issues (product and category) over 24 h or 7 days",
)
async def issue_report(
    operator: Operator,
    deps: Deps,
    window: Annotated[Literal["24h", "7d"], Query()] = "24h",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> IssueReport:
    lines = await handlers.frequent_issues(deps, window, limit)
    return IssueReport(window=window, issues=[IssueLineView(**line.__dict__) for line in lines])


@router.get(
    "/reports/flagged-sellers",
    response_model=FlaggedSellers,
    tags=["reports"],
    summary="Every seller with a flag up, and its flags",
)
async def flagged_sellers(operator: Operator, deps: Deps) -> FlaggedSellers:
    found = []
    for seller_id, offer_ids in await deps.stores.flagged_sellers():
        seller = await deps.sellers.get(seller_id)
        flags = _flags(seller)
        if flags:  # the list is a cache of the sellers' streams: trust the stream
            found.append(FlaggedSeller(seller_id=seller_id, offer_ids=offer_ids, flags=flags))
    return FlaggedSellers(sellers=found)


@router.get(
    "/reports/sellers/{seller_id}",
    response_model=SellerReport,
    tags=["reports"],
    summary="A seller's rolling ticket rates and its flags",
)
async def seller_report(seller_id: str, operator: Operator, deps: Deps) -> SellerReport:
    counts = await handlers.issue_counts(deps, f"seller:{seller_id}")
    flags = _flags(await deps.sellers.get(seller_id))
    return SellerReport(
        seller_id=seller_id,
        window_days=deps.flags.window_days,
        rates=RateView(
            orders=counts.orders,
            tickets={c.value: n for c, n in counts.tickets.items()},
            claim_rate_bp=counts.rate_bp(FlagReason.HIGH_CLAIM_RATE),
            invalid_key_rate_bp=counts.rate_bp(FlagReason.HIGH_INVALID_KEY_RATE),
        ),
        flags=flags,
    )


# -- helpers -------------------------------------------------------------------------------


def _flags(seller: AnalyticsSeller | None) -> list[dict[str, Any]]:
    return [
        {"reason": reason.value, "offer_id": offer_id, "severity": severity}
        for (reason, offer_id), severity in (seller.flags.items() if seller else [])
    ]


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if given and IDEMPOTENCY_KEY.match(given) and len(given) <= 64 else str(uuid4())


async def _visible(deps: AftersalesDeps, ticket_id: str, user: Principal) -> Ticket:
    ticket = await deps.tickets.get(ticket_id)
    if ticket is None or (ticket.buyer_id != user.subject and not user.roles & STAFF):
        raise ClaimRefused(404, "ticket_not_found", f"There is no ticket {ticket_id} for you.")
    return ticket


async def _view(
    deps: AftersalesDeps, ticket: Ticket, user: Principal, request: Request
) -> TicketView:
    compensation = None
    if ticket.compensation is not None:
        refund = await deps.stores.ticket_refund(ticket.id)
        compensation = CompensationView(
            amount=ticket.compensation.amount,
            void_key_ids=list(ticket.compensation.void_key_ids),
            status=refund["status"] if refund else "approved",
            source=refund["source"] if refund else None,
        )
    replacement = None
    if ticket.replacement is not None:
        outcome = await deps.stores.replacement_of(ticket.order_id, ticket.id) or {}
        replacement = ReplacementView(
            key_ids=list(ticket.replacement.key_ids),
            status=(
                "unavailable"
                if outcome.get("failure")
                else "delivered"
                if outcome.get("key_ids")
                else "approved"
            ),
            new_key_ids=list(outcome.get("key_ids", [])),
            failure=outcome.get("failure"),
        )
    timeline = None
    staff = bool(user.roles & STAFF)
    if staff:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        timeline = await deps.timelines.timeline(ticket.order_id, token)
    messages = await deps.stores.messages_of(ticket.id)
    return TicketView(
        ticket_id=ticket.id,
        order_id=ticket.order_id,
        buyer_id=ticket.buyer_id,
        seller_id=ticket.seller_id,
        offer_id=ticket.offer_id,
        product_id=ticket.product_id,
        category=ticket.category,
        key_ids=list(ticket.key_ids),
        within_guarantee=ticket.within_guarantee,
        priority=ticket.priority,
        state=ticket.state.value if ticket.state else "unknown",
        level=ticket.level.value if ticket.level else None,
        escalation_reason=ticket.escalation_reason.value if ticket.escalation_reason else None,
        sla_due_at=ticket.sla_due_at,
        resolution=ticket.resolution.value if ticket.resolution else None,
        resolved_by=ticket.resolved_by,
        automatic=ticket.automatic,
        preferred_remedy=ticket.preferred_remedy,
        compensation=compensation,
        replacement=replacement,
        messages=[
            MessageView(
                seq=m.seq,
                author_role=m.author_role,
                mine=m.author_id == user.subject,
                text=m.text,
                evidence_urls=list(m.evidence_urls),
                posted_at=m.posted_at,
            )
            for m in messages
        ],
        timeline=timeline,
    )


def _summary(doc: dict[str, Any]) -> TicketSummary:
    return TicketSummary(
        ticket_id=str(doc["_id"]),
        order_id=doc["order_id"],
        category=doc["category"],
        state=doc.get("state", "escalated"),
        level=doc.get("level"),
        priority=int(doc.get("priority", 0)),
        opened_at=doc["opened_at"],
        sla_due_at=doc.get("sla_due_at"),
        resolution=doc.get("resolution"),
    )


def install_refusal_handler(app: FastAPI) -> None:
    @app.exception_handler(ClaimRefused)
    async def refused(request: Request, exc: ClaimRefused) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)
