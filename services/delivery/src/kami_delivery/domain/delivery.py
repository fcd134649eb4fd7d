"""The `Delivery` aggregate: one per paid order (DESIGN §3, step 7).

Its id is derived from the order id, so however often `OrderPaid` is
redelivered there is one stream per order, and the event store's version
check lets exactly one outcome in: the first `KeyDelivered` or
`DeliveryFailed` appended at version 0 wins, every later attempt meets a
concluded delivery. After delivery come only the buyer's `ArrivalConfirmed`
and, for an upheld claim whose buyer chose it, `KeyReplaced`: keys inventory
allocated in place of faulty ones, once per after-sales ticket. The
delivery's `key_ids` are then the keys the buyer holds now; a key once
delivered is never delivered to the order again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Literal
from uuid import UUID, uuid5

from kami_delivery.domain.rejections import Conflict, NotFound
from kami_events.aggregate import Aggregate
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import (
    ArrivalConfirmed,
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
    KeyReplaced,
)
from kami_events.event import Event

# Fixed forever: changing it would give every order a second delivery id.
_DELIVERY_NAMESPACE = UUID("6f0b7c7e-2d1a-5b8e-9c4f-4b61d2a7e9a3")


def delivery_id_for(order_id: str) -> str:
    """The one delivery id of an order (a UUIDv5 of the order id)."""
    return str(uuid5(_DELIVERY_NAMESPACE, order_id))


@dataclass(frozen=True)
class OrderFacts:
    """What delivery knows of a paid order: from `OrderPlaced` and `OrderPaid`."""

    order_id: str
    buyer_id: str
    seller_id: str
    offer_id: str
    product_id: str
    quantity: int
    mode: DeliveryMode
    key_ids: tuple[str, ...] = ()
    buyer_fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def delivery_id(self) -> str:
        return delivery_id_for(self.order_id)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(Aggregate):
    aggregate_type: ClassVar[str] = "delivery.delivery"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status = DeliveryStatus.PENDING
        self.order_id: str | None = None
        self.buyer_id: str | None = None
        self.mode: DeliveryMode | None = None
        self.key_ids: tuple[str, ...] = ()
        self.channels: tuple[DeliveryChannel, ...] = ()
        self.failure: DeliveryFailure | None = None
        self.arrival_confirmed = False
        # Every key this delivery ever put in the vault, replaced ones included.
        self.delivered_ever: set[str] = set()
        # Faulty key → the key that replaced it; ticket → the keys it brought.
        self.replaced_by: dict[str, str] = {}
        self.replacements: dict[str, tuple[str, ...]] = {}

    @classmethod
    def for_order(cls, order: OrderFacts) -> Delivery:
        return cls(order.delivery_id)

    @property
    def concluded(self) -> bool:
        return self.status is not DeliveryStatus.PENDING

    # -- commands -----------------------------------------------------------

    def deliver(
        self, order: OrderFacts, key_ids: Sequence[str], channels: Sequence[DeliveryChannel]
    ) -> None:
        """The keys are in the buyer's vault: announce them on `channels`."""
        self._check_order(order)
        self._check_pending()
        if DeliveryChannel.VAULT not in channels:
            raise ValueError("every delivery goes to the buyer's vault")
        if len(set(key_ids)) != len(key_ids):
            raise ValueError("a delivery names each key once")
        if order.mode is DeliveryMode.AUTO and tuple(key_ids) != order.key_ids:
            raise ValueError("an automatic delivery delivers exactly the order's reserved keys")
        self._trigger(
            KeyDelivered(
                delivery_id=self.id,
                order_id=order.order_id,
                buyer_id=order.buyer_id,
                offer_id=order.offer_id,
                seller_id=order.seller_id,
                key_ids=list(key_ids),
                channels=list(channels),
                mode=order.mode,
            )
        )

    def fail(
        self,
        order: OrderFacts,
        reason: DeliveryFailure,
        *,
        faulty_key_ids: Sequence[str] = (),
        detail: str | None = None,
    ) -> None:
        """The order cannot be delivered; the saga refunds the buyer."""
        self._check_order(order)
        self._check_pending()
        unknown = set(faulty_key_ids) - set(order.key_ids)
        if unknown:
            raise ValueError(f"faulty keys {sorted(unknown)} are not the order's")
        self._trigger(
            DeliveryFailed(
                delivery_id=self.id,
                order_id=order.order_id,
                buyer_id=order.buyer_id,
                offer_id=order.offer_id,
                seller_id=order.seller_id,
                reason=reason,
                detail=detail,
                key_ids=list(order.key_ids),
                faulty_key_ids=[k for k in order.key_ids if k in set(faulty_key_ids)],
            )
        )

    def replace_keys(
        self,
        order: OrderFacts,
        ticket_id: str,
        replaced_key_ids: Sequence[str],
        key_ids: Sequence[str],
        channels: Sequence[DeliveryChannel],
    ) -> bool:
        """Replacement keys for after-sales ticket `ticket_id` are in the
        buyer's vault in place of `replaced_key_ids`. Returns False when this
        ticket's replacement was recorded already."""
        self._check_order(order)
        if ticket_id in self.replacements:
            if self.replacements[ticket_id] != tuple(key_ids):
                raise ValueError(f"ticket {ticket_id} was replaced with other keys")
            return False
        if self.status is not DeliveryStatus.DELIVERED or self.mode is not DeliveryMode.AUTO:
            raise Conflict("not_delivered", "Only delivered keys of a pool can be replaced.")
        if DeliveryChannel.VAULT not in channels:
            raise ValueError("every delivery goes to the buyer's vault")
        if len(key_ids) != len(replaced_key_ids) or not key_ids:
            raise ValueError("one new key replaces one faulty key")
        if len(set(key_ids)) != len(key_ids):
            raise ValueError("a replacement names each key once")
        missing = [k for k in replaced_key_ids if k not in self.key_ids]
        if missing:
            raise Conflict("key_not_held", f"Keys {missing} are not the order's keys now.")
        again = [k for k in key_ids if k in self.delivered_ever]
        if again:
            # DESIGN §9 (1): no order gets a key twice.
            raise Conflict("key_already_delivered", f"Keys {again} reached this order before.")
        self._trigger(
            KeyReplaced(
                delivery_id=self.id,
                order_id=order.order_id,
                buyer_id=order.buyer_id,
                offer_id=order.offer_id,
                seller_id=order.seller_id,
                ticket_id=ticket_id,
                key_ids=list(key_ids),
                replaced_key_ids=list(replaced_key_ids),
                channels=list(channels),
            )
        )
        return True

    def with_replacements(self, key_ids: Sequence[str]) -> list[str]:
        """`key_ids` and every key that replaced one of them, however many times over."""
        found = list(dict.fromkeys(key_ids))
        for key_id in found:  # grows while walked: follows chains of replacements
            successor = self.replaced_by.get(key_id)
            if successor is not None and successor not in found:
                found.append(successor)
        return found

    def confirm_arrival(
        self, buyer_id: str, by: Literal["buyer", "key_verification"] = "buyer"
    ) -> bool:
        """The buyer says the keys arrived and work (or the issuer called every
        delivered key valid). Returns False when that was said already."""
        if self.order_id is None or buyer_id != self.buyer_id:
            raise NotFound("delivery_not_found", "No delivery of this order is yours.")
        if self.status is DeliveryStatus.FAILED:
            raise Conflict(
                "delivery_failed", "This order could not be delivered; it is being refunded."
            )
        if self.status is DeliveryStatus.PENDING:
            raise Conflict("not_delivered", "The keys have not been delivered yet.")
        if self.arrival_confirmed:
            return False
        assert self.order_id is not None
        self._trigger(
            ArrivalConfirmed(
                delivery_id=self.id, order_id=self.order_id, buyer_id=buyer_id, confirmed_by=by
            )
        )
        return True

    # -- state --------------------------------------------------------------

    def apply(self, event: Event) -> None:
        match event:
            case KeyDelivered():
                self.status = DeliveryStatus.DELIVERED
                self.order_id, self.buyer_id, self.mode = event.order_id, event.buyer_id, event.mode
                self.key_ids = tuple(event.key_ids)
                self.delivered_ever.update(event.key_ids)
                self.channels = tuple(event.channels)
            case KeyReplaced():
                pairs = dict(zip(event.replaced_key_ids, event.key_ids, strict=True))
                self.key_ids = tuple(pairs.get(k, k) for k in self.key_ids)
                self.delivered_ever.update(event.key_ids)
                self.replaced_by.update(pairs)
                self.replacements[event.ticket_id] = tuple(event.key_ids)
            case DeliveryFailed():
                self.status = DeliveryStatus.FAILED
                self.order_id, self.buyer_id = event.order_id, event.buyer_id
                self.key_ids = tuple(event.key_ids)
                self.failure = event.reason
            case ArrivalConfirmed():
                self.arrival_confirmed = True
            case _:
                super().apply(event)

    def _check_order(self, order: OrderFacts) -> None:
        if order.delivery_id != self.id:
            raise ValueError(f"order {order.order_id} is not delivered by {self.id}")

    def _check_pending(self) -> None:
        if self.status is DeliveryStatus.DELIVERED:
            raise DeliveryConcluded("already_delivered", "This order's keys were delivered.")
        if self.status is DeliveryStatus.FAILED:
            raise DeliveryConcluded("delivery_failed", "This order's delivery has failed.")


class DeliveryConcluded(Conflict):
    """The delivery already has its outcome; a second one is refused."""
