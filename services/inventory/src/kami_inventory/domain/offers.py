"""What inventory knows of catalog's offers and products: who owns a pool, and
whether it may sell. Built from catalog's events (`OfferListed`,
`OfferDelisted`, `OfferPriceChanged`, `ProductPublished`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.inventory import ReservationFailure
from kami_events.catalogue.ordering import OrderPlaced


@dataclass(frozen=True)
class Offer:
    offer_id: str
    seller_id: str
    product_id: str
    # Unknown until the offer's `OfferListed` arrives.
    delivery_mode: DeliveryMode | None
    listed: bool

    def owned_by(self, seller_id: str) -> bool:
        return self.seller_id == seller_id


@dataclass(frozen=True)
class Product:
    product_id: str
    validity: timedelta | None


class OfferNotFound(Exception):
    """No offer of that id is known (catalog never listed it)."""


class NotYourOffer(Exception):
    """The offer belongs to another seller."""


class NotAnAutoDeliveryOffer(Exception):
    """Keys are only held for offers delivered automatically."""


def offer_for_seller(offer: Offer | None, offer_id: str, seller_id: str) -> Offer:
    """The offer, if `seller_id` may manage its pool."""
    if offer is None:
        raise OfferNotFound(offer_id)
    if not offer.owned_by(seller_id):
        raise NotYourOffer(offer_id)
    return offer


def refusal(offer: Offer | None, order: OrderPlaced) -> ReservationFailure | None:
    """Why no keys may be reserved for `order`, or None if they may."""
    if offer is None or offer.seller_id != order.seller_id:
        return ReservationFailure.UNKNOWN_OFFER
    if not offer.listed:
        return ReservationFailure.OFFER_DELISTED
    return None
