"""The automatic rules: what a claim gets without an agent (issue 6's tiers).

- "not received", but the keys are in the buyer's vault: point the buyer to
  the vault and send the delivery notification again;
- a faulty key within the guarantee window that the issuer's verifier calls
  used or invalid: refund the faulty keys at once (escrow or the seller's
  deposit, ordering and payment decide), void them; or, when the buyer
  asked for a replacement and the offer's pool has a key for each faulty
  one, replace them from the pool (inventory and delivery carry it out; if
  the pool runs dry meanwhile, the ticket falls back to the refund);
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
from kami_events.catalogue.aftersales import EscalationReason, IssueCategory, Remedy, Resolution


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
class Replace:
    """Replace `key_ids` with keys of the offer's pool; no money moves."""

    rule: str
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class Escalate:
    rule: str
    reason: EscalationReason
    why: str


RuleDecision = AutoResolve | Replace | Escalate


def refund_for_keys(facts: OrderFacts, keys: int) -> tuple[int, Resolution]:
    """What refunding `keys` faulty keys gives back (their price, at most what
    is left of the payment), and whether that is all of it."""
    refund = min(facts.refundable, facts.unit_price * keys)
    whole = refund >= facts.refundable
    return refund, Resolution.REFUND_FULL if whole else Resolution.REFUND_PARTIAL


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
    *,
    preferred: Remedy = Remedy.REFUND,
    stock_available: int = 0,
) -> RuleDecision:
    """`stock_available`: the offer's pool's sellable keys, as inventory last
    announced them; a replacement needs one for each faulty key."""
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
    refund, resolution = refund_for_keys(facts, len(faulty))
    # A replacement is worth as much as the refund it stands for (and falls
    # back to it): the same limit holds.
    if refund > policy.auto_refund_max:
        return Escalate(
            RULE_ESCALATE,
            EscalationReason.HIGH_VALUE,
            f"an upheld refund of {refund} fen is above the automatic {policy.auto_refund_max}",
        )
    if preferred is Remedy.REPLACEMENT and stock_available >= len(faulty):
        return Replace(RULE_FAULTY_KEY, faulty)
    return AutoResolve(RULE_FAULTY_KEY, resolution, refund=refund, void_key_ids=faulty)
