"""Ordering's event consumers: thin, each hands one event to its handler.

Every event consumed from a purchase topic (inventory, payment, delivery,
aftersales) is first put on the order's timeline when its correlation id (or
its `order_id`) names one of ordering's orders — including the events no
handler acts on, such as `PaymentInitiated` or `KeysSold`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kami_events.catalogue.aftersales import (
    CompensationApproved,
    TicketOpened,
    TicketResolved,
)
from kami_events.catalogue.catalog import (
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
    ProductPublished,
)
from kami_events.catalogue.delivery import ArrivalConfirmed, DeliveryFailed, KeyDelivered
from kami_events.catalogue.identity import UserSuspended
from kami_events.catalogue.inventory import KeyReservationFailed, KeyReserved, KeysReleased
from kami_events.catalogue.payment import (
    FundsSettled,
    PaymentConfirmed,
    PaymentFailed,
    PaymentRefunded,
    PaymentReversed,
)
from kami_events.catalogue.reseller import ResellerOrderRequested
from kami_events.consumer import EventConsumer, Received
from kami_events.event import EVENT_REGISTRY, Event
from kami_events.money import Money
from kami_events.store import CommitContext
from kami_ordering.adapters.catalog_view import MongoOfferCatalog
from kami_ordering.adapters.repository import OrderRepository
from kami_ordering.adapters.timeline import MongoTimeline
from kami_ordering.domain.terms import PlacementRefused
from kami_ordering.handlers import Message, OrderPlacement, PlaceOrder, PurchaseSaga

E = TypeVar("E", bound=Event)
log = logging.getLogger(__name__)

# The aggregates whose events tell an order's story.
PURCHASE_AGGREGATES = (
    "inventory.pool",
    "payment.payment",
    "delivery.delivery",
    "aftersales.ticket",
)


def message(received: Received[Any], order_id: str) -> Message:
    envelope = received.envelope
    return Message(
        trigger=envelope.event_type,
        context=CommitContext(
            correlation_id=order_id,
            causation_id=str(envelope.event_id),
            traceparent=envelope.traceparent,
        ),
        tracking=received.tracking,
    )


def register_consumers(
    consumer: EventConsumer,
    *,
    saga: PurchaseSaga,
    catalog: MongoOfferCatalog,
    timeline: MongoTimeline,
    repository: OrderRepository,
    placement: OrderPlacement | None = None,
) -> None:
    handled: set[type[Event]] = set()

    async def put_on_timeline(received: Received[Any]) -> None:
        envelope = received.envelope
        if envelope.aggregate_type not in PURCHASE_AGGREGATES:
            return
        candidates = [envelope.correlation_id, getattr(envelope.payload, "order_id", None)]
        for order_id in dict.fromkeys(c for c in candidates if c):
            if await repository.exists(order_id):
                await timeline.record(order_id, envelope)
                return

    def on(
        event_type: type[E],
    ) -> Callable[[Callable[[Received[E]], Awaitable[Any]]], None]:
        def register(handle: Callable[[Received[E]], Awaitable[Any]]) -> None:
            async def handler(received: Received[Any]) -> None:
                await put_on_timeline(received)
                await handle(received)

            consumer.handles(event_type)(handler)
            handled.add(event_type)

        return register

    # catalog and identity: the read model new orders are placed against
    @on(ProductPublished)
    async def _(r: Received[ProductPublished]) -> None:
        await catalog.product_published(r.event, r.envelope.aggregate_version)

    @on(OfferListed)
    async def _(r: Received[OfferListed]) -> None:
        await catalog.offer_listed(r.event, r.envelope.aggregate_version)

    @on(OfferPriceChanged)
    async def _(r: Received[OfferPriceChanged]) -> None:
        await catalog.offer_price_changed(r.event, r.envelope.aggregate_version)

    @on(OfferDelisted)
    async def _(r: Received[OfferDelisted]) -> None:
        await catalog.offer_delisted(r.event, r.envelope.aggregate_version)

    @on(UserSuspended)
    async def _(r: Received[UserSuspended]) -> None:
        await catalog.user_suspended(r.event, r.envelope.aggregate_version)

    # reseller (issue 15): a reseller's order is placed for its identity user,
    # under the id the reseller service minted; idempotent by that id.
    if placement is not None:
        reseller_placement = placement

        @on(ResellerOrderRequested)
        async def _(r: Received[ResellerOrderRequested]) -> None:
            e = r.event
            command = PlaceOrder(
                buyer_id=e.user_id,
                idempotency_key=f"reseller:{e.order_id}",
                offer_id=e.offer_id,
                quantity=e.quantity,
                buyer_fields={},
                request_id=str(r.envelope.event_id),
                order_id=e.order_id,
            )
            try:
                await reseller_placement.place(command)
            except PlacementRefused as refused:
                # A business outcome, not a failure to retry: no order exists.
                log.warning("reseller order %s not placed: %s", e.order_id, refused)

    # inventory
    @on(KeyReserved)
    async def _(r: Received[KeyReserved]) -> None:
        e = r.event
        await saga.key_reserved(e.order_id, e.key_ids, e.expires_at, message(r, e.order_id))

    @on(KeyReservationFailed)
    async def _(r: Received[KeyReservationFailed]) -> None:
        e = r.event
        await saga.reservation_failed(e.order_id, e.reason, message(r, e.order_id))

    @on(KeysReleased)
    async def _(r: Received[KeysReleased]) -> None:
        e = r.event
        await saga.keys_released(e.order_id, e.key_ids, e.reason, message(r, e.order_id))

    # payment
    @on(PaymentConfirmed)
    async def _(r: Received[PaymentConfirmed]) -> None:
        e = r.event
        await saga.payment_confirmed(
            e.order_id, e.payment_id, Money.fen(e.amount, e.currency), message(r, e.order_id)
        )

    @on(PaymentFailed)
    async def _(r: Received[PaymentFailed]) -> None:
        e = r.event
        await saga.payment_failed(
            e.order_id,
            e.payment_id,
            e.reason,
            Money.fen(e.captured_amount, e.currency),
            message(r, e.order_id),
        )

    @on(PaymentReversed)
    async def _(r: Received[PaymentReversed]) -> None:
        e = r.event
        await saga.payment_reversed(
            e.order_id,
            e.payment_id,
            Money.fen(e.amount, e.currency),
            e.settled,
            message(r, e.order_id),
        )

    @on(PaymentRefunded)
    async def _(r: Received[PaymentRefunded]) -> None:
        e = r.event
        await saga.payment_refunded(
            e.order_id,
            e.refund_id,
            Money.fen(e.amount, e.currency),
            e.source,
            message(r, e.order_id),
        )

    @on(FundsSettled)
    async def _(r: Received[FundsSettled]) -> None:
        await saga.funds_settled(r.event.order_id, r.event.payment_id)

    # delivery
    @on(KeyDelivered)
    async def _(r: Received[KeyDelivered]) -> None:
        e = r.event
        await saga.key_delivered(e.order_id, e.delivery_id, e.key_ids, message(r, e.order_id))

    @on(DeliveryFailed)
    async def _(r: Received[DeliveryFailed]) -> None:
        e = r.event
        await saga.delivery_failed(e.order_id, e.key_ids, message(r, e.order_id))

    @on(ArrivalConfirmed)
    async def _(r: Received[ArrivalConfirmed]) -> None:
        await saga.arrival_confirmed(r.event.order_id, message(r, r.event.order_id))

    # aftersales
    @on(TicketOpened)
    async def _(r: Received[TicketOpened]) -> None:
        await saga.claim_opened(r.event.order_id, r.event.ticket_id)

    @on(TicketResolved)
    async def _(r: Received[TicketResolved]) -> None:
        await saga.claim_resolved(r.event.order_id, r.event.ticket_id)

    @on(CompensationApproved)
    async def _(r: Received[CompensationApproved]) -> None:
        e = r.event
        await saga.compensation_approved(
            e.order_id,
            e.ticket_id,
            Money.fen(e.amount, e.currency),
            e.void_key_ids,
            message(r, e.order_id),
        )

    # Every other event of a purchase topic goes on the timeline only.
    for event_type in EVENT_REGISTRY.all():
        if event_type.aggregate_type in PURCHASE_AGGREGATES and event_type not in handled:
            consumer.handles(event_type)(put_on_timeline)
