"""Inventory's event consumers: thin, each one dispatches to a handler.

Catalog's offer and product events feed the ownership read model (idempotent
by stream version); ordering's saga events move keys and append the pool's
events with the message's tracking key (exactly-once effects), and so does
after-sales' `ReplacementApproved` (a replacement key for a faulty one)."""

from __future__ import annotations

from typing import Any

from kami_events.catalogue.aftersales import ReplacementApproved
from kami_events.catalogue.catalog import (
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
    ProductPublished,
)
from kami_events.catalogue.ordering import (
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderRefundRequested,
)
from kami_events.consumer import EventConsumer, Received
from kami_events.envelope import Envelope
from kami_events.locks import KeyedLocks
from kami_events.store import CommitContext
from kami_inventory import handlers
from kami_inventory.handlers import Inventory


def caused_by(envelope: Envelope[Any]) -> CommitContext:
    """What ties the pool's commit to the message that caused it."""
    return CommitContext(
        correlation_id=envelope.correlation_id,
        causation_id=str(envelope.event_id),
        traceparent=envelope.traceparent,
    )


def register_consumers(consumer: EventConsumer, inv: Inventory) -> None:
    # The consumer runs messages of different orders at once, but a pool's
    # stream must tell its keys' moves in the order they were made (a key
    # released by one order and taken by the next is announced in that
    # order): the messages that move one offer's keys take turns; other
    # offers' pools, and the offer and product read models, run at once.
    pools = KeyedLocks()

    @consumer.handles(OfferListed)
    async def on_offer_listed(received: Received[OfferListed]) -> None:
        await handlers.record_offer_listed(received.event, received.envelope.aggregate_version, inv)

    @consumer.handles(OfferDelisted)
    async def on_offer_delisted(received: Received[OfferDelisted]) -> None:
        await handlers.record_offer_delisted(
            received.event, received.envelope.aggregate_version, inv
        )

    @consumer.handles(OfferPriceChanged)
    async def on_offer_price_changed(received: Received[OfferPriceChanged]) -> None:
        await handlers.record_offer_price_changed(
            received.event, received.envelope.aggregate_version, inv
        )

    @consumer.handles(ProductPublished)
    async def on_product_published(received: Received[ProductPublished]) -> None:
        await handlers.record_product(received.event, received.envelope.aggregate_version, inv)

    @consumer.handles(OrderPlaced)
    async def on_order_placed(received: Received[OrderPlaced]) -> None:
        async with pools.hold(received.event.offer_id):
            await handlers.reserve_for_order(
                received.event, inv, caused_by(received.envelope), received.tracking
            )

    @consumer.handles(OrderCancelled)
    async def on_order_cancelled(received: Received[OrderCancelled]) -> None:
        async with pools.hold(received.event.offer_id):
            await handlers.release_for_cancelled_order(
                received.event, inv, caused_by(received.envelope), received.tracking
            )

    @consumer.handles(OrderPaid)
    async def on_order_paid(received: Received[OrderPaid]) -> None:
        async with pools.hold(received.event.offer_id):
            await handlers.sell_for_paid_order(
                received.event, inv, caused_by(received.envelope), received.tracking
            )

    @consumer.handles(OrderRefundRequested)
    async def on_order_refund_requested(received: Received[OrderRefundRequested]) -> None:
        async with pools.hold(received.event.offer_id):
            await handlers.void_for_refund(
                received.event, inv, caused_by(received.envelope), received.tracking
            )

    @consumer.handles(ReplacementApproved)
    async def on_replacement_approved(received: Received[ReplacementApproved]) -> None:
        async with pools.hold(received.event.offer_id):
            await handlers.replace_keys(
                received.event, inv, caused_by(received.envelope), received.tracking
            )
