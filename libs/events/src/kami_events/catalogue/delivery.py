"""Events of the delivery service: getting paid keys to their buyer.

Topic `kami.delivery.delivery.v1`, one stream per delivery: the delivery of
one paid order (aggregate id = delivery id; every event also names the
order). Keys are named by id only; the secret reaches the buyer through the
key vault, never through an event.
Main consumers: ordering (drives the saga to `DELIVERED` / `COMPLETED`, or
compensates), aftersales (what was delivered, when, how).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, model_validator

from kami_events.catalogue.common import AggregateEvent, DeliveryMode, Id, KeyIds, Reason

# Empty only for a manual delivery that needed no keys (e.g. a direct top-up).
DeliveredKeyIds = Annotated[list[Id], Field(max_length=1000)]


class DeliveryChannel(StrEnum):
    # The buyer's key vault in the app: where the key can be revealed (audited).
    VAULT = "vault"
    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"


class DeliveryFailure(StrEnum):
    KEY_INVALID = "key_invalid"
    KEY_BLOCKED = "key_blocked"
    DECRYPTION_FAILED = "decryption_failed"
    # The seller did not deliver a manual order within the offer's SLA.
    MANUAL_SLA_EXPIRED = "manual_sla_expired"
    BUYER_FIELDS_INVALID = "buyer_fields_invalid"


class DeliveryEvent(AggregateEvent):
    """The delivery of one paid order's keys to its buyer (aggregate
    `delivery.delivery`, id = delivery id). Main consumers: ordering (drives the
    saga), aftersales."""

    abstract = True
    aggregate_type: ClassVar[str] = "delivery.delivery"
    aggregate_id_field: ClassVar[str] = "delivery_id"

    delivery_id: Id
    order_id: Id
    buyer_id: Id


class KeyDelivered(DeliveryEvent):
    """The order's keys are in the buyer's vault and were announced on
    `channels`; for a manual offer, the seller reported the delivery done.
    Consumed by ordering (`DELIVERED`, starts the guarantee window), aftersales."""

    offer_id: Id
    seller_id: Id
    key_ids: DeliveredKeyIds
    channels: list[DeliveryChannel] = Field(min_length=1, max_length=len(DeliveryChannel))
    mode: DeliveryMode

    @model_validator(mode="after")
    def _auto_delivery_has_keys(self) -> Self:
        if self.mode is DeliveryMode.AUTO and not self.key_ids:
            raise ValueError("an automatic delivery delivers at least one key")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self


class DeliveryFailed(DeliveryEvent):
    """The order could not be delivered. `faulty_key_ids` are keys found bad
    (to be voided); the others may go back to the pool. Consumed by ordering
    (compensates: release or void keys, refund the buyer), aftersales."""

    offer_id: Id
    seller_id: Id
    reason: DeliveryFailure
    detail: Reason | None = None
    key_ids: DeliveredKeyIds
    faulty_key_ids: DeliveredKeyIds

    @model_validator(mode="after")
    def _faulty_keys_are_the_orders(self) -> Self:
        if not set(self.faulty_key_ids) <= set(self.key_ids):
            raise ValueError("faulty_key_ids must be among key_ids")
        return self


class ArrivalConfirmed(DeliveryEvent):
    """The keys arrived and work, before the guarantee window ended: the buyer
    said so, or the product's issuer called every delivered key valid.
    Consumed by ordering (completes the order at once), aftersales (later
    claims are out of guarantee)."""

    confirmed_by: Literal["buyer", "key_verification"] = Field(
        default="buyer", description="Who confirmed: the buyer, or the issuer's verification."
    )


class KeyReplaced(DeliveryEvent):
    """Replacement keys (`key_ids`, allocated by inventory for after-sales
    ticket `ticket_id`) are in the buyer's vault in place of the faulty
    `replaced_key_ids`, which the vault shows as void; the buyer was told on
    `channels`. The order's state and money do not change. Consumed by
    aftersales (resolves the ticket `key_replaced`), ordering (timeline)."""

    offer_id: Id
    seller_id: Id
    ticket_id: Id
    key_ids: KeyIds
    replaced_key_ids: KeyIds
    channels: list[DeliveryChannel] = Field(min_length=1, max_length=len(DeliveryChannel))

    @model_validator(mode="after")
    def _one_new_key_per_faulty_key(self) -> Self:
        if len(self.key_ids) != len(self.replaced_key_ids):
            raise ValueError("one new key replaces one faulty key")
        if len(set(self.key_ids)) != len(self.key_ids):
            raise ValueError("key_ids must not repeat")
        if set(self.key_ids) & set(self.replaced_key_ids):
            raise ValueError("a key cannot replace itself")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self
