"""What payment hears on Kafka: ordering's saga and identity's users. Thin:
each message goes to `PaymentService`.

Effects are idempotent by their own keys (a movement id, a refund id, the
payment's stream version), not by the store's tracking: a refund is a ledger
movement plus a payment commit, and either can be the one a crash
interrupted. The consumer's inbox still skips redeliveries.
"""

from __future__ import annotations

from typing import Any

from kami_events.catalogue.identity import IdentityVerified, SellerApproved, UserSuspended
from kami_events.catalogue.ordering import (
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderPaid,
    OrderPlaced,
    OrderRefundRequested,
    OrderReserved,
)
from kami_events.catalogue.reseller import ResellerOrderRequested
from kami_events.consumer import EventConsumer, Received
from kami_events.store import CommitContext
from kami_payment.handlers import PaymentService

ORDER_EVENTS = (
    OrderPlaced,
    OrderReserved,
    OrderPaid,
    OrderDelivered,
    OrderCompleted,
    OrderCancelled,
    OrderRefundRequested,
)
IDENTITY_EVENTS = (IdentityVerified, SellerApproved, UserSuspended)


def register_consumers(consumer: EventConsumer, service: PaymentService) -> None:
    @consumer.handles(*ORDER_EVENTS)
    async def on_order(received: Received[Any]) -> None:
        envelope = received.envelope
        await service.on_order_event(
            received.event,
            CommitContext(
                correlation_id=envelope.correlation_id,
                causation_id=str(envelope.event_id),
                traceparent=envelope.traceparent,
            ),
        )

    @consumer.handles(ResellerOrderRequested)
    async def on_reseller_order(received: Received[Any]) -> None:
        envelope = received.envelope
        await service.on_reseller_order_requested(
            received.event,
            CommitContext(
                correlation_id=envelope.correlation_id,
                causation_id=str(envelope.event_id),
                traceparent=envelope.traceparent,
            ),
        )

    @consumer.handles(*IDENTITY_EVENTS)
    async def on_identity(received: Received[Any]) -> None:
        await service.on_identity_event(received.event)
