"""Price comparison: every live offer of a product side by side, each seller's
reliability, and the best value marked.

Best value is the cheapest offer among sellers who look reliable; when no
seller does, the cheapest offer overall. Ties go to the better-rated seller,
then the higher delivery success rate, then more stock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kami_events.catalogue.common import DeliveryMode

BASIS_POINTS = 10_000


@dataclass(frozen=True)
class ReliabilityPolicy:
    min_delivery_success_bp: int = 9_500
    max_ticket_rate_bp: int = 500
    min_rating_milli: int = 4_000
    # Fewer reviews than this say nothing about a seller either way.
    min_reviews: int = 3


@dataclass(frozen=True)
class SellerReliability:
    """Counts from delivery, aftersales and review events for one seller."""

    deliveries_succeeded: int = 0
    deliveries_failed: int = 0
    tickets_opened: int = 0
    completed_orders: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    flagged: str | None = None  # the severity of the latest `SellerFlagged`

    @property
    def delivery_success_bp(self) -> int | None:
        attempts = self.deliveries_succeeded + self.deliveries_failed
        return self.deliveries_succeeded * BASIS_POINTS // attempts if attempts else None

    @property
    def ticket_rate_bp(self) -> int | None:
        """Tickets opened per delivered order, in basis points."""
        if not self.deliveries_succeeded:
            return None
        return min(BASIS_POINTS, self.tickets_opened * BASIS_POINTS // self.deliveries_succeeded)

    @property
    def rating_milli(self) -> int | None:
        """The average rating in thousandths of a star (4.5 stars = 4500)."""
        return self.rating_sum * 1000 // self.rating_count if self.rating_count else None

    def reliable(self, policy: ReliabilityPolicy) -> bool:
        if self.flagged is not None:
            return False
        success = self.delivery_success_bp
        if success is not None and success < policy.min_delivery_success_bp:
            return False
        tickets = self.ticket_rate_bp
        if tickets is not None and tickets > policy.max_ticket_rate_bp:
            return False
        rating = self.rating_milli
        return not (
            rating is not None
            and self.rating_count >= policy.min_reviews
            and rating < policy.min_rating_milli
        )


@dataclass(frozen=True)
class OfferLine:
    """One live offer as the comparison shows it. `stock` is None for manual
    delivery, where the seller delivers on demand and keeps no key pool."""

    offer_id: str
    seller_id: str
    unit_price: int
    stock: int | None
    delivery_mode: DeliveryMode
    reliability: SellerReliability


def best_value(lines: Sequence[OfferLine], policy: ReliabilityPolicy) -> str | None:
    """The offer id to mark as the best value, or None when there is no offer."""
    if not lines:
        return None
    reliable = [line for line in lines if line.reliability.reliable(policy)]
    pool = reliable or list(lines)

    def rank(line: OfferLine) -> tuple[int, int, int, int, str]:
        r = line.reliability
        stock = line.stock if line.stock is not None else BASIS_POINTS * BASIS_POINTS
        return (
            line.unit_price,
            -(r.rating_milli or 0),
            -(r.delivery_success_bp or 0),
            -stock,
            line.offer_id,
        )

    return min(pool, key=rank).offer_id
