"""The aftersales domain on its own: claims, rules, tickets, SLA, flags."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kami_aftersales.domain.analytics import FlagPolicy, IssueCounts, Seller
from kami_aftersales.domain.claims import ClaimRefused, OrderFacts, OrderStage
from kami_aftersales.domain.rules import (
    RULE_FAULTY_KEY,
    AutoResolve,
    Escalate,
    RulesPolicy,
    Verdict,
    decide,
    needs_verification,
)
from kami_aftersales.domain.ticket import AgentAction, SlaPolicy, Ticket, TicketState
from kami_events.catalogue.aftersales import (
    CompensationApproved,
    EscalationLevel,
    EscalationReason,
    FlagReason,
    IssueCategory,
    Resolution,
    SellerFlagCleared,
    SellerFlagged,
    TicketEscalated,
    TicketOpened,
    TicketResolved,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SLA = SlaPolicy()
RULES = RulesPolicy(auto_refund_max=5_000)

DELIVERED = OrderFacts(
    order_id="order-1",
    buyer_id="buyer-1",
    seller_id="seller-1",
    offer_id="offer-1",
    product_id="product-1",
    quantity=2,
    unit_price=950,
    stage=OrderStage.DELIVERED,
    paid_amount=1900,
    delivered_key_ids=("k1", "k2"),
    guarantee_ends_at=NOW + timedelta(minutes=10),
)


def test_the_guarantee_window_runs_from_delivery_until_its_end_or_arrival() -> None:
    assert DELIVERED.within_guarantee(NOW)
    assert not DELIVERED.within_guarantee(NOW + timedelta(minutes=10))
    assert not replace(DELIVERED, arrival_confirmed=True).within_guarantee(NOW)
    assert not replace(DELIVERED, stage=OrderStage.COMPLETED).within_guarantee(NOW)


def test_only_the_buyer_claims_a_paid_unrefunded_order_about_its_own_keys() -> None:
    with pytest.raises(ClaimRefused) as other:
        DELIVERED.check_claimable("buyer-2")
    assert other.value.status == 404
    with pytest.raises(ClaimRefused) as unpaid:
        replace(DELIVERED, stage=OrderStage.PLACED).check_claimable("buyer-1")
    assert unpaid.value.code == "order_not_paid"
    with pytest.raises(ClaimRefused) as refunded:
        replace(DELIVERED, refunds_requested=1900).check_claimable("buyer-1")
    assert refunded.value.code == "order_refunded"
    with pytest.raises(ClaimRefused) as stranger:
        DELIVERED.claimed_keys(["k9"])
    assert stranger.value.status == 422
    assert DELIVERED.claimed_keys([]) == ("k1", "k2")


def test_not_received_but_delivered_is_pointed_to_the_vault() -> None:
    decision = decide(IssueCategory.NOT_RECEIVED, (), DELIVERED, NOW, None, RULES)
    assert isinstance(decision, AutoResolve)
    assert decision.resolution is Resolution.NOTIFICATION_RESENT and decision.refund == 0
    paid_only = replace(DELIVERED, stage=OrderStage.PAID, delivered_key_ids=())
    assert isinstance(decide(IssueCategory.NOT_RECEIVED, (), paid_only, NOW, None, RULES), Escalate)


def test_a_faulty_key_within_the_window_refunds_that_key_at_once() -> None:
    verdicts = {"k1": Verdict.ALREADY_USED, "k2": Verdict.VALID}
    assert needs_verification(IssueCategory.KEY_INVALID, DELIVERED, NOW)
    decision = decide(IssueCategory.KEY_INVALID, ("k1", "k2"), DELIVERED, NOW, verdicts, RULES)
    assert decision == AutoResolve(
        RULE_FAULTY_KEY, Resolution.REFUND_PARTIAL, refund=950, void_key_ids=("k1",)
    )
    both = {"k1": Verdict.INVALID, "k2": Verdict.INVALID}
    whole = decide(IssueCategory.KEY_INVALID, ("k1", "k2"), DELIVERED, NOW, both, RULES)
    assert isinstance(whole, AutoResolve) and whole.resolution is Resolution.REFUND_FULL
    assert whole.refund == 1900


@pytest.mark.parametrize(
    ("facts", "verdicts", "reason"),
    [
        # after the window: a ticket, never an automatic refund
        (
            replace(DELIVERED, stage=OrderStage.COMPLETED),
            {"k1": Verdict.INVALID},
            EscalationReason.RULE_INCONCLUSIVE,
        ),
        # the issuer says it works, or does not know
        (DELIVERED, {"k1": Verdict.VALID}, EscalationReason.RULE_INCONCLUSIVE),
        (DELIVERED, {"k1": Verdict.UNKNOWN}, EscalationReason.RULE_INCONCLUSIVE),
        # the verifier could not be reached
        (DELIVERED, None, EscalationReason.RULE_INCONCLUSIVE),
        # above what rules may refund alone
        (
            replace(DELIVERED, unit_price=9_000, paid_amount=18_000),
            {"k1": Verdict.INVALID},
            EscalationReason.HIGH_VALUE,
        ),
    ],
)
def test_claims_the_rules_cannot_uphold_go_to_an_agent(
    facts: OrderFacts, verdicts: dict[str, Verdict] | None, reason: EscalationReason
) -> None:
    decision = decide(IssueCategory.KEY_INVALID, ("k1",), facts, NOW, verdicts, RULES)
    assert isinstance(decision, Escalate) and decision.reason is reason


def _opened(decision: AutoResolve | Escalate, facts: OrderFacts = DELIVERED) -> Ticket:
    return Ticket.open(
        "ticket-1",
        facts=facts,
        category=IssueCategory.KEY_INVALID,
        key_ids=("k1",),
        priority=2,
        opened_by="buyer",
        now=NOW,
        decision=decision,
        sla=SLA,
    )


def test_an_upheld_claim_is_opened_compensated_and_resolved_in_one_commit() -> None:
    ticket = _opened(AutoResolve(RULE_FAULTY_KEY, Resolution.REFUND_PARTIAL, 950, ("k1",)))
    kinds = [type(e) for e in ticket.pending_events]
    assert kinds == [TicketOpened, CompensationApproved, TicketResolved]
    compensation = ticket.pending_events[1]
    assert isinstance(compensation, CompensationApproved)
    assert (compensation.amount, compensation.void_key_ids) == (950, ["k1"])
    assert ticket.state is TicketState.RESOLVED and ticket.automatic
    opened = ticket.pending_events[0]
    assert isinstance(opened, TicketOpened) and opened.within_guarantee
    assert opened.product_id == "product-1"


def test_an_agent_refunds_part_of_an_escalated_ticket_within_what_is_refundable() -> None:
    ticket = _opened(Escalate("r", EscalationReason.RULE_INCONCLUSIVE, "why"))
    assert ticket.state is TicketState.ESCALATED and ticket.level is EscalationLevel.AGENT
    for bad in (None, 0, 1900, 5000):
        with pytest.raises(ClaimRefused):
            ticket.decide_by_agent(AgentAction.REFUND_PARTIAL, "agent-1", DELIVERED, amount=bad)
    ticket.decide_by_agent(AgentAction.REFUND_PARTIAL, "agent-1", DELIVERED, amount=400)
    compensation = ticket.pending_events[-2]
    assert isinstance(compensation, CompensationApproved)
    assert compensation.amount == 400 and compensation.void_key_ids == []
    assert ticket.resolution is Resolution.REFUND_PARTIAL and not ticket.automatic
    with pytest.raises(ClaimRefused) as again:
        ticket.decide_by_agent(AgentAction.REJECT, "agent-1", DELIVERED)
    assert again.value.code == "ticket_not_open"


def test_a_full_refund_by_an_agent_gives_back_what_is_left() -> None:
    ticket = _opened(Escalate("r", EscalationReason.RULE_INCONCLUSIVE, "why"))
    facts = replace(DELIVERED, refunds_requested=500)
    ticket.decide_by_agent(AgentAction.REFUND_FULL, "agent-1", facts)
    compensation = ticket.pending_events[-2]
    assert isinstance(compensation, CompensationApproved) and compensation.amount == 1400


def test_no_agent_decides_a_ticket_about_their_own_order() -> None:
    for party in ("buyer-1", "seller-1"):
        ticket = _opened(Escalate("r", EscalationReason.RULE_INCONCLUSIVE, "why"))
        for action in AgentAction:
            with pytest.raises(ClaimRefused) as refused:
                ticket.decide_by_agent(action, party, DELIVERED, amount=100)
            assert (refused.value.status, refused.value.code) == (403, "own_ticket")
        assert ticket.state is TicketState.ESCALATED
        assert not any(isinstance(e, TicketResolved) for e in ticket.pending_events)


def test_a_breached_sla_escalates_level_by_level_then_stops() -> None:
    ticket = _opened(Escalate("r", EscalationReason.RULE_INCONCLUSIVE, "why"))
    assert ticket.sla_due_at == NOW + SLA.agent
    assert not ticket.on_deadline(NOW + SLA.agent - timedelta(seconds=1), SLA)
    later = NOW + SLA.agent
    assert ticket.on_deadline(later, SLA)
    assert ticket.level is EscalationLevel.SENIOR_AGENT
    assert ticket.sla_due_at == later + SLA.senior_agent
    latest = later + SLA.senior_agent
    assert ticket.on_deadline(latest, SLA) and _level(ticket) is EscalationLevel.OPERATOR
    assert ticket.on_deadline(latest + SLA.operator, SLA)  # the breach is recorded once
    assert _level(ticket) is EscalationLevel.OPERATOR and ticket.sla_due_at is None
    assert not ticket.on_deadline(latest + 10 * SLA.operator, SLA)
    reasons = [e.reason for e in ticket.pending_events if isinstance(e, TicketEscalated)]
    assert reasons[1:] == [EscalationReason.SLA_BREACHED] * 3
    rebuilt = Ticket.rehydrate("ticket-1", ticket.pending_events)
    assert (rebuilt.level, rebuilt.sla_due_at, rebuilt.state) == (
        EscalationLevel.OPERATOR,
        None,
        TicketState.ESCALATED,
    )


def _level(ticket: Ticket) -> EscalationLevel | None:
    return ticket.level


POLICY = FlagPolicy(warning_bp=500, critical_bp=2000, min_orders=10)


def test_a_seller_is_flagged_once_per_severity_and_cleared_when_back_under() -> None:
    seller = Seller("seller-1")
    seller.review(IssueCounts(orders=9, tickets={IssueCategory.OTHER: 9}), POLICY)
    assert seller.pending_events == ()  # too few orders to judge
    seller.review(IssueCounts(orders=20, tickets={IssueCategory.WRONG_PRODUCT: 2}), POLICY)
    flagged = seller.pending_events
    assert len(flagged) == 1 and isinstance(flagged[0], SellerFlagged)
    assert (flagged[0].reason, flagged[0].severity, flagged[0].rate_basis_points) == (
        FlagReason.HIGH_CLAIM_RATE,
        "warning",
        1000,
    )
    seller.review(IssueCounts(orders=20, tickets={IssueCategory.WRONG_PRODUCT: 2}), POLICY)
    assert len(seller.pending_events) == 1  # unchanged: nothing new
    seller.review(IssueCounts(orders=20, tickets={IssueCategory.KEY_INVALID: 5}), POLICY)
    raised = seller.pending_events[1:]
    assert {(e.reason, e.severity) for e in raised if isinstance(e, SellerFlagged)} == {
        (FlagReason.HIGH_CLAIM_RATE, "critical"),
        (FlagReason.HIGH_INVALID_KEY_RATE, "critical"),
    }
    seller.review(IssueCounts(orders=200, tickets={IssueCategory.KEY_INVALID: 5}), POLICY)
    cleared = [e for e in seller.pending_events if isinstance(e, SellerFlagCleared)]
    assert {e.reason for e in cleared} == {
        FlagReason.HIGH_CLAIM_RATE,
        FlagReason.HIGH_INVALID_KEY_RATE,
    }
    assert Seller.rehydrate("seller-1", seller.pending_events).flags == {}


def test_an_offer_is_flagged_apart_from_its_seller() -> None:
    seller = Seller("seller-1")
    seller.review(
        IssueCounts(orders=10, tickets={IssueCategory.KEY_INVALID: 1}), POLICY, offer_id="o1"
    )
    events = [e for e in seller.pending_events if isinstance(e, SellerFlagged)]
    assert {(e.offer_id, e.severity) for e in events} == {("o1", "warning")}
    assert set(seller.flags) == {
        (FlagReason.HIGH_CLAIM_RATE, "o1"),
        (FlagReason.HIGH_INVALID_KEY_RATE, "o1"),
    }
