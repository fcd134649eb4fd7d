"""A card key's life in its pool, as guarded transitions.

    available ──reserve──▶ reserved ──sell──▶ sold
        ▲                     │                 │
        └──────release────────┘                 │
    available ──block──▶ blocked                │
    available / reserved / sold ──void──▶ voided ◀┘

A replacement key (after-sales) takes the same road with a holder of its
own: available ──hold──▶ reserved (for the ticket) ──sell──▶ sold (to the
order), so the order's own reservation bookkeeping never sees it half-way.

Each key carries a generation number `gen` that grows by one with every
transition. A transition is decided for one generation only (the adapter
claims `key@gen` exactly once), so two orders can never both take a key, and
a state read at an old generation can never be acted on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from kami_events.catalogue.inventory import BlockReason, VoidReason


class KeyStatus(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    SOLD = "sold"
    BLOCKED = "blocked"
    VOIDED = "voided"


@dataclass(frozen=True)
class PoolKey:
    """What inventory knows about one key, without its secret."""

    key_id: str
    offer_id: str
    status: KeyStatus
    gen: int
    expires_at: datetime
    order_id: str | None = None
    reserved_until: datetime | None = None
    reason: str | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now


@dataclass(frozen=True)
class Transition:
    """One guarded move: from which states, to which, and for which order."""

    name: str
    sources: frozenset[KeyStatus]
    target: KeyStatus
    # The key must already belong to this order (release, sell, void of an order).
    for_order: str | None = None
    # The order the key belongs to afterwards (None clears it).
    order_id: str | None = None
    reserved_until: datetime | None = None
    reason: str | None = None

    def allows(self, key: PoolKey) -> bool:
        if key.status not in self.sources:
            return False
        return self.for_order is None or key.order_id == self.for_order

    def apply(self, key: PoolKey) -> PoolKey:
        """The key after this transition (the caller checked `allows`)."""
        if not self.allows(key):
            raise ValueError(f"{self.name} does not apply to a {key.status} key")
        return replace(
            key,
            status=self.target,
            gen=key.gen + 1,
            order_id=self.order_id,
            reserved_until=self.reserved_until,
            reason=self.reason,
        )


def reserve(order_id: str, until: datetime) -> Transition:
    return Transition(
        "reserve",
        frozenset({KeyStatus.AVAILABLE}),
        KeyStatus.RESERVED,
        order_id=order_id,
        reserved_until=until,
    )


def release(order_id: str) -> Transition:
    """Back to the pool: the order was cancelled, or its reservation was put back."""
    return Transition(
        "release", frozenset({KeyStatus.RESERVED}), KeyStatus.AVAILABLE, for_order=order_id
    )


def sell(order_id: str) -> Transition:
    return Transition(
        "sell",
        frozenset({KeyStatus.RESERVED}),
        KeyStatus.SOLD,
        for_order=order_id,
        order_id=order_id,
    )


def replacement_holder(ticket_id: str) -> str:
    """Whom a key held for a replacement belongs to until it is sold."""
    return f"replacement:{ticket_id}"


def hold_for_replacement(ticket_id: str, until: datetime) -> Transition:
    return Transition(
        "reserve",
        frozenset({KeyStatus.AVAILABLE}),
        KeyStatus.RESERVED,
        order_id=replacement_holder(ticket_id),
        reserved_until=until,
    )


def sell_replacement(ticket_id: str, order_id: str) -> Transition:
    return Transition(
        "sell",
        frozenset({KeyStatus.RESERVED}),
        KeyStatus.SOLD,
        for_order=replacement_holder(ticket_id),
        order_id=order_id,
    )


def void_for_order(order_id: str, reason: VoidReason) -> Transition:
    """An order's key must never be sold again (refund, chargeback, bad key)."""
    return Transition(
        "void",
        frozenset({KeyStatus.RESERVED, KeyStatus.SOLD}),
        KeyStatus.VOIDED,
        for_order=order_id,
        order_id=order_id,
        reason=reason.value,
    )


def void_by_seller() -> Transition:
    """A seller withdraws a key nobody holds."""
    return Transition(
        "void",
        frozenset({KeyStatus.AVAILABLE}),
        KeyStatus.VOIDED,
        reason=VoidReason.SELLER_VOIDED.value,
    )


def block(reason: BlockReason) -> Transition:
    return Transition(
        "block", frozenset({KeyStatus.AVAILABLE}), KeyStatus.BLOCKED, reason=reason.value
    )


# Shorter secrets show nothing: four characters of an eight-character key give
# too much of it away.
HINT_MIN_LENGTH = 12


def secret_hint(secret: str) -> str | None:
    """At most the last four characters, for a seller to recognise a key."""
    if len(secret) < HINT_MIN_LENGTH:
        return None
    return "…" + secret[-4:]
