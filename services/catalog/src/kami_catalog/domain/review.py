"""Reviews (买家秀): a buyer with a completed order of an offer rates it, once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from uuid import NAMESPACE_URL, uuid5

from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.events import OfferReviewed
from kami_events.aggregate import Aggregate
from kami_events.event import Event

MAX_COMMENT_LENGTH = 1000
_REVIEW_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/catalog/review")


def review_id_for(offer_id: str, buyer_id: str) -> str:
    """One review stream per (offer, buyer): a second review finds it taken."""
    return str(uuid5(_REVIEW_NAMESPACE, f"{offer_id}/{buyer_id}"))


@dataclass(frozen=True)
class ReviewedOffer:
    offer_id: str
    product_id: str
    seller_id: str


class Review(Aggregate):
    aggregate_type: ClassVar[str] = "catalog.review"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.posted: OfferReviewed | None = None

    def post(
        self,
        *,
        buyer_id: str,
        offer: ReviewedOffer,
        completed_order_id: str | None,
        rating: int,
        comment: str | None,
    ) -> None:
        """`completed_order_id`: a completed order of this offer by this buyer, if any."""
        if self.posted is not None:
            raise Rejected.conflict("already_reviewed", "You have already reviewed this offer.")
        if completed_order_id is None:
            raise Rejected.forbidden(
                "review_not_allowed",
                "Only a buyer with a completed order of this offer can review it.",
            )
        if not 1 <= rating <= 5:
            raise Rejected.invalid("invalid_rating", "A rating is 1 to 5 stars.")
        text = comment.strip() if comment else None
        if text and len(text) > MAX_COMMENT_LENGTH:
            raise Rejected.invalid(
                "comment_too_long", f"A comment has at most {MAX_COMMENT_LENGTH} characters."
            )
        self._trigger(
            OfferReviewed(
                review_id=self.id,
                offer_id=offer.offer_id,
                product_id=offer.product_id,
                seller_id=offer.seller_id,
                buyer_id=buyer_id,
                order_id=completed_order_id,
                rating=rating,
                comment=text or None,
            )
        )

    def apply(self, event: Event) -> None:
        if isinstance(event, OfferReviewed):
            self.posted = event
        else:
            super().apply(event)
