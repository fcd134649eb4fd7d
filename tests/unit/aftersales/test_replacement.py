"""Replacement keys in the aftersales domain (issue 6): the rule follows the
buyer's choice and the pool's stock; an agent may replace; a ticket waits
for the keys and falls back to the refund when the pool runs dry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kami_aftersales.domain.claims import ClaimRefused
from kami_aftersales.domain.rules import (
    RULE_FAULTY_KEY,
    AutoResolve,
    Escalate,
    Replace,
    Verdict,
    decide,
)
from kami_aftersales.domain.ticket import AgentAction, Ticket, TicketState
from kami_events.catalogue.aftersales import (
    CompensationApproved,
    EscalationReason,
    IssueCategory,
    Remedy,
    ReplacementApproved,
    Resolution,
    TicketOpened,
    TicketResolved,
)
from tests.unit.aftersales.test_domain import DELIVERED, NOW, RULES, SLA

INVALID = {"k1": Verdict.INVALID, "k2": Verdict.VALID}


def _decide(preferred: Remedy, stock: int) -> AutoResolve | Replace | Escalate:
    return decide(
        IssueCategory.KEY_INVALID,
        ("k1", "k2"),
        DELIVERED,
        NOW,
        INVALID,
        RULES,
        preferred=preferred,
        stock_available=stock,
    )


def test_the_rule_replaces_when_the_buyer_chose_it_and_the_pool_has_a_key() -> None:
    assert _decide(Remedy.REPLACEMENT, stock=1) == Replace(RULE_FAULTY_KEY, ("k1",))


@pytest.mark.parametrize(("preferred", "stock"), [(Remedy.REPLACEMENT, 0), (Remedy.REFUND, 5)])
def test_the_rule_refunds_when_the_pool_is_empty_or_the_buyer_wants_money(
    preferred: Remedy, stock: int
) -> None:
    assert _decide(preferred, stock) == AutoResolve(
        RULE_FAULTY_KEY, Resolution.REFUND_PARTIAL, refund=950, void_key_ids=("k1",)
    )


def test_a_replacement_needs_a_key_for_each_faulty_key_and_stays_within_the_limit() -> None:
    both = {"k1": Verdict.INVALID, "k2": Verdict.ALREADY_USED}
    one_short = decide(
        IssueCategory.KEY_INVALID,
        ("k1", "k2"),
        DELIVERED,
        NOW,
        both,
        RULES,
        preferred=Remedy.REPLACEMENT,
        stock_available=1,
    )
    assert isinstance(one_short, AutoResolve) and one_short.refund == 1900
    pricey = replace(DELIVERED, unit_price=9_000, paid_amount=18_000)
    high = decide(
        IssueCategory.KEY_INVALID,
        ("k1",),
        pricey,
        NOW,
        INVALID,
        RULES,
        preferred=Remedy.REPLACEMENT,
        stock_available=10,
    )
    assert isinstance(high, Escalate) and high.reason is EscalationReason.HIGH_VALUE


def _opened_replacing() -> Ticket:
    return Ticket.open(
        "ticket-1",
        facts=DELIVERED,
        category=IssueCategory.KEY_INVALID,
        key_ids=("k1", "k2"),
        priority=0,
        opened_by="buyer",
        now=NOW,
        decision=Replace(RULE_FAULTY_KEY, ("k1",)),
        sla=SLA,
        preferred_remedy=Remedy.REPLACEMENT,
    )


def test_an_automatic_replacement_waits_for_the_keys_then_is_resolved_once() -> None:
    ticket = _opened_replacing()
    opened, approved = ticket.pending_events
    assert isinstance(opened, TicketOpened) and opened.preferred_remedy is Remedy.REPLACEMENT
    assert approved == ReplacementApproved(
        ticket_id="ticket-1",
        order_id="order-1",
        buyer_id="buyer-1",
        seller_id="seller-1",
        offer_id="offer-1",
        key_ids=["k1"],
        approved_by=RULE_FAULTY_KEY,
    )
    assert ticket.state is TicketState.REPLACING and ticket.compensation is None
    with pytest.raises(ClaimRefused) as busy:
        ticket.decide_by_agent(AgentAction.REFUND_FULL, "agent-1", DELIVERED)
    assert busy.value.code == "ticket_not_open"

    assert ticket.replacement_delivered()
    resolved = ticket.pending_events[-1]
    assert isinstance(resolved, TicketResolved)
    assert (resolved.resolution, resolved.resolved_by, resolved.automatic) == (
        Resolution.KEY_REPLACED,
        RULE_FAULTY_KEY,
        True,
    )
    assert not ticket.replacement_delivered()  # a redelivery changes nothing
    assert not ticket.replacement_unavailable(DELIVERED)
    assert not any(isinstance(e, CompensationApproved) for e in ticket.pending_events)
    rebuilt = Ticket.rehydrate("ticket-1", ticket.pending_events)
    assert (rebuilt.state, rebuilt.resolution) == (TicketState.RESOLVED, Resolution.KEY_REPLACED)


def test_a_pool_that_ran_dry_refunds_the_faulty_keys_instead() -> None:
    ticket = _opened_replacing()

    assert ticket.replacement_unavailable(DELIVERED)

    compensation, resolved = ticket.pending_events[-2:]
    assert isinstance(compensation, CompensationApproved)
    assert (compensation.amount, compensation.void_key_ids) == (950, ["k1"])
    assert compensation.approved_by == RULE_FAULTY_KEY
    assert isinstance(resolved, TicketResolved)
    assert (resolved.resolution, resolved.automatic) == (Resolution.REFUND_PARTIAL, True)
    assert not ticket.replacement_unavailable(DELIVERED)
    assert not ticket.replacement_delivered()


def test_an_order_refunded_meanwhile_is_resolved_without_a_second_refund() -> None:
    ticket = _opened_replacing()
    assert ticket.replacement_unavailable(replace(DELIVERED, refunds_requested=1900))
    assert not any(isinstance(e, CompensationApproved) for e in ticket.pending_events)
    assert ticket.state is TicketState.RESOLVED


def _escalated() -> Ticket:
    return Ticket.open(
        "ticket-2",
        facts=DELIVERED,
        category=IssueCategory.OTHER,
        key_ids=("k2",),
        priority=0,
        opened_by="buyer",
        now=NOW,
        decision=Escalate("r", EscalationReason.RULE_INCONCLUSIVE, "why"),
        sla=SLA,
    )


def test_an_agent_replaces_the_tickets_keys_when_the_pool_has_them() -> None:
    ticket = _escalated()
    with pytest.raises(ClaimRefused) as empty:
        ticket.decide_by_agent(AgentAction.REPLACE, "agent-1", DELIVERED, stock_available=0)
    assert (empty.value.status, empty.value.code) == (409, "out_of_stock")

    ticket.decide_by_agent(AgentAction.REPLACE, "agent-1", DELIVERED, stock_available=3)

    approved = ticket.pending_events[-1]
    assert isinstance(approved, ReplacementApproved)
    assert (approved.key_ids, approved.approved_by) == (["k2"], "agent-1")
    assert ticket.state is TicketState.REPLACING and ticket.sla_due_at is None
    assert ticket.replacement_delivered()
    resolved = ticket.pending_events[-1]
    assert isinstance(resolved, TicketResolved)
    assert (resolved.resolved_by, resolved.automatic) == ("agent-1", False)


def test_an_agent_cannot_replace_keys_the_buyer_no_longer_holds_or_a_refunded_order() -> None:
    ticket = _escalated()
    replaced_meanwhile = replace(DELIVERED, delivered_key_ids=("k1", "k9"))
    with pytest.raises(ClaimRefused) as gone:
        ticket.decide_by_agent(
            AgentAction.REPLACE, "agent-1", replaced_meanwhile, stock_available=3
        )
    assert gone.value.code == "keys_not_replaceable"
    refunded = replace(DELIVERED, refunds_requested=1900)
    with pytest.raises(ClaimRefused) as done:
        ticket.decide_by_agent(AgentAction.REPLACE, "agent-1", refunded, stock_available=3)
    assert done.value.code == "order_refunded"
    assert ticket.state is TicketState.ESCALATED
