"""What a buyer may order: the offer and product terms ordering keeps from
catalog's events, and the checks a new order must pass against them.

Pure: the terms come from the read model, the request from the buyer; the
price is always the offer's, never the client's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from kami_events.catalogue.common import DeliveryMode
from kami_events.money import Money

# A buyer field's value (an account id, a server name): long enough for any
# account id, short enough to show to a seller and to fit the event (200).
MAX_BUYER_FIELD_LENGTH = 128


@dataclass(frozen=True)
class BuyerFieldRule:
    """One value an account-bound product asks the buyer for."""

    name: str
    pattern: str | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProductTerms:
    product_id: str
    name: str
    kind: str
    face_value: int | None
    buyer_fields: tuple[BuyerFieldRule, ...] = ()
    category_id: str | None = None


@dataclass(frozen=True)
class OfferTerms:
    offer_id: str
    product_id: str
    seller_id: str
    unit_price: Money
    delivery_mode: DeliveryMode
    manual_delivery_sla: timedelta | None
    guarantee_window: timedelta
    max_quantity: int
    min_quantity: int = 1
    listed: bool = True


class RefusalKind(StrEnum):
    NOT_FOUND = "not_found"  # nothing by that id
    UNAVAILABLE = "unavailable"  # it exists but cannot be ordered now
    INVALID = "invalid"  # the request itself is wrong
    FORBIDDEN = "forbidden"  # this buyer may not order
    EXHAUSTED = "exhausted"  # a limit is reached: a flash sale sold out, a coupon used up


class PlacementRefused(Exception):
    """The order cannot be placed; `code` is stable for clients, `message` for humans."""

    def __init__(self, kind: RefusalKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


def check_orderable(
    offer: OfferTerms | None, product: ProductTerms | None, offer_id: str
) -> tuple[OfferTerms, ProductTerms]:
    if offer is None:
        raise PlacementRefused(
            RefusalKind.NOT_FOUND, "offer_not_found", f"There is no offer {offer_id}."
        )
    if not offer.listed:
        raise PlacementRefused(
            RefusalKind.UNAVAILABLE, "offer_not_available", "The offer is not on sale."
        )
    if product is None:
        raise PlacementRefused(
            RefusalKind.UNAVAILABLE,
            "offer_not_available",
            "The offer's product is not published yet.",
        )
    return offer, product


def check_quantity(offer: OfferTerms, quantity: int) -> None:
    if not offer.min_quantity <= quantity <= offer.max_quantity:
        raise PlacementRefused(
            RefusalKind.INVALID,
            "quantity_out_of_range",
            f"This offer sells {offer.min_quantity} to {offer.max_quantity} keys per order; "
            f"{quantity} were asked for.",
        )


def clean_buyer_fields(product: ProductTerms, given: Mapping[str, str]) -> dict[str, str]:
    """The buyer's values for the product's required fields, trimmed and checked:
    every required field present, no other field, each value a sensible length
    and matching the field's pattern or choices."""
    required = {rule.name: rule for rule in product.buyer_fields}
    problems: list[str] = []
    missing = [name for name in required if name not in given]
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    unexpected = sorted(name for name in given if name not in required)
    if unexpected:
        problems.append(f"not asked for by this product: {', '.join(unexpected)}")
    cleaned: dict[str, str] = {}
    for name, rule in required.items():
        if name not in given:
            continue
        value = given[name].strip()
        if not value:
            problems.append(f"{name} is empty")
        elif len(value) > MAX_BUYER_FIELD_LENGTH:
            problems.append(f"{name} is longer than {MAX_BUYER_FIELD_LENGTH} characters")
        elif any(unicodedata.category(char).startswith("C") for char in value):
            problems.append(f"{name} contains control characters")
        elif rule.choices and value not in rule.choices:
            problems.append(f"{name} must be one of: {', '.join(rule.choices)}")
        elif rule.pattern is not None and re.fullmatch(rule.pattern, value) is None:
            problems.append(f"{name} does not have the expected format")
        else:
            cleaned[name] = value
    if problems:
        raise PlacementRefused(
            RefusalKind.INVALID, "buyer_fields_invalid", "Buyer fields: " + "; ".join(problems)
        )
    return cleaned
