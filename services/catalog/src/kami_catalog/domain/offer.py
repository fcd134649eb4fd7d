"""Offers: one seller's listing of one product, with price and delivery terms.

A seller has at most one offer per product (its id is derived from both), so
listing again after a delist relists the same offer, as `OfferListed` says.
Stock is not part of the offer: inventory reports it (`StockChanged`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, ClassVar, Self
from uuid import NAMESPACE_URL, uuid5

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kami_catalog.domain.errors import Rejected
from kami_events.aggregate import Aggregate
from kami_events.catalogue.catalog import (
    DelistReason,
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.event import Event
from kami_events.money import PositiveAmount

DEFAULT_GUARANTEE_MINUTES = 15
_OFFER_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/catalog/offer")

# Delists the catalog decides from the seller's standing, and lifts again
# once the standing is clear.
STANDING_REASONS = frozenset(
    {
        DelistReason.DEPOSIT_BELOW_MINIMUM,
        DelistReason.SELLER_SUSPENDED,
        DelistReason.SELLER_FLAGGED,
    }
)
# Delists only an operator may lift.
OPERATOR_REASONS = frozenset({DelistReason.OPERATOR, DelistReason.PRODUCT_WITHDRAWN})


def offer_id_for(seller_id: str, product_id: str) -> str:
    return str(uuid5(_OFFER_NAMESPACE, f"{seller_id}/{product_id}"))


Minutes = Annotated[int, Field(ge=1, le=7 * 24 * 60)]
PerOrder = Annotated[int, Field(ge=1, le=1000)]


class OfferTerms(BaseModel):
    """What the seller sets when listing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit_price: PositiveAmount
    delivery_mode: DeliveryMode
    manual_delivery_sla_minutes: Minutes | None = None
    guarantee_window_minutes: Minutes = DEFAULT_GUARANTEE_MINUTES
    min_quantity_per_order: PerOrder = 1
    max_quantity_per_order: PerOrder

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        manual = self.delivery_mode is DeliveryMode.MANUAL
        if manual and self.manual_delivery_sla_minutes is None:
            raise ValueError("a manual offer needs manual_delivery_sla_minutes")
        if not manual and self.manual_delivery_sla_minutes is not None:
            raise ValueError("manual_delivery_sla_minutes is only for manual offers")
        if self.min_quantity_per_order > self.max_quantity_per_order:
            raise ValueError("min_quantity_per_order exceeds max_quantity_per_order")
        return self


@dataclass(frozen=True)
class SellerStanding:
    """What the catalog knows of a seller from other services' events."""

    seller_id: str
    suspended: bool = False
    deposit_below_minimum: bool = False
    flagged_critical: bool = False

    def blocking_reason(self) -> DelistReason | None:
        if self.suspended:
            return DelistReason.SELLER_SUSPENDED
        if self.flagged_critical:
            return DelistReason.SELLER_FLAGGED
        if self.deposit_below_minimum:
            return DelistReason.DEPOSIT_BELOW_MINIMUM
        return None


_BLOCKED_MESSAGES = {
    DelistReason.SELLER_SUSPENDED: "The seller account is suspended.",
    DelistReason.SELLER_FLAGGED: "The seller is flagged for a high issue rate.",
    DelistReason.DEPOSIT_BELOW_MINIMUM: "The seller's deposit is below the minimum; top it up.",
}


class OfferStatus(StrEnum):
    NEW = "new"
    LISTED = "listed"
    DELISTED = "delisted"


class Offer(Aggregate):
    aggregate_type: ClassVar[str] = "catalog.offer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status = OfferStatus.NEW
        self.product_id = ""
        self.seller_id = ""
        self.terms: OfferTerms | None = None
        self.delist_reason: DelistReason | None = None

    # -- seller commands ----------------------------------------------------------------------

    def list_on_sale(
        self,
        *,
        seller_id: str,
        product_id: str,
        product_delivery_mode: DeliveryMode | None,
        terms: OfferTerms,
        standing: SellerStanding,
    ) -> None:
        """List (or relist, with new terms) this seller's offer of a product."""
        if self.status is not OfferStatus.NEW:
            self._require_owner(seller_id)
        if self.status is OfferStatus.LISTED:
            raise Rejected.conflict("offer_already_listed", "This offer is already on sale.")
        if self.delist_reason in OPERATOR_REASONS:
            raise Rejected.forbidden(
                "offer_delisted_by_operator", "An operator took this offer off sale."
            )
        blocked = standing.blocking_reason()
        if blocked is not None:
            raise Rejected.forbidden(f"seller_{blocked.value}", _BLOCKED_MESSAGES[blocked])
        if (
            product_delivery_mode is DeliveryMode.MANUAL
            and terms.delivery_mode is not DeliveryMode.MANUAL
        ):
            raise Rejected.invalid(
                "delivery_mode_not_allowed",
                "This product is credited to the buyer's account: offers must deliver manually.",
            )
        self._trigger(self._listed(seller_id, product_id, terms))

    def change_price(self, *, seller_id: str, unit_price: int) -> bool:
        self._require_owner(seller_id)
        if self.status is not OfferStatus.LISTED or self.terms is None:
            raise Rejected.conflict(
                "offer_not_listed", "Only an offer on sale has a price to change; relist it."
            )
        if unit_price <= 0:
            raise Rejected.invalid("invalid_price", "A price is a positive number of fen.")
        if unit_price == self.terms.unit_price:
            return False
        self._trigger(
            OfferPriceChanged(
                offer_id=self.id,
                product_id=self.product_id,
                seller_id=self.seller_id,
                old_unit_price=self.terms.unit_price,
                new_unit_price=unit_price,
            )
        )
        return True

    def withdraw(self, *, seller_id: str) -> bool:
        """The seller takes the offer off sale."""
        self._require_owner(seller_id)
        return self.delist(DelistReason.SELLER_REQUEST)

    # -- system and operator commands -----------------------------------------------------------

    def delist(self, reason: DelistReason, detail: str | None = None) -> bool:
        """Take the offer off sale; a no-op (False) when it is not on sale."""
        if self.status is not OfferStatus.LISTED:
            return False
        self._trigger(
            OfferDelisted(
                offer_id=self.id,
                product_id=self.product_id,
                seller_id=self.seller_id,
                reason=reason,
                detail=detail,
            )
        )
        return True

    def restore(self, standing: SellerStanding) -> bool:
        """Relist with the previous terms an offer the catalog delisted for the
        seller's standing, once that standing is clear again."""
        if (
            self.status is not OfferStatus.DELISTED
            or self.delist_reason not in STANDING_REASONS
            or self.terms is None
            or standing.blocking_reason() is not None
        ):
            return False
        self._trigger(self._listed(self.seller_id, self.product_id, self.terms))
        return True

    # -- state --------------------------------------------------------------------------------

    def _require_owner(self, seller_id: str) -> None:
        if self.status is OfferStatus.NEW:
            raise Rejected.not_found("offer_not_found", f"No offer {self.id!r}.")
        if seller_id != self.seller_id:
            raise Rejected.forbidden("not_your_offer", "This offer belongs to another seller.")

    def _listed(self, seller_id: str, product_id: str, terms: OfferTerms) -> OfferListed:
        return OfferListed(
            offer_id=self.id,
            product_id=product_id,
            seller_id=seller_id,
            unit_price=terms.unit_price,
            delivery_mode=terms.delivery_mode,
            manual_delivery_sla_minutes=terms.manual_delivery_sla_minutes,
            guarantee_window_minutes=terms.guarantee_window_minutes,
            min_quantity_per_order=terms.min_quantity_per_order,
            max_quantity_per_order=terms.max_quantity_per_order,
        )

    def apply(self, event: Event) -> None:
        if isinstance(event, OfferListed):
            self.status = OfferStatus.LISTED
            self.product_id = event.product_id
            self.seller_id = event.seller_id
            self.delist_reason = None
            self.terms = OfferTerms(
                unit_price=event.unit_price,
                delivery_mode=event.delivery_mode,
                manual_delivery_sla_minutes=event.manual_delivery_sla_minutes,
                guarantee_window_minutes=event.guarantee_window_minutes,
                min_quantity_per_order=event.min_quantity_per_order,
                max_quantity_per_order=event.max_quantity_per_order,
            )
        elif isinstance(event, OfferPriceChanged):
            assert self.terms is not None
            self.terms = self.terms.model_copy(update={"unit_price": event.new_unit_price})
        elif isinstance(event, OfferDelisted):
            self.status = OfferStatus.DELISTED
            self.delist_reason = event.reason
        else:
            super().apply(event)
