"""A reseller's order for one of its customers, and how it ends.

The order id is minted here and is also the id ordering gives the order, so
every event of the purchase correlates with it. Requested → delivered, or →
cancelled / refunded; a closed order never changes again, so a replayed
ordering event is a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from kami_events.aggregate import Aggregate
from kami_events.catalogue.reseller import (
    ResellerOrderClosed,
    ResellerOrderDelivered,
    ResellerOrderRequested,
    ResellerOrderState,
)
from kami_events.event import Event
from kami_reseller.domain.pricing import ResellerPrice


class ResellerOrder(Aggregate):
    aggregate_type: ClassVar[str] = "reseller.order"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.reseller_id = ""
        self.user_id = ""
        self.offer_id = ""
        self.quantity = 0
        self.total = 0
        self.reseller_total = 0
        self.margin = 0
        self.customer_ref: str | None = None
        self.state: ResellerOrderState | None = None
        self.key_ids: list[str] = []
        self.refunded_amount = 0
        self.close_reason: str | None = None

    def request(
        self,
        reseller_id: str,
        user_id: str,
        offer_id: str,
        quantity: int,
        price: ResellerPrice,
        customer_ref: str | None,
    ) -> None:
        if self.state is not None:
            raise ValueError("an order is requested once")
        total = price.offer_price * quantity
        reseller_total = price.unit_price * quantity
        self._trigger(
            ResellerOrderRequested(
                order_id=self.id,
                reseller_id=reseller_id,
                user_id=user_id,
                offer_id=offer_id,
                quantity=quantity,
                unit_price=price.offer_price,
                reseller_unit_price=price.unit_price,
                total=total,
                reseller_total=reseller_total,
                margin=reseller_total - total,
                customer_ref=customer_ref,
            )
        )

    def delivered(self, key_ids: list[str], at: datetime) -> bool:
        """Record delivery; False if nothing changes (already delivered or closed)."""
        if self.state is not ResellerOrderState.REQUESTED:
            return False
        self._trigger(
            ResellerOrderDelivered(
                order_id=self.id, reseller_id=self.reseller_id, key_ids=key_ids, delivered_at=at
            )
        )
        return True

    def closed(self, state: ResellerOrderState, reason: str | None, refunded_amount: int) -> bool:
        """Cancelled (before delivery) or refunded (at any point); False if already closed."""
        if state not in (ResellerOrderState.CANCELLED, ResellerOrderState.REFUNDED):
            raise ValueError(f"{state} does not close an order")
        if self.state in (ResellerOrderState.CANCELLED, ResellerOrderState.REFUNDED, None):
            return False
        if state is ResellerOrderState.CANCELLED and self.state is ResellerOrderState.DELIVERED:
            return False
        self._trigger(
            ResellerOrderClosed(
                order_id=self.id,
                reseller_id=self.reseller_id,
                state=state,
                reason=reason,
                refunded_amount=refunded_amount,
            )
        )
        return True

    def apply(self, event: Event) -> None:
        match event:
            case ResellerOrderRequested():
                self.reseller_id = event.reseller_id
                self.user_id = event.user_id
                self.offer_id = event.offer_id
                self.quantity = event.quantity
                self.total = event.total
                self.reseller_total = event.reseller_total
                self.margin = event.margin
                self.customer_ref = event.customer_ref
                self.state = ResellerOrderState.REQUESTED
            case ResellerOrderDelivered():
                self.key_ids = list(event.key_ids)
                self.state = ResellerOrderState.DELIVERED
            case ResellerOrderClosed():
                self.state = event.state
                self.close_reason = event.reason
                self.refunded_amount = event.refunded_amount
            case _:
                super().apply(event)
