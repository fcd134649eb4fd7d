"""Aftersales' use cases: load, decide, save; and the read models fed by events.

- `open_ticket`: a buyer's claim, put through the automatic rules in the same
  commit (docs/saga.md: an upheld claim is `CompensationApproved`);
- `decide_ticket`: an agent's resolution of an escalated ticket;
- `complete_replacement` / `refund_instead_of_replacement`: a replacement's
  outcome (delivery's `KeyReplaced`, inventory's `KeyReplacementFailed`);
- `escalate_overdue`: the SLA poller;
- `project_*`: read models from the other services' events and from the
  tickets' own events (queue, deadlines, counters);
- `review_seller` / `review_flagged`: issue rates → `SellerFlagged` /
  `SellerFlagCleared`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid4, uuid5

from kami_aftersales import metrics
from kami_aftersales.adapters.counters import HOUR, IssueCounters
from kami_aftersales.adapters.stores import Stores
from kami_aftersales.adapters.timeline import OrderTimelines
from kami_aftersales.adapters.verification import (
    KeyRedaction,
    KeyVerification,
    RedactionUnavailable,
    VerificationUnavailable,
)
from kami_aftersales.domain.analytics import FlagPolicy, IssueCounts, Seller
from kami_aftersales.domain.claims import KEY_CATEGORIES, ClaimRefused, OrderFacts, OrderStage
from kami_aftersales.domain.rules import RulesPolicy, Verdict, decide, needs_verification
from kami_aftersales.domain.ticket import AgentAction, SlaPolicy, Ticket, TicketState
from kami_events.catalogue.aftersales import (
    CompensationApproved,
    IssueCategory,
    Remedy,
    ReplacementApproved,
    SellerFlagged,
    TicketEscalated,
    TicketOpened,
    TicketResolved,
)
from kami_events.catalogue.delivery import ArrivalConfirmed, KeyReplaced
from kami_events.catalogue.inventory import KeyReplacementFailed, StockChanged
from kami_events.catalogue.ordering import (
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderRefundRequested,
)
from kami_events.clock import Clock
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.repository import AggregateRepository
from kami_events.store import CommitContext, ConcurrencyError

log = logging.getLogger(__name__)

_TICKET_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/aftersales/tickets")
PLATFORM = "platform"


@dataclass
class AftersalesDeps:
    tickets: AggregateRepository[Ticket]
    sellers: AggregateRepository[Seller]
    stores: Stores
    counters: IssueCounters
    verifier: KeyVerification
    redactor: KeyRedaction
    timelines: OrderTimelines
    rules: RulesPolicy
    sla: SlaPolicy
    flags: FlagPolicy
    clock: Clock


# -- opening a ticket -----------------------------------------------------------------


@dataclass(frozen=True)
class OpenTicket:
    buyer_id: str
    order_id: str
    category: IssueCategory
    key_ids: list[str]
    description: str
    evidence_urls: tuple[str, ...]
    idempotency_key: str | None
    request_id: str
    opened_by: Literal["buyer", "support"] = "buyer"
    author_id: str | None = None
    # What the buyer wants if the claim is upheld.
    preferred_remedy: Remedy = Remedy.REFUND


@dataclass(frozen=True)
class Opened:
    ticket: Ticket
    created: bool


def ticket_id_for(buyer_id: str, idempotency_key: str) -> str:
    return str(uuid5(_TICKET_NAMESPACE, f"{buyer_id}/{idempotency_key}"))


async def open_ticket(deps: AftersalesDeps, command: OpenTicket) -> Opened:
    """Open a claim and let the rules decide it at once. Raises `ClaimRefused`."""
    ticket_id = (
        ticket_id_for(command.buyer_id, command.idempotency_key)
        if command.idempotency_key
        else str(uuid4())
    )
    existing = await deps.tickets.get(ticket_id)
    if existing is not None:
        if (existing.order_id, existing.category) != (command.order_id, command.category):
            raise ClaimRefused(
                409, "idempotency_key_reused", "This Idempotency-Key opened a different ticket."
            )
        return Opened(existing, created=False)

    # Like ordering and payment, after-sales refuses a suspended account while
    # its token lives on: an upheld claim is a refund.
    if await deps.stores.is_suspended(command.buyer_id, deps.clock()):
        raise ClaimRefused(403, "buyer_suspended", "This account is suspended; it opens no claims.")
    facts = await deps.stores.order_facts(command.order_id)
    if facts is None:
        raise ClaimRefused(
            404, "order_not_found", f"There is no order {command.order_id} for you (yet)."
        )
    facts.check_claimable(command.buyer_id)
    claimed = facts.claimed_keys(command.key_ids)
    description, *evidence_urls = await without_keys(
        deps, facts, [command.description, *command.evidence_urls]
    )
    now = deps.clock()

    holder = await deps.stores.claim_order(facts.order_id, ticket_id, now)
    if holder != ticket_id:
        held_by = await deps.tickets.get(holder)
        stale = (
            held_by.state is TicketState.RESOLVED  # resolved; its claim not yet let go
            if held_by is not None
            else await _abandoned(deps, facts.order_id, now)  # its request died
        )
        if not stale:
            raise ClaimRefused(
                409,
                "ticket_already_open",
                f"Ticket {holder} about this order is still open; add to it instead.",
            )
        await deps.stores.release_order(facts.order_id, holder)
        if await deps.stores.claim_order(facts.order_id, ticket_id, now) != ticket_id:
            raise ClaimRefused(409, "ticket_already_open", "Another ticket was just opened.")

    verdicts: dict[str, Verdict] | None = None
    if needs_verification(command.category, facts, now) and claimed:
        try:
            verdicts = await deps.verifier.verify(facts.order_id, claimed)
        except VerificationUnavailable as exc:
            log.warning("order %s: keys not verified: %s", facts.order_id, exc)
    stock = 0
    if command.preferred_remedy is Remedy.REPLACEMENT and command.category in KEY_CATEGORIES:
        stock = await deps.stores.stock_of(facts.offer_id)
    decision = decide(
        command.category,
        claimed,
        facts,
        now,
        verdicts,
        deps.rules,
        preferred=command.preferred_remedy,
        stock_available=stock,
    )
    ticket = Ticket.open(
        ticket_id,
        facts=facts,
        category=command.category,
        key_ids=claimed,
        priority=await deps.stores.priority_of(command.buyer_id),
        opened_by=command.opened_by,
        now=now,
        decision=decision,
        sla=deps.sla,
        preferred_remedy=command.preferred_remedy,
    )
    await deps.stores.add_opening_message(
        ticket_id,
        author_id=command.author_id or command.buyer_id,
        author_role=command.opened_by,
        text=description,
        evidence_urls=tuple(evidence_urls),
        at=now,
    )
    context = CommitContext(correlation_id=facts.order_id, causation_id=command.request_id)
    try:
        await deps.tickets.save(ticket, context)
    except ConcurrencyError:
        # The same idempotent request raced itself: answer with the winner's ticket.
        winner = await deps.tickets.get(ticket_id)
        assert winner is not None
        return Opened(winner, created=False)
    metrics.TICKETS_OPENED.labels(command.category.value).inc()
    if ticket.state is TicketState.RESOLVED:
        await deps.stores.release_order(facts.order_id, ticket_id)
        _count_resolution(ticket)
    log.info(
        "ticket %s on order %s: %s by %s",
        ticket_id,
        facts.order_id,
        ticket.resolution or f"escalated to {ticket.level}",
        decision.rule,
        extra={"correlation_id": facts.order_id},
    )
    return Opened(ticket, created=True)


async def without_keys(
    deps: AftersalesDeps, facts: OrderFacts | None, texts: Sequence[str]
) -> list[str]:
    """Free text as aftersales may store it: a buyer may paste one of the
    order's keys into a complaint, and no database may hold a plaintext key
    (DESIGN §9.5). Delivery, which alone can open the keys, replaces them by
    their ids. Nothing delivered, nothing to replace. Raises `ClaimRefused`
    (503) when delivery cannot say: nothing is stored, the client retries."""
    if facts is None or not (facts.delivered_key_ids or facts.delivered):
        return list(texts)
    try:
        return await deps.redactor.redact(facts.order_id, texts)
    except RedactionUnavailable as exc:
        log.warning("order %s: free text not cleared of keys: %s", facts.order_id, exc)
        raise ClaimRefused(
            503,
            "key_check_unavailable",
            "The text could not be checked for card keys, so nothing was stored; try again.",
        ) from None


async def _abandoned(deps: AftersalesDeps, order_id: str, now: datetime) -> bool:
    claim = await deps.stores.open_ticket_of(order_id)
    return claim is not None and claim["at"] < now - timedelta(minutes=1)


# -- agents ----------------------------------------------------------------------------


async def decide_ticket(
    deps: AftersalesDeps,
    ticket_id: str,
    *,
    agent_id: str,
    action: AgentAction,
    amount: int | None,
    note: str | None,
    request_id: str,
) -> Ticket:
    for _ in range(3):
        ticket = await _ticket(deps, ticket_id)
        facts = await deps.stores.order_facts(ticket.order_id)
        if facts is None:
            raise ClaimRefused(409, "order_unknown", "The ticket's order is not known here.")
        stock = 0
        if action is AgentAction.REPLACE:
            stock = await deps.stores.stock_of(ticket.offer_id)
        ticket.decide_by_agent(action, agent_id, facts, amount=amount, stock_available=stock)
        shown = (await without_keys(deps, facts, [note]))[0] if note else None
        try:
            await deps.tickets.save(
                ticket, CommitContext(correlation_id=ticket.order_id, causation_id=request_id)
            )
        except ConcurrencyError:
            continue  # the SLA poller escalated it meanwhile: decide again
        if shown:
            await deps.stores.add_message(
                ticket_id,
                author_id=agent_id,
                author_role="support",
                text=shown,
                evidence_urls=(),
                at=deps.clock(),
            )
        if ticket.state is TicketState.RESOLVED:
            # A replacement keeps the order's one open ticket until its keys arrive.
            await deps.stores.release_order(ticket.order_id, ticket_id)
            _count_resolution(ticket)
        return ticket
    raise ClaimRefused(409, "ticket_busy", "The ticket is changing; try again.")


# -- a replacement's outcome ------------------------------------------------------------


async def complete_replacement(deps: AftersalesDeps, envelope: Envelope[KeyReplaced]) -> bool:
    """`KeyReplaced` (delivery): the new keys are in the buyer's vault; the
    order's facts now name them, and the ticket is resolved `key_replaced`."""
    event = envelope.payload
    await deps.stores.record_replacement(
        event.order_id,
        event.ticket_id,
        {
            "replaced_key_ids": list(event.replaced_key_ids),
            "key_ids": list(event.key_ids),
            "version": envelope.aggregate_version,
        },
    )
    return await _conclude_replacement(
        deps, event.ticket_id, lambda ticket, facts: ticket.replacement_delivered(), envelope
    )


async def refund_instead_of_replacement(
    deps: AftersalesDeps, envelope: Envelope[KeyReplacementFailed]
) -> bool:
    """`KeyReplacementFailed` (inventory): the pool ran dry (or the keys were
    refunded meanwhile): the buyer gets the refund the claim was worth."""
    event = envelope.payload
    await deps.stores.record_replacement(
        event.order_id,
        event.ticket_id,
        {"failure": event.reason.value, "available": event.available},
    )
    log.warning(
        "ticket %s: no replacement (%s); refunding instead",
        event.ticket_id,
        event.reason.value,
        extra={"correlation_id": event.order_id},
    )
    return await _conclude_replacement(
        deps,
        event.ticket_id,
        lambda ticket, facts: ticket.replacement_unavailable(facts),
        envelope,
    )


async def _conclude_replacement(
    deps: AftersalesDeps,
    ticket_id: str,
    conclude: Callable[[Ticket, OrderFacts], bool],
    envelope: Envelope[Any],
) -> bool:
    for _ in range(5):
        ticket = await deps.tickets.get(ticket_id)
        if ticket is None:
            log.warning("a replacement outcome for ticket %s, unknown here", ticket_id)
            return False
        facts = await deps.stores.order_facts(ticket.order_id)
        if facts is None:
            raise ClaimRefused(409, "order_unknown", "The ticket's order is not known here.")
        if not conclude(ticket, facts):
            return False  # a redelivery: the ticket was concluded already
        try:
            await deps.tickets.save(
                ticket,
                CommitContext(
                    correlation_id=ticket.order_id,
                    causation_id=str(envelope.event_id),
                    traceparent=envelope.traceparent,
                ),
            )
        except ConcurrencyError:
            continue
        await deps.stores.release_order(ticket.order_id, ticket_id)
        _count_resolution(ticket)
        log.info(
            "ticket %s on order %s: %s",
            ticket_id,
            ticket.order_id,
            ticket.resolution,
            extra={"correlation_id": ticket.order_id},
        )
        return True
    raise ConcurrencyError(f"ticket {ticket_id} kept changing")


async def project_stock(deps: AftersalesDeps, envelope: Envelope[StockChanged]) -> None:
    event = envelope.payload
    await deps.stores.record_stock(event.offer_id, envelope.aggregate_version, event.available)


async def post_message(
    deps: AftersalesDeps,
    ticket_id: str,
    *,
    author_id: str,
    author_role: str,
    text: str,
    evidence_urls: tuple[str, ...],
) -> int:
    ticket = await _ticket(deps, ticket_id)
    facts = await deps.stores.order_facts(ticket.order_id)
    text, *urls = await without_keys(deps, facts, [text, *evidence_urls])
    try:
        return await deps.stores.add_message(
            ticket_id,
            author_id=author_id,
            author_role=author_role,
            text=text,
            evidence_urls=tuple(urls),
            at=deps.clock(),
        )
    except OverflowError:
        raise ClaimRefused(409, "too_many_messages", "This ticket has no room for more.") from None


async def _ticket(deps: AftersalesDeps, ticket_id: str) -> Ticket:
    ticket = await deps.tickets.get(ticket_id)
    if ticket is None:
        raise ClaimRefused(404, "ticket_not_found", f"There is no ticket {ticket_id}.")
    return ticket


def _count_resolution(ticket: Ticket) -> None:
    if ticket.resolution is not None:
        metrics.TICKETS_RESOLVED.labels(
            ticket.category.value, ticket.resolution.value, str(ticket.automatic).lower()
        ).inc()


# -- the SLA poller ---------------------------------------------------------------------


async def escalate_overdue(deps: AftersalesDeps) -> int:
    """Escalate every ticket whose SLA has passed (persisted deadlines, injected clock)."""
    now = deps.clock()
    escalated = 0
    for ticket_id in await deps.stores.due_tickets(now):
        try:
            ticket = await _ticket(deps, ticket_id)
            if not ticket.on_deadline(now, deps.sla):
                continue
            await deps.tickets.save(
                ticket,
                CommitContext(ticket.order_id, causation_id=f"sla:{now.isoformat()}"),
            )
        except ConcurrencyError:
            continue  # decided meanwhile; the next pass sees its new state
        except Exception:
            log.exception("SLA escalation of ticket %s failed", ticket_id)
            continue
        metrics.SLA_BREACHES.labels(ticket.level.value if ticket.level else "none").inc()
        # The queue row is refreshed now, not only when the event comes back
        # through Kafka, so the next pass does not see the old deadline.
        await deps.stores.refresh_queue(
            ticket_id,
            {
                "level": ticket.level.value if ticket.level else None,
                "sla_due_at": ticket.sla_due_at,
            },
        )
        escalated += 1
    return escalated


# -- read models: other services' events -------------------------------------------------


async def project_order_event(deps: AftersalesDeps, envelope: Envelope[Any]) -> None:
    event = envelope.payload
    version = envelope.aggregate_version
    stores = deps.stores
    ids = {
        "buyer_id": event.buyer_id,
        "seller_id": event.seller_id,
        "offer_id": event.offer_id,
    }
    match event:
        case OrderPlaced():
            await stores.record_order(
                event.order_id,
                version,
                {
                    **ids,
                    "product_id": event.product_id,
                    "quantity": event.quantity,
                    "unit_price": event.unit_price,
                    "total": event.total,
                    "stage": OrderStage.PLACED.value,
                },
            )
        case OrderPaid():
            await stores.record_order(
                event.order_id,
                version,
                {**ids, "paid_amount": event.amount, "stage": OrderStage.PAID.value},
            )
        case OrderDelivered():
            await stores.record_order(
                event.order_id,
                version,
                {
                    **ids,
                    "delivered_key_ids": list(event.key_ids),
                    "guarantee_ends_at": event.guarantee_ends_at,
                    "stage": OrderStage.DELIVERED.value,
                },
            )
            await count_delivery(deps, envelope)
        case OrderCompleted():
            await stores.record_order(
                event.order_id, version, {**ids, "stage": OrderStage.COMPLETED.value}
            )
        case OrderCancelled():
            await stores.record_order(
                event.order_id, version, {**ids, "stage": OrderStage.CANCELLED.value}
            )
        case OrderRefundRequested():
            await stores.record_refund_requested(
                event.order_id, event.refund_id, event.amount, event.ticket_id, event.source.value
            )
        case OrderRefunded():
            if event.ends_order:
                await stores.record_order(
                    event.order_id, version, {**ids, "stage": OrderStage.REFUNDED.value}
                )
            await stores.record_refunded(event.refund_id, event.amount, event.source.value)


async def project_arrival(deps: AftersalesDeps, envelope: Envelope[ArrivalConfirmed]) -> None:
    await deps.stores.record_arrival(envelope.payload.order_id, envelope.occurred_at)


async def project_settlement(deps: AftersalesDeps, order_id: str, at: datetime) -> None:
    await deps.stores.record_settlement(order_id, at)


# -- read models: the tickets' own events -------------------------------------------------


async def project_ticket_event(deps: AftersalesDeps, envelope: Envelope[Any]) -> None:
    event = envelope.payload
    stores = deps.stores
    match event:
        case TicketOpened():
            fields = {
                "order_id": event.order_id,
                "buyer_id": event.buyer_id,
                "seller_id": event.seller_id,
                "offer_id": event.offer_id,
                "product_id": event.product_id,
                "category": event.category.value,
                "key_ids": list(event.key_ids),
                "within_guarantee": event.within_guarantee,
                "priority": event.priority,
                "opened_by": event.opened_by,
                "opened_at": envelope.occurred_at,
                "sla_due_at": event.sla_due_at,
                "version": envelope.aggregate_version,
            }
            await stores.upsert_ticket(event.ticket_id, {**fields, "state": "escalated"})
            await count_ticket(deps, envelope)
        case TicketEscalated():
            fields = {
                "level": event.level.value,
                "escalation_reason": event.reason.value,
                "sla_due_at": event.sla_due_at,
                "version": envelope.aggregate_version,
            }
            await stores.upsert_ticket(event.ticket_id, fields)
            summary = await stores.ticket(event.ticket_id)
            if summary is not None and summary.get("state") == "escalated":
                await stores.put_in_queue(
                    event.ticket_id,
                    {
                        "order_id": summary["order_id"],
                        "buyer_id": summary["buyer_id"],
                        "category": summary["category"],
                        "priority": summary["priority"],
                        "opened_at": summary["opened_at"],
                        **fields,
                    },
                )
        case TicketResolved():
            await stores.upsert_ticket(
                event.ticket_id,
                {
                    "state": "resolved",
                    "resolution": event.resolution.value,
                    "resolved_by": event.resolved_by,
                    "automatic": event.automatic,
                    "resolved_at": envelope.occurred_at,
                    "sla_due_at": None,
                    "version": envelope.aggregate_version,
                },
            )
            await stores.take_from_queue(event.ticket_id)
            await stores.release_order(event.order_id, event.ticket_id)
        case CompensationApproved():
            await stores.upsert_ticket(
                event.ticket_id,
                {"compensation": {"amount": event.amount, "void_key_ids": event.void_key_ids}},
            )
        case ReplacementApproved():
            # Out of the queue, not resolved: waiting for the new keys.
            await stores.upsert_ticket(
                event.ticket_id,
                {
                    "state": "replacing",
                    "sla_due_at": None,
                    "version": envelope.aggregate_version,
                },
            )
            await stores.take_from_queue(event.ticket_id)


# -- analytics -------------------------------------------------------------------------------


async def count_delivery(deps: AftersalesDeps, envelope: Envelope[OrderDelivered]) -> None:
    event = envelope.payload
    facts = await deps.stores.order_facts(event.order_id)
    scopes = [f"seller:{event.seller_id}", f"offer:{event.offer_id}"]
    if facts is not None and facts.product_id:
        scopes.append(f"product:{facts.product_id}")
    for scope in scopes:
        await deps.counters.add(scope, envelope.occurred_at, event.order_id, {"orders": 1})


async def count_ticket(deps: AftersalesDeps, envelope: Envelope[TicketOpened]) -> None:
    event = envelope.payload
    at = envelope.occurred_at
    counts = {"tickets": 1, f"tickets:{event.category.value}": 1}
    scopes = [f"seller:{event.seller_id}", f"offer:{event.offer_id}"]
    if event.product_id:
        scopes.append(f"product:{event.product_id}")
    for scope in scopes:
        await deps.counters.add(scope, at, event.ticket_id, counts)
    product = event.product_id or "unknown"
    issue = {f"{product}|{event.category.value}": 1}
    await deps.counters.add(PLATFORM, at, event.ticket_id, issue)
    await deps.counters.add(PLATFORM, at, event.ticket_id, issue, unit=HOUR)
    await review_seller(deps, event.seller_id, offer_ids=[event.offer_id])


async def issue_counts(deps: AftersalesDeps, scope: str) -> IssueCounts:
    totals = await deps.counters.window(scope, deps.clock(), deps.flags.window_days)
    tickets: dict[IssueCategory, int] = {}
    for name, n in totals.items():
        if name.startswith("tickets:"):
            tickets[IssueCategory(name.removeprefix("tickets:"))] = n
    return IssueCounts(orders=totals.get("orders", 0), tickets=tickets)


async def review_seller(
    deps: AftersalesDeps, seller_id: str, *, offer_ids: Sequence[str] = ()
) -> list[Event]:
    """Re-assess the seller's (and these offers') rates; publish flag changes."""
    scopes: list[tuple[str, str | None]] = [(f"seller:{seller_id}", None)]
    scopes += [(f"offer:{offer_id}", offer_id) for offer_id in offer_ids]
    counts = [(await issue_counts(deps, scope), offer_id) for scope, offer_id in scopes]
    for _ in range(5):
        seller = await deps.sellers.get(seller_id) or Seller(seller_id)
        for scope_counts, offer_id in counts:
            seller.review(scope_counts, deps.flags, offer_id=offer_id)
        raised = list(seller.pending_events)
        if not raised:
            return []
        try:
            await deps.sellers.save(
                seller, CommitContext(correlation_id=seller_id, causation_id="issue-rates")
            )
        except ConcurrencyError:
            continue
        for event in raised:
            if isinstance(event, SellerFlagged):
                metrics.SELLER_FLAGS.labels(event.reason.value, event.severity).inc()
            log.info("seller %s: %s", seller_id, event.event_type)
        offers = sorted({offer for _, offer in seller.flags if offer})
        await deps.stores.record_flags(seller_id, offers, flagged=bool(seller.flags))
        return raised
    raise ConcurrencyError(f"seller {seller_id} kept changing")


async def review_flagged(deps: AftersalesDeps) -> int:
    """The periodic pass: flagged sellers whose rates fell (time passed, more
    orders were delivered) get their flags cleared."""
    changed = 0
    for seller_id, offer_ids in await deps.stores.flagged_sellers():
        try:
            changed += len(await review_seller(deps, seller_id, offer_ids=offer_ids))
        except Exception:
            log.exception("reviewing seller %s failed", seller_id)
    return changed


@dataclass(frozen=True)
class IssueLine:
    product_id: str
    category: str
    count: int


async def frequent_issues(deps: AftersalesDeps, window: str, limit: int) -> list[IssueLine]:
    """The most frequent (product, category) pairs: over the last 24 hours, or
    the last 7 days (today and the 6 before it)."""
    if window == "24h":
        totals = await deps.counters.window(PLATFORM, deps.clock(), 24, unit=HOUR)
    else:
        totals = await deps.counters.window(PLATFORM, deps.clock(), 7)
    lines = []
    for name, n in totals.items():
        product_id, _, category = name.rpartition("|")
        lines.append(IssueLine(product_id, category, n))
    lines.sort(key=lambda line: (-line.count, line.product_id, line.category))
    return lines[:limit]


async def refresh_gauges(deps: AftersalesDeps) -> None:
    counts: dict[str, int] = {c.value: 0 for c in IssueCategory}
    for doc in await deps.stores.queue():
        counts[doc["category"]] = counts.get(doc["category"], 0) + 1
    for category, n in counts.items():
        metrics.TICKETS.labels("escalated", category).set(n)


def order_facts_view(facts: OrderFacts, now: datetime) -> dict[str, Any]:
    return {
        "order_id": facts.order_id,
        "within_guarantee": facts.within_guarantee(now),
        "guarantee_ends_at": facts.guarantee_ends_at,
        "arrival_confirmed": facts.arrival_confirmed,
        "refundable": facts.refundable,
        "settled": facts.settled,
        "stage": facts.stage.value,
    }
