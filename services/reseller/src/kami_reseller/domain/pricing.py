"""A reseller's price for an offer: the offer's price plus the reseller's markup.

Which offers a reseller may resell: every offer catalog has listed and not
delisted (its read model of `OfferListed` / `OfferPriceChanged` /
`OfferDelisted`), auto-delivered ones only, since a reseller fetches keys over
the API and a manual (account top-up) offer has none to fetch. The markup is
the reseller's per-offer markup if it set one, else its default; in basis
points of the offer price, rounded up to the fen so the margin is never
negative and never a fraction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

BASIS_POINTS = 10_000


@dataclass(frozen=True)
class ResellerPrice:
    offer_price: int
    markup_bp: int

    @property
    def unit_price(self) -> int:
        return self.offer_price + self.margin_per_unit

    @property
    def margin_per_unit(self) -> int:
        # Ceiling division in integers: never a float for money.
        return -(-self.offer_price * self.markup_bp // BASIS_POINTS)


def markup_for(offer_id: str, default_bp: int, per_offer: Mapping[str, int]) -> int:
    return per_offer.get(offer_id, default_bp)


def price_of(
    offer_id: str, offer_price: int, default_bp: int, per_offer: Mapping[str, int]
) -> ResellerPrice:
    if offer_price <= 0:
        raise ValueError("an offer's price is positive")
    return ResellerPrice(offer_price, markup_for(offer_id, default_bp, per_offer))
