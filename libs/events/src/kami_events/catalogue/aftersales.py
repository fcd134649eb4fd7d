"""Events of the aftersales service: tickets, compensations, seller issues.

Two aggregates, two topics:

- `aftersales.ticket` (`kami.aftersales.ticket.v1`): one buyer's claim about
  one order (aggregate id = ticket id; every event also names the order).
- `aftersales.seller` (`kami.aftersales.seller.v1`): after-sales' view of a
  seller's issues (aggregate id = seller id).

The buyer's free-text description stays in aftersales: a buyer may paste the
key itself into it, and no key travels in an event.
Main consumers: ordering (refunds within the guarantee window), payment,
catalog (seller reliability).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from kami_events.catalogue.common import (
    AggregateEvent,
    Count,
    Id,
    KeyIds,
    Priority,
    UtcDatetime,
)
from kami_events.money import CNY, Currency, PositiveFen

TicketKeyIds = Annotated[list[Id], Field(max_length=1000)]


class IssueCategory(StrEnum):
    KEY_INVALID = "key_invalid"
    KEY_ALREADY_USED = "key_already_used"
    KEY_EXPIRED = "key_expired"
    WRONG_PRODUCT = "wrong_product"
    WRONG_AMOUNT = "wrong_amount"
    NOT_RECEIVED = "not_received"
    OTHER = "other"


class EscalationLevel(StrEnum):
    AGENT = "agent"
    SENIOR_AGENT = "senior_agent"
    OPERATOR = "operator"


class EscalationReason(StrEnum):
    # No auto-resolution rule could decide the ticket.
    RULE_INCONCLUSIVE = "rule_inconclusive"
    SLA_BREACHED = "sla_breached"
    BUYER_DISPUTED = "buyer_disputed"
    HIGH_VALUE = "high_value"
    REPEAT_ISSUE = "repeat_issue"


class Resolution(StrEnum):
    REFUND_FULL = "refund_full"
    REFUND_PARTIAL = "refund_partial"
    KEY_REPLACED = "key_replaced"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    # "Not received", but the keys are in the buyer's vault: the buyer is
    # pointed to it and the delivery notification is sent again.
    NOTIFICATION_RESENT = "notification_resent"


class Remedy(StrEnum):
    """What a buyer asks for when a claim about a faulty key is upheld."""

    REFUND = "refund"
    # Another key of the same offer from the seller's pool, when it has one.
    REPLACEMENT = "replacement"


class FlagReason(StrEnum):
    HIGH_INVALID_KEY_RATE = "high_invalid_key_rate"
    HIGH_CLAIM_RATE = "high_claim_rate"
    DUPLICATE_KEYS = "duplicate_keys"
    CHARGEBACK_RATE = "chargeback_rate"


class TicketEvent(AggregateEvent):
    """A buyer's claim about one order (aggregate `aftersales.ticket`, id = ticket
    id). Main consumers: ordering (refunds within the guarantee window), payment,
    catalog (seller reliability)."""

    abstract = True
    aggregate_type: ClassVar[str] = "aftersales.ticket"
    aggregate_id_field: ClassVar[str] = "ticket_id"

    ticket_id: Id
    order_id: Id


class TicketOpened(TicketEvent):
    """A buyer (or an agent on their behalf) opened a claim about an order.
    Consumed by ordering (an open claim holds the order from completing),
    catalog (seller reliability)."""

    buyer_id: Id
    seller_id: Id
    offer_id: Id
    category: IssueCategory
    key_ids: TicketKeyIds = Field(description="The keys the claim is about (may be empty).")
    within_guarantee: bool
    priority: Priority = Field(description="From the buyer's KYC tier (`IdentityVerified`).")
    opened_by: Literal["buyer", "support"]
    product_id: Id | None = Field(
        default=None, description="The ordered product (for issue analytics per product)."
    )
    sla_due_at: UtcDatetime | None = Field(
        default=None, description="When the ticket must be decided by, before it escalates."
    )
    preferred_remedy: Remedy | None = Field(
        default=None,
        description=(
            "What the buyer asked for if the claim is upheld: a refund, or a replacement key "
            "(given when the offer's pool has one). Null: not asked (a refund)."
        ),
    )


class TicketEscalated(TicketEvent):
    """The ticket moved up to `level`, out of the automatic rules or to a more
    senior queue. Consumed by aftersales dashboards, BI."""

    level: EscalationLevel
    reason: EscalationReason
    sla_due_at: UtcDatetime | None = Field(
        default=None,
        description="When the ticket must be decided by at this level (null: no further level).",
    )


class TicketResolved(TicketEvent):
    """The ticket was decided. A refund is carried out through
    `CompensationApproved` (money), in the same commit; `key_replaced` comes
    once the replacement keys are in the buyer's vault (`ReplacementApproved`,
    then inventory and delivery). Consumed by ordering (lets the order
    complete), catalog (seller reliability)."""

    resolution: Resolution
    resolved_by: Id = Field(description="The agent's user id, or the auto-resolution rule's id.")
    automatic: bool
    category: IssueCategory | None = Field(
        default=None, description="The ticket's category, repeated for consumers (analytics)."
    )


class CompensationApproved(TicketEvent):
    """After-sales approved giving the buyer `amount` for the order. Consumed by
    ordering (requests the refund, from escrow or from the seller's deposit) and
    payment."""

    buyer_id: Id
    seller_id: Id
    amount: PositiveFen
    currency: Currency = CNY
    void_key_ids: TicketKeyIds = Field(description="Faulty keys that must be voided.")
    approved_by: Id


class ReplacementApproved(TicketEvent):
    """After-sales approved replacing the faulty `key_ids` of the order with as
    many keys of the same offer's pool (`ticket_id` stays open until they are
    delivered). The buyer paid for working keys and gets them: no money moves.
    Consumed by inventory (allocates the keys, voids the faulty ones; if the
    pool cannot supply them, `KeyReplacementFailed` and after-sales refunds
    instead)."""

    buyer_id: Id
    seller_id: Id
    offer_id: Id
    key_ids: KeyIds = Field(description="The faulty keys to replace; they are voided.")
    approved_by: Id = Field(description="The agent's user id, or the auto-resolution rule's id.")


class SellerEvent(AggregateEvent):
    """After-sales' findings about a seller's issue rates (aggregate
    `aftersales.seller`, id = seller id). Main consumers: catalog (reliability,
    delisting), identity operators, payment."""

    abstract = True
    aggregate_type: ClassVar[str] = "aftersales.seller"
    aggregate_id_field: ClassVar[str] = "seller_id"

    seller_id: Id


class SellerFlagged(SellerEvent):
    """The seller's issue rate over the last `window_days` crossed a threshold.
    With `offer_id`, the rate is that one offer's. Raised again when the
    severity changes. Consumed by catalog (demoted in search on `warning`;
    delisted on `critical`), identity operators (possible suspension), payment."""

    reason: FlagReason
    severity: Literal["warning", "critical"]
    window_days: Annotated[int, Field(ge=1, le=365, strict=True)]
    orders: Count
    upheld_claims: Count
    rate_basis_points: Annotated[int, Field(ge=0, le=10_000, strict=True)] = Field(
        description="The measured rate of `reason`, in 1/10000 (250 = 2.5%)."
    )
    offer_id: Id | None = Field(
        default=None, description="The one offer whose rate crossed it; null: the whole seller."
    )


class SellerFlagCleared(SellerEvent):
    """The rate behind an earlier `SellerFlagged` (same `reason` and `offer_id`)
    fell back under the warning threshold. Consumed by catalog (the seller's
    offers are promoted or relisted again)."""

    reason: FlagReason
    window_days: Annotated[int, Field(ge=1, le=365, strict=True)]
    orders: Count
    upheld_claims: Count
    rate_basis_points: Annotated[int, Field(ge=0, le=10_000, strict=True)]
    offer_id: Id | None = None
