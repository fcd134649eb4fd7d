"""Replacing an order's faulty keys with keys of the same pool (issue 6:
an upheld claim whose buyer chose a replacement).

The answer to one `ReplacementApproved` (one ticket) is decided once and
recorded before it is announced, as a reservation's is, so a redelivered
approval allocates nothing more. A replacement is all or nothing: one new
key for each faulty key, or none and a failure (after-sales then refunds).
The order's money does not move: the buyer paid for working keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from kami_events.catalogue.aftersales import ReplacementApproved
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.inventory import (
    KeyReplacementFailed,
    PoolEvent,
    ReplacementFailure,
    ReplacementKeysAllocated,
)
from kami_inventory.domain.keys import KeyStatus, PoolKey
from kami_inventory.domain.offers import Offer


@dataclass(frozen=True)
class Replacement:
    """New keys sold to the order in place of its faulty ones, or why not."""

    ticket_id: str
    order_id: str
    offer_id: str
    replaced_key_ids: tuple[str, ...]
    key_ids: tuple[str, ...] = ()
    failure: ReplacementFailure | None = None
    available: int = 0

    @classmethod
    def allocated(cls, request: ReplacementApproved, key_ids: tuple[str, ...]) -> Replacement:
        if len(key_ids) != len(request.key_ids):
            raise ValueError("one new key replaces one faulty key")
        return cls(
            request.ticket_id,
            request.order_id,
            request.offer_id,
            tuple(request.key_ids),
            key_ids,
        )

    @classmethod
    def failed(
        cls, request: ReplacementApproved, failure: ReplacementFailure, available: int
    ) -> Replacement:
        return cls(
            request.ticket_id,
            request.order_id,
            request.offer_id,
            tuple(request.key_ids),
            failure=failure,
            available=available,
        )

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    def pairs(self) -> dict[str, str]:
        """Faulty key → the key that replaces it."""
        return dict(zip(self.replaced_key_ids, self.key_ids, strict=True))

    def event(self) -> PoolEvent:
        if self.failure is not None:
            return KeyReplacementFailed(
                offer_id=self.offer_id,
                order_id=self.order_id,
                ticket_id=self.ticket_id,
                reason=self.failure,
                requested=len(self.replaced_key_ids),
                available=self.available,
            )
        return ReplacementKeysAllocated(
            offer_id=self.offer_id,
            order_id=self.order_id,
            ticket_id=self.ticket_id,
            key_ids=list(self.key_ids),
            replaced_key_ids=list(self.replaced_key_ids),
        )


def replacement_refusal(
    offer: Offer | None, request: ReplacementApproved, faulty: list[PoolKey]
) -> ReplacementFailure | None:
    """Why the pool may not replace these keys, or None if it may.

    The offer need not be listed: a delisted seller still owes the buyer a
    working key for a paid order. The faulty keys must still be sold to the
    order: a key voided by a refund (a chargeback meanwhile) is not replaced.
    """
    if (
        offer is None
        or offer.seller_id != request.seller_id
        or offer.delivery_mode is not DeliveryMode.AUTO
    ):
        return ReplacementFailure.UNKNOWN_OFFER
    sold_to_order = {
        key.key_id
        for key in faulty
        if key.status is KeyStatus.SOLD
        and key.order_id == request.order_id
        and key.offer_id == request.offer_id
    }
    if sold_to_order != set(request.key_ids):
        return ReplacementFailure.KEYS_NOT_REPLACEABLE
    return None
