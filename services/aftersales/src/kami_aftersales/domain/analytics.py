"""Issue rates and the flags they raise (issue 6, analytics).

A scope (a seller, or one offer of a seller) has, over a rolling window of
`window_days` UTC days (today and the days before it), orders delivered and
tickets opened by category. Two rates are watched:

- `high_claim_rate`: every ticket, per delivered order;
- `high_invalid_key_rate`: tickets about a faulty key (invalid, used, expired).

Over `warning_bp` the scope is flagged `warning` (catalog demotes its offers
in search), over `critical_bp` `critical` (catalog delists them). Fewer than
`min_orders` delivered orders say nothing either way. A flag is cleared once
the rate is back under the warning threshold.

The `Seller` aggregate (`aftersales.seller`, id = seller id) remembers which
flags are up, so each change is published once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from kami_aftersales.domain.claims import KEY_CATEGORIES
from kami_events.aggregate import Aggregate
from kami_events.catalogue.aftersales import (
    FlagReason,
    IssueCategory,
    SellerFlagCleared,
    SellerFlagged,
)
from kami_events.event import Event

BASIS_POINTS = 10_000
Severity = Literal["warning", "critical"]
WATCHED = (FlagReason.HIGH_CLAIM_RATE, FlagReason.HIGH_INVALID_KEY_RATE)


@dataclass(frozen=True)
class FlagPolicy:
    warning_bp: int = 500
    critical_bp: int = 2_000
    min_orders: int = 20
    window_days: int = 7


@dataclass(frozen=True)
class IssueCounts:
    """Orders delivered and tickets opened (by category) in one window."""

    orders: int = 0
    tickets: Mapping[IssueCategory, int] = field(default_factory=dict)

    def claims(self, reason: FlagReason) -> int:
        if reason is FlagReason.HIGH_INVALID_KEY_RATE:
            return sum(n for c, n in self.tickets.items() if c in KEY_CATEGORIES)
        return sum(self.tickets.values())

    def rate_bp(self, reason: FlagReason) -> int:
        if not self.orders:
            return 0
        return min(BASIS_POINTS, self.claims(reason) * BASIS_POINTS // self.orders)


def severity_of(counts: IssueCounts, reason: FlagReason, policy: FlagPolicy) -> Severity | None:
    rate = counts.rate_bp(reason)
    if rate > policy.critical_bp:
        return "critical"
    if rate > policy.warning_bp:
        return "warning"
    return None


FlagKey = tuple[FlagReason, str | None]  # (reason, offer id or None for the whole seller)


class Seller(Aggregate):
    aggregate_type: ClassVar[str] = "aftersales.seller"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.flags: dict[FlagKey, Severity] = {}

    def review(
        self, counts: IssueCounts, policy: FlagPolicy, *, offer_id: str | None = None
    ) -> None:
        """Raise, change or clear the flags of one scope from its counts."""
        if counts.orders < policy.min_orders:
            return  # too few orders to judge: flags stay as they are
        for reason in WATCHED:
            key = (reason, offer_id)
            severity = severity_of(counts, reason, policy)
            current = self.flags.get(key)
            if severity is not None and severity != current:
                self._trigger(
                    SellerFlagged(
                        seller_id=self.id,
                        reason=reason,
                        severity=severity,
                        window_days=policy.window_days,
                        orders=counts.orders,
                        upheld_claims=counts.claims(reason),
                        rate_basis_points=counts.rate_bp(reason),
                        offer_id=offer_id,
                    )
                )
            elif severity is None and current is not None:
                self._trigger(
                    SellerFlagCleared(
                        seller_id=self.id,
                        reason=reason,
                        window_days=policy.window_days,
                        orders=counts.orders,
                        upheld_claims=counts.claims(reason),
                        rate_basis_points=counts.rate_bp(reason),
                        offer_id=offer_id,
                    )
                )

    def apply(self, event: Event) -> None:
        match event:
            case SellerFlagged():
                self.flags[(event.reason, event.offer_id)] = event.severity
            case SellerFlagCleared():
                self.flags.pop((event.reason, event.offer_id), None)
            case _:
                super().apply(event)
