"""Events of the inventory service: the key pool of each offer.

Topic `kami.inventory.pool.v1`, one stream per pool. A pool holds the
encrypted keys of one offer, so the aggregate id is the offer id. Events name
keys only by id: a key's secret never leaves inventory except to delivery,
over its internal API (DESIGN §6).
Main consumers: ordering (reservation outcome drives the saga), catalog
(stock shown to buyers), delivery, aftersales.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from kami_events.catalogue.common import (
    AggregateEvent,
    Count,
    Id,
    KeyIds,
    Quantity,
    Reason,
    UtcDatetime,
)


class ReservationFailure(StrEnum):
    OUT_OF_STOCK = "out_of_stock"
    OFFER_DELISTED = "offer_delisted"
    # No pool exists for the offer (never listed, or no keys ever imported).
    UNKNOWN_OFFER = "unknown_offer"


class ReplacementFailure(StrEnum):
    # The pool has fewer available (sellable) keys than the keys to replace.
    OUT_OF_STOCK = "out_of_stock"
    # No auto-delivery pool exists for the offer.
    UNKNOWN_OFFER = "unknown_offer"
    # The faulty keys are no longer sold to the order (refunded, voided meanwhile).
    KEYS_NOT_REPLACEABLE = "keys_not_replaceable"


class ReleaseReason(StrEnum):
    ORDER_CANCELLED = "order_cancelled"
    # The reservation's `expires_at` passed without the order being paid.
    RESERVATION_EXPIRED = "reservation_expired"
    # Sold keys that were never delivered, through no fault of the keys.
    DELIVERY_FAILED = "delivery_failed"


class BlockReason(StrEnum):
    # The key expires too soon to be sold safely; blocked before anyone buys it.
    NEAR_EXPIRY = "near_expiry"
    EXPIRED = "expired"
    SELLER_BLOCKED = "seller_blocked"
    # Aftersales found the same key (by fingerprint) reported faulty elsewhere.
    REPORTED_INVALID = "reported_invalid"
    OPERATOR = "operator"


class VoidReason(StrEnum):
    CHARGEBACK = "chargeback"
    DELIVERY_FAILED = "delivery_failed"
    CLAIM_UPHELD = "claim_upheld"
    SELLER_VOIDED = "seller_voided"


class PoolEvent(AggregateEvent):
    """The key pool of one offer: imports, reservations, sales, blocks (aggregate
    `inventory.pool`, id = offer id). Keys are named by id only. Main consumers:
    ordering (reservation outcomes), catalog (stock), delivery."""

    abstract = True
    aggregate_type: ClassVar[str] = "inventory.pool"
    aggregate_id_field: ClassVar[str] = "offer_id"

    offer_id: Id


class KeysImported(PoolEvent):
    """A seller uploaded a batch of keys (CSV/TXT); they were encrypted and added
    to the pool. Duplicates (same HMAC fingerprint as a key already held) and
    malformed lines were skipped. Consumed by catalog (seller activity), BI."""

    seller_id: Id
    product_id: Id
    batch_id: Id
    file_format: Literal["csv", "txt"]
    imported: Count
    duplicates: Count
    rejected: Count
    earliest_expires_at: UtcDatetime | None = Field(
        description="When the soonest-expiring imported key expires, if keys expire."
    )


class KeyReserved(PoolEvent):
    """Keys were pre-locked for an order, atomically; they stay reserved until
    `expires_at` unless sold or released first. Consumed by ordering (the order
    may now be paid), payment (the reservation-held verification layer)."""

    order_id: Id
    key_ids: KeyIds
    expires_at: UtcDatetime


class KeyReservationFailed(PoolEvent):
    """No keys were reserved for an order: nothing is held. Consumed by ordering
    (cancels the order; no money has moved)."""

    order_id: Id
    reason: ReservationFailure
    requested: Quantity
    available: Count


class KeysReleased(PoolEvent):
    """Reserved (or sold but undelivered) keys went back to the pool, available
    again. Consumed by ordering (a reservation that expired under an unpaid
    order), payment (the reservation-held verification layer now fails)."""

    order_id: Id
    key_ids: KeyIds
    reason: ReleaseReason


class KeysSold(PoolEvent):
    """Reserved keys now belong to a paid order and will never be sold again.
    Consumed by delivery (the keys it may decrypt for the order), catalog (sales)."""

    order_id: Id
    key_ids: KeyIds


class KeysBlocked(PoolEvent):
    """Available keys were taken off sale (e.g. `near_expiry`). Consumed by
    catalog (stock), aftersales (fingerprint-matched faulty keys), the seller's tools."""

    key_ids: KeyIds
    reason: BlockReason
    detail: Reason | None = None


class KeysVoided(PoolEvent):
    """Keys were invalidated for good (after a chargeback, a failed delivery, an
    upheld claim, or by the seller). Consumed by delivery (the buyer's vault shows
    them as void), aftersales."""

    key_ids: KeyIds
    reason: VoidReason
    order_id: Id | None = None


class ReplacementKeysAllocated(PoolEvent):
    """Available keys of the pool were sold to an order in place of its faulty
    keys (after-sales ticket `ticket_id`): `key_ids[i]` replaces
    `replaced_key_ids[i]`, which are voided in the same commit (`KeysVoided`).
    Each key was taken by a claim, as a reservation's are, so no other order
    has it. Consumed by delivery (puts the new keys in the buyer's vault)."""

    order_id: Id
    ticket_id: Id
    key_ids: KeyIds
    replaced_key_ids: KeyIds

    @model_validator(mode="after")
    def _one_new_key_per_faulty_key(self) -> Self:
        if len(self.key_ids) != len(self.replaced_key_ids):
            raise ValueError("one new key replaces one faulty key")
        if len(set(self.key_ids)) != len(self.key_ids):
            raise ValueError("key_ids must not repeat")
        if set(self.key_ids) & set(self.replaced_key_ids):
            raise ValueError("a key cannot replace itself")
        return self


class KeyReplacementFailed(PoolEvent):
    """An approved replacement (ticket `ticket_id`) could not be allocated:
    nothing was taken, the faulty keys are as they were. Consumed by
    aftersales (refunds the buyer instead)."""

    order_id: Id
    ticket_id: Id
    reason: ReplacementFailure
    requested: Quantity
    available: Count


class StockChanged(PoolEvent):
    """The pool's sellable stock changed (after an import, reservation, release,
    sale or block). Carries absolute counts, so the latest event wins and a
    missed one is harmless. Consumed by catalog (stock shown to buyers)."""

    available: Count
    reserved: Count
