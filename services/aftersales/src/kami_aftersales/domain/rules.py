"""The automatic rules: what a claim gets without an agent (issue 6's tiers).

- "not received", but the keys are in the buyer's vault: point the buyer to
  the vault and send the delivery notification again;
- a faulty key within the guarantee window that the issuer's verifier calls
  used or invalid: refund the faulty keys at once (escrow or the seller's
  deposit, ordering and payment decide), void them;
- everything else, any claim after the window, an unverifiable key, and an
  upheld refund above the automatic limit: escalate to the agent queue.

Pure: verdicts come in from the verification adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from kami_aftersales.domain.claims import KEY_CATEGORIES, OrderFacts
from kami_events.catalogue.aftersales import EscalationReason, IssueCategory, Resolution


class Verdict(StrEnum):
    """What a product's issuer says about one key."""

    VALID = "valid"
    ALREADY_USED = "already_used"
    INVALID = "invalid"
    UNKNOWN = "unknown"


FAULTY = frozenset({Verdict.ALREADY_USED, Verdict.INVALID})

RULE_VAULT = "rule-vault-redirect"
RULE_FAULTY_KEY = "rule-verified-faulty-key"
RULE_ESCALATE = "rule-escalate"


@dataclass(frozen=True)
class RulesPolicy:
    # An upheld claim refunding more than this (fen) waits for an agent.
    auto_refund_max: int = 50_000


@dataclass(frozen=True)
class AutoResolve:
    rule: str
    resolution: Resolution
    refund: int = 0
    void_key_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Escalate:
    rule: str
    reason: EscalationReason
    why: str


RuleDecision = AutoResolve | Escalate


def needs_verification(category: IssueCategory, facts: OrderFacts, now: datetime) -> bool:
    """Whether the rules would act on the issuer's verdicts for this claim."""
    return category in KEY_CATEGORIES and facts.within_guarantee(now)


def decide(
    category: IssueCategory,
    claimed_keys: tuple[str, ...],
    facts: OrderFacts,
    now: datetime,
    verdicts: Mapping[str, Verdict] | None,
    policy: RulesPolicy,
) -> RuleDecision:
    if category is IssueCategory.NOT_RECEIVED:
        if facts.delivered and facts.delivered_key_ids:
            return AutoResolve(RULE_VAULT, Resolution.NOTIFICATION_RESENT)
        return Escalate(
            RULE_ESCALATE, EscalationReason.RULE_INCONCLUSIVE, "nothing delivered yet to point to"
        )
    if category not in KEY_CATEGORIES:
        return Escalate(
            RULE_ESCALATE, EscalationReason.RULE_INCONCLUSIVE, f"{category} needs an agent"
        )
    if not facts.within_guarantee(now):
        return Escalate(
            RULE_ESCALATE,
            EscalationReason.RULE_INCONCLUSIVE,
            "claimed after the guarantee window: a ticket for an agent, not an automatic refund",
        )
    if verdicts is None:
        return Escalate(
            RULE_ESCALATE, EscalationReason.RULE_INCONCLUSIVE, "the keys could not be verified"
        )
    faulty = tuple(k for k in claimed_keys if verdicts.get(k) in FAULTY)
    if not faulty:
        said = ", ".join(sorted({verdicts.get(k, Verdict.UNKNOWN).value for k in claimed_keys}))
        return Escalate(
            RULE_ESCALATE, EscalationReason.RULE_INCONCLUSIVE, f"the issuer says: {said}"
        )
    refund = min(facts.refundable, facts.unit_price * len(faulty))
    if refund > policy.auto_refund_max:
        return Escalate(
            RULE_ESCALATE,
            EscalationReason.HIGH_VALUE,
            f"an upheld refund of {refund} fen is above the automatic {policy.auto_refund_max}",
        )
    whole = refund == facts.paid_amount
    return AutoResolve(
        RULE_FAULTY_KEY,
        Resolution.REFUND_FULL if whole else Resolution.REFUND_PARTIAL,
        refund=refund,
        void_key_ids=faulty,
    )
