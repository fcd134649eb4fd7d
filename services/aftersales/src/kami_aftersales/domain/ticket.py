"""The ticket aggregate (`aftersales.ticket`): one buyer's claim about one order.

    opened ──rules──▶ resolved
       └──────────▶ escalated (agent → senior agent → operator) ──agent──▶ resolved

A ticket is opened and put through the automatic rules in one commit, so it
is never seen undecided: it is either resolved (by a rule) or waiting in an
agent queue. While it waits, `sla_due_at` is its deadline; a breached SLA
escalates it one level (`TicketEscalated{sla_breached}`), the operator level
being the last. A refund is `CompensationApproved` in the same commit as
`TicketResolved`: the purchase saga carries it out (docs/saga.md).

Pure: no I/O and no clock; times come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, Literal

from kami_aftersales.domain.claims import ClaimRefused, OrderFacts
from kami_aftersales.domain.rules import AutoResolve, Escalate, RuleDecision
from kami_events.aggregate import Aggregate
from kami_events.catalogue.aftersales import (
    CompensationApproved,
    EscalationLevel,
    EscalationReason,
    IssueCategory,
    Resolution,
    TicketEscalated,
    TicketOpened,
    TicketResolved,
)
from kami_events.event import Event


class TicketState(StrEnum):
    ESCALATED = "escalated"  # in an agent queue, waiting for a decision
    RESOLVED = "resolved"


LEVELS = (EscalationLevel.AGENT, EscalationLevel.SENIOR_AGENT, EscalationLevel.OPERATOR)


@dataclass(frozen=True)
class SlaPolicy:
    """How long each level has to decide a ticket. The operator level is the
    last: its deadline only reports a breach, nothing escalates further."""

    agent: timedelta = timedelta(hours=4)
    senior_agent: timedelta = timedelta(hours=2)
    operator: timedelta = timedelta(hours=8)

    def due(self, level: EscalationLevel, now: datetime) -> datetime:
        return (
            now
            + {
                EscalationLevel.AGENT: self.agent,
                EscalationLevel.SENIOR_AGENT: self.senior_agent,
                EscalationLevel.OPERATOR: self.operator,
            }[level]
        )


def next_level(level: EscalationLevel) -> EscalationLevel | None:
    index = LEVELS.index(level)
    return LEVELS[index + 1] if index + 1 < len(LEVELS) else None


class AgentAction(StrEnum):
    REFUND_FULL = "refund_full"
    REFUND_PARTIAL = "refund_partial"
    REJECT = "reject"


@dataclass(frozen=True)
class Compensation:
    amount: int
    void_key_ids: tuple[str, ...]
    approved_by: str


class Ticket(Aggregate):
    aggregate_type: ClassVar[str] = "aftersales.ticket"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.state: TicketState | None = None
        self.order_id = ""
        self.buyer_id = ""
        self.seller_id = ""
        self.offer_id = ""
        self.product_id: str | None = None
        self.category = IssueCategory.OTHER
        self.key_ids: tuple[str, ...] = ()
        self.within_guarantee = False
        self.priority = 0
        self.opened_by: Literal["buyer", "support"] = "buyer"
        self.level: EscalationLevel | None = None
        self.escalation_reason: EscalationReason | None = None
        self.sla_due_at: datetime | None = None
        self.resolution: Resolution | None = None
        self.resolved_by: str | None = None
        self.automatic = False
        self.compensation: Compensation | None = None

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        ticket_id: str,
        *,
        facts: OrderFacts,
        category: IssueCategory,
        key_ids: tuple[str, ...],
        priority: int,
        opened_by: Literal["buyer", "support"],
        now: datetime,
        decision: RuleDecision,
        sla: SlaPolicy,
    ) -> Ticket:
        """Open the claim and apply the rules' decision in the same commit."""
        ticket = cls(ticket_id)
        ticket._trigger(
            TicketOpened(
                ticket_id=ticket_id,
                order_id=facts.order_id,
                buyer_id=facts.buyer_id,
                seller_id=facts.seller_id,
                offer_id=facts.offer_id,
                product_id=facts.product_id or None,
                category=category,
                key_ids=list(key_ids),
                within_guarantee=facts.within_guarantee(now),
                priority=priority,
                opened_by=opened_by,
                sla_due_at=sla.due(EscalationLevel.AGENT, now),
            )
        )
        match decision:
            case AutoResolve():
                if decision.refund:
                    ticket._compensate(
                        decision.refund, decision.void_key_ids, decision.rule, facts.refundable
                    )
                ticket._resolve(decision.resolution, decision.rule, automatic=True)
            case Escalate():
                ticket._escalate(EscalationLevel.AGENT, decision.reason, now, sla)
        return ticket

    # -- agents ----------------------------------------------------------------------

    def decide_by_agent(
        self,
        action: AgentAction,
        agent_id: str,
        facts: OrderFacts,
        *,
        amount: int | None = None,
    ) -> None:
        """An agent's decision on an escalated ticket. Raises `ClaimRefused`.
        Agents are buyers and may be sellers too: none decides a ticket about
        an order of their own, on either side (another agent does)."""
        if agent_id in (self.buyer_id, self.seller_id):
            raise ClaimRefused(
                403, "own_ticket", "An agent does not decide a ticket about their own order."
            )
        if self.state is not TicketState.ESCALATED:
            raise ClaimRefused(
                409, "ticket_not_open", f"Ticket {self.id} is already {self.resolution}."
            )
        match action:
            case AgentAction.REJECT:
                self._resolve(Resolution.REJECTED, agent_id, automatic=False)
            case AgentAction.REFUND_FULL:
                refund = facts.refundable
                if refund <= 0:
                    raise ClaimRefused(409, "nothing_to_refund", "The order is refunded already.")
                self._compensate(refund, self.key_ids, agent_id, facts.refundable)
                self._resolve(Resolution.REFUND_FULL, agent_id, automatic=False)
            case AgentAction.REFUND_PARTIAL:
                if amount is None or not 0 < amount < facts.refundable:
                    raise ClaimRefused(
                        422,
                        "invalid_amount",
                        f"A partial refund is 1 to {facts.refundable - 1} fen "
                        f"(of {facts.refundable} still refundable); use refund_full for all of it.",
                    )
                # The keys stay the buyer's: only part of the price goes back.
                self._compensate(amount, (), agent_id, facts.refundable)
                self._resolve(Resolution.REFUND_PARTIAL, agent_id, automatic=False)

    # -- SLA -------------------------------------------------------------------------

    def on_deadline(self, now: datetime, sla: SlaPolicy) -> bool:
        """Escalate one level if the SLA is breached; True if it did."""
        if self.state is not TicketState.ESCALATED or self.sla_due_at is None:
            return False
        if now < self.sla_due_at or self.level is None:
            return False
        higher = next_level(self.level)
        if higher is None:
            # The last level: the breach is recorded once, nothing is above it.
            self._trigger(
                TicketEscalated(
                    ticket_id=self.id,
                    order_id=self.order_id,
                    level=self.level,
                    reason=EscalationReason.SLA_BREACHED,
                    sla_due_at=None,
                )
            )
            return True
        self._escalate(higher, EscalationReason.SLA_BREACHED, now, sla)
        return True

    # -- state -----------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        match event:
            case TicketOpened():
                self.state = TicketState.ESCALATED
                self.order_id = event.order_id
                self.buyer_id = event.buyer_id
                self.seller_id = event.seller_id
                self.offer_id = event.offer_id
                self.product_id = event.product_id
                self.category = event.category
                self.key_ids = tuple(event.key_ids)
                self.within_guarantee = event.within_guarantee
                self.priority = event.priority
                self.opened_by = event.opened_by
                self.sla_due_at = event.sla_due_at
            case TicketEscalated():
                self.level = event.level
                self.escalation_reason = event.reason
                self.sla_due_at = event.sla_due_at
            case TicketResolved():
                self.state = TicketState.RESOLVED
                self.resolution = event.resolution
                self.resolved_by = event.resolved_by
                self.automatic = event.automatic
                self.sla_due_at = None
            case CompensationApproved():
                self.compensation = Compensation(
                    event.amount, tuple(event.void_key_ids), event.approved_by
                )
            case _:
                super().apply(event)

    def _escalate(
        self, level: EscalationLevel, reason: EscalationReason, now: datetime, sla: SlaPolicy
    ) -> None:
        self._trigger(
            TicketEscalated(
                ticket_id=self.id,
                order_id=self.order_id,
                level=level,
                reason=reason,
                sla_due_at=sla.due(level, now),
            )
        )

    def _resolve(self, resolution: Resolution, by: str, *, automatic: bool) -> None:
        self._trigger(
            TicketResolved(
                ticket_id=self.id,
                order_id=self.order_id,
                resolution=resolution,
                resolved_by=by,
                automatic=automatic,
                category=self.category,
            )
        )

    def _compensate(
        self, amount: int, void_key_ids: tuple[str, ...], approved_by: str, refundable: int
    ) -> None:
        if self.compensation is not None:
            raise ClaimRefused(409, "already_compensated", "This ticket was compensated already.")
        if not 0 < amount <= refundable:
            raise ClaimRefused(
                409, "refund_exceeds_paid", f"{amount} fen exceeds the {refundable} refundable."
            )
        self._trigger(
            CompensationApproved(
                ticket_id=self.id,
                order_id=self.order_id,
                buyer_id=self.buyer_id,
                seller_id=self.seller_id,
                amount=amount,
                void_key_ids=list(void_key_ids),
                approved_by=approved_by,
            )
        )
