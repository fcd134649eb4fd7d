"""The ticket aggregate (`aftersales.ticket`): one buyer's claim about one order.

    opened ──rules──▶ resolved
       │  └─rules──▶ replacing ──key replaced──▶ resolved (key_replaced)
       │                  └──pool ran dry──▶ resolved (refund)
       └──────────▶ escalated (agent → senior agent → operator) ──agent──▶ resolved
                          └──agent──▶ replacing ─▶ …

A ticket is opened and put through the automatic rules in one commit, so it
is never seen undecided: it is either resolved (by a rule) or waiting in an
agent queue. While it waits, `sla_due_at` is its deadline; a breached SLA
escalates it one level (`TicketEscalated{sla_breached}`), the operator level
being the last. A refund is `CompensationApproved` in the same commit as
`TicketResolved`: the purchase saga carries it out (docs/saga.md). A
replacement is `ReplacementApproved`: the ticket waits (`replacing`) until
delivery reports the new keys in the buyer's vault (`KeyReplaced` →
`TicketResolved{key_replaced}`), or inventory reports the pool could not
supply them (`KeyReplacementFailed` → the refund, as if it had been chosen).

Pure: no I/O and no clock; times come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, Literal

from kami_aftersales.domain.claims import ClaimRefused, OrderFacts
from kami_aftersales.domain.rules import (
    AutoResolve,
    Escalate,
    Replace,
    RuleDecision,
    refund_for_keys,
)
from kami_events.aggregate import Aggregate
from kami_events.catalogue.aftersales import (
    CompensationApproved,
    EscalationLevel,
    EscalationReason,
    IssueCategory,
    Remedy,
    ReplacementApproved,
    Resolution,
    TicketEscalated,
    TicketOpened,
    TicketResolved,
)
from kami_events.event import Event


class TicketState(StrEnum):
    ESCALATED = "escalated"  # in an agent queue, waiting for a decision
    # A replacement was approved: waiting for the new keys to reach the buyer.
    REPLACING = "replacing"
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
    REPLACE = "replace"
    REJECT = "reject"


@dataclass(frozen=True)
class Compensation:
    amount: int
    void_key_ids: tuple[str, ...]
    approved_by: str


@dataclass(frozen=True)
class PendingReplacement:
    key_ids: tuple[str, ...]
    approved_by: str
    # Approved by a rule at opening (the ticket never reached a queue).
    automatic: bool


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
        self.preferred_remedy: Remedy | None = None
        self.replacement: PendingReplacement | None = None

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
        preferred_remedy: Remedy = Remedy.REFUND,
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
                preferred_remedy=preferred_remedy,
            )
        )
        match decision:
            case AutoResolve():
                if decision.refund:
                    ticket._compensate(
                        decision.refund, decision.void_key_ids, decision.rule, facts.refundable
                    )
                ticket._resolve(decision.resolution, decision.rule, automatic=True)
            case Replace():
                ticket._approve_replacement(decision.key_ids, decision.rule)
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
        stock_available: int = 0,
    ) -> None:
        """An agent's decision on an escalated ticket. Raises `ClaimRefused`.
        `stock_available`: the offer's sellable keys (a replacement needs one
        per key of the ticket). Agents are buyers and may be sellers too: none
        decides a ticket about an order of their own, on either side (another
        agent does)."""
        if agent_id in (self.buyer_id, self.seller_id):
            raise ClaimRefused(
                403, "own_ticket", "An agent does not decide a ticket about their own order."
            )
        if self.state is TicketState.REPLACING:
            raise ClaimRefused(
                409, "ticket_not_open", f"Ticket {self.id} waits for its replacement keys."
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
            case AgentAction.REPLACE:
                self._approve_replacement(self._replaceable(facts, stock_available), agent_id)

    def _replaceable(self, facts: OrderFacts, stock_available: int) -> tuple[str, ...]:
        """The ticket's keys, if the order holds them and the pool can replace them."""
        if facts.refundable <= 0:
            raise ClaimRefused(409, "order_refunded", "The order was refunded already.")
        keys = tuple(k for k in self.key_ids if k in facts.delivered_key_ids)
        if not keys or len(keys) != len(self.key_ids):
            raise ClaimRefused(
                409,
                "keys_not_replaceable",
                "The ticket's keys are not the keys the buyer holds now; "
                "there is nothing to replace (refund instead).",
            )
        if stock_available < len(keys):
            raise ClaimRefused(
                409,
                "out_of_stock",
                f"The offer's pool has {stock_available} key(s) for the {len(keys)} to "
                "replace; refund instead.",
            )
        return keys

    # -- the replacement's outcome ------------------------------------------------------

    def replacement_delivered(self) -> bool:
        """The new keys are in the buyer's vault (`KeyReplaced`): resolved.
        False when the ticket was not waiting for them (a repeat)."""
        if self.state is not TicketState.REPLACING or self.replacement is None:
            return False
        self._resolve(
            Resolution.KEY_REPLACED,
            self.replacement.approved_by,
            automatic=self.replacement.automatic,
        )
        return True

    def replacement_unavailable(self, facts: OrderFacts) -> bool:
        """The pool could not supply the keys (`KeyReplacementFailed`): the
        buyer is refunded for them instead, as the rule or the agent would
        have refunded. False when the ticket was not waiting (a repeat)."""
        if self.state is not TicketState.REPLACING or self.replacement is None:
            return False
        pending = self.replacement
        refund, resolution = refund_for_keys(facts, len(pending.key_ids))
        if refund > 0:
            self._compensate(refund, pending.key_ids, pending.approved_by, facts.refundable)
        # else: the order was refunded in full meanwhile (a chargeback): nothing is left.
        self._resolve(resolution, pending.approved_by, automatic=pending.automatic)
        return True

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
                self.preferred_remedy = event.preferred_remedy
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
            case ReplacementApproved():
                self.state = TicketState.REPLACING
                self.replacement = PendingReplacement(
                    tuple(event.key_ids), event.approved_by, automatic=self.level is None
                )
                self.sla_due_at = None
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

    def _approve_replacement(self, key_ids: tuple[str, ...], approved_by: str) -> None:
        if not key_ids:
            raise ClaimRefused(409, "nothing_to_replace", "The ticket names no key to replace.")
        self._trigger(
            ReplacementApproved(
                ticket_id=self.id,
                order_id=self.order_id,
                buyer_id=self.buyer_id,
                seller_id=self.seller_id,
                offer_id=self.offer_id,
                key_ids=list(key_ids),
                approved_by=approved_by,
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
