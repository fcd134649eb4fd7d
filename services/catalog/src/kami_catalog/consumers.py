"""What the catalog consumes, registered on the runtime's consumer.

Every consumed event is applied to the read models (stock, sales,
deliveries, tickets, seller standing); after each batch the batch's events
go into the consumed-event log and the summaries they touched are recounted,
once each. Events that change a seller's standing then delist or restore the
seller's offers.
"""

from __future__ import annotations

from typing import Any

from kami_catalog.adapters.projections import Projector
from kami_catalog.handlers import CatalogHandlers
from kami_events.catalogue.aftersales import SellerFlagCleared, SellerFlagged, TicketOpened
from kami_events.catalogue.delivery import DeliveryFailed, KeyDelivered
from kami_events.catalogue.identity import SellerApproved, UserSuspended
from kami_events.catalogue.inventory import StockChanged
from kami_events.catalogue.ordering import OrderCompleted, OrderPlaced
from kami_events.catalogue.payment import DepositBelowMinimum, DepositChanged
from kami_events.consumer import EventConsumer, Received

READ_MODEL_EVENTS = (
    StockChanged,
    OrderPlaced,
    OrderCompleted,
    KeyDelivered,
    DeliveryFailed,
    TicketOpened,
    SellerApproved,
)
# Keyed by the seller (deposit, after-sales seller) or the user (identity).
STANDING_EVENTS = (
    DepositBelowMinimum,
    DepositChanged,
    SellerFlagged,
    SellerFlagCleared,
    UserSuspended,
)


def register_consumers(
    consumer: EventConsumer, projector: Projector, handlers: CatalogHandlers
) -> None:
    @consumer.handles(*READ_MODEL_EVENTS)
    async def project(received: Received[Any]) -> None:
        await projector.take_consumed(received.envelope)

    @consumer.handles(*STANDING_EVENTS)
    async def seller_standing(received: Received[Any]) -> None:
        # The standing is read from the facts the event set, not from recounts.
        await projector.take_consumed(received.envelope)
        await handlers.react_to_standing(received.envelope.aggregate_id, received.envelope)

    consumer.after_each_batch(projector.settle_consumed)
