"""What delivery consumes (group `kami-delivery`), each a thin call into `handlers`.

- `OrderPlaced` (ordering): the order read model (buyer, seller, offer, mode,
  buyer fields);
- `OrderPaid` (ordering): queues an automatic delivery, or opens a manual one;
- `OrderRefundRequested`, `OrderRefunded` (ordering): the refund's voided keys
  leave the vault;
- `OrderCompleted`, `OrderCancelled` (ordering): order state (arrival can no
  longer be confirmed);
- `IdentityVerified`, `PhoneVerified` (identity): the buyer's delivery
  priority, and a verified phone for texts;
- `OfferListed` (catalog): the offer's manual-delivery SLA;
- `KeyDelivered`, `DeliveryFailed` (delivery itself): vault visibility and
  notifications, driven by the committed outcome;
- `TicketResolved{notification_resent}` (aftersales): the buyer is reminded
  that the keys are in the vault;
- `KeysBlocked{near_expiry|expired}` (inventory): the seller is told;
- `ReplacementKeysAllocated` (inventory): the new keys go into the buyer's
  vault in place of the faulty ones (`KeyReplaced`); `KeyReplaced` (delivery
  itself): vault visibility and the buyer's notification.

Read-model writes are idempotent on their own; the inbox dedupes redeliveries.
"""

from __future__ import annotations

from collections.abc import Callable

from kami_delivery import handlers
from kami_delivery.adapters.ports import OrderState
from kami_delivery.handlers import DeliveryDeps
from kami_events.catalogue.aftersales import TicketResolved
from kami_events.catalogue.catalog import OfferListed
from kami_events.catalogue.delivery import DeliveryFailed, KeyDelivered, KeyReplaced
from kami_events.catalogue.identity import IdentityVerified, PhoneVerified
from kami_events.catalogue.inventory import KeysBlocked, ReplacementKeysAllocated
from kami_events.catalogue.ordering import (
    OrderCancelled,
    OrderCompleted,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderRefundRequested,
)
from kami_events.consumer import EventConsumer, Received


def register(consumer: EventConsumer, deps: DeliveryDeps, *, on_queued: Callable[[], None]) -> None:
    @consumer.handles(OrderPlaced)
    async def order_placed(received: Received[OrderPlaced]) -> None:
        await handlers.record_order_placed(deps, received.event)

    @consumer.handles(OrderPaid)
    async def order_paid(received: Received[OrderPaid]) -> None:
        await handlers.accept_paid_order(deps, received.envelope)
        on_queued()

    @consumer.handles(OrderRefundRequested)
    async def refund_requested(received: Received[OrderRefundRequested]) -> None:
        await handlers.record_refund_request(deps, received.event)

    @consumer.handles(OrderRefunded)
    async def refunded(received: Received[OrderRefunded]) -> None:
        await handlers.hide_refunded_keys(deps, received.event)

    @consumer.handles(OrderCompleted)
    async def completed(received: Received[OrderCompleted]) -> None:
        await handlers.record_order_state(deps, received.event.order_id, OrderState.COMPLETED)

    @consumer.handles(OrderCancelled)
    async def cancelled(received: Received[OrderCancelled]) -> None:
        await handlers.record_order_state(deps, received.event.order_id, OrderState.CANCELLED)

    @consumer.handles(IdentityVerified)
    async def identity_verified(received: Received[IdentityVerified]) -> None:
        await handlers.record_tier(deps, received.event, received.envelope.aggregate_version)

    @consumer.handles(PhoneVerified)
    async def phone_verified(received: Received[PhoneVerified]) -> None:
        await handlers.record_phone(deps, received.event)

    @consumer.handles(OfferListed)
    async def offer_listed(received: Received[OfferListed]) -> None:
        await handlers.record_offer(deps, received.event)

    @consumer.handles(KeyDelivered)
    async def key_delivered(received: Received[KeyDelivered]) -> None:
        await handlers.announce_delivery(deps, received.event)

    @consumer.handles(DeliveryFailed)
    async def delivery_failed(received: Received[DeliveryFailed]) -> None:
        await handlers.announce_failure(deps, received.event)

    @consumer.handles(TicketResolved)
    async def ticket_resolved(received: Received[TicketResolved]) -> None:
        await handlers.remind_of_delivery(deps, received.event)

    @consumer.handles(KeysBlocked)
    async def keys_blocked(received: Received[KeysBlocked]) -> None:
        await handlers.notify_keys_blocked(deps, received.event, str(received.envelope.event_id))

    @consumer.handles(ReplacementKeysAllocated)
    async def replacement_allocated(received: Received[ReplacementKeysAllocated]) -> None:
        await handlers.deliver_replacement(deps, received.envelope)

    @consumer.handles(KeyReplaced)
    async def key_replaced(received: Received[KeyReplaced]) -> None:
        await handlers.announce_replacement(deps, received.event)
