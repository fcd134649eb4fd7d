"""What the reseller service consumes (group `kami-reseller`), each a thin call into `handlers`.

- identity's `UserRegistered`, `UserSuspended`: who an operator may approve;
- catalog's `OfferListed`, `OfferPriceChanged`, `OfferDelisted`: the offers a
  reseller may resell and their prices;
- ordering's `OrderDelivered`, `OrderRefunded`, `OrderCancelled`: the end of an
  order a reseller placed (others are ignored), and its webhook.
"""

from __future__ import annotations

from typing import Any

from kami_events.catalogue.catalog import OfferDelisted, OfferListed, OfferPriceChanged
from kami_events.catalogue.identity import UserRegistered, UserSuspended
from kami_events.catalogue.ordering import OrderCancelled, OrderDelivered, OrderRefunded
from kami_events.consumer import EventConsumer, Received
from kami_reseller import handlers
from kami_reseller.handlers import ResellerDeps


def register(consumer: EventConsumer, deps: ResellerDeps) -> None:
    @consumer.handles(OfferListed, OfferPriceChanged, OfferDelisted)
    async def offer_event(received: Received[Any]) -> None:
        await handlers.on_offer_event(deps, received.envelope)

    @consumer.handles(UserRegistered, UserSuspended)
    async def user_event(received: Received[Any]) -> None:
        await handlers.on_user_event(deps, received.event)

    @consumer.handles(OrderDelivered, OrderRefunded, OrderCancelled)
    async def order_event(received: Received[Any]) -> None:
        await handlers.on_order_event(deps, received.envelope, received.tracking)
