"""What aftersales consumes (group `kami-aftersales`), each a thin call into `handlers`.

- ordering's `OrderPlaced`, `OrderPaid`, `OrderDelivered`, `OrderCompleted`,
  `OrderCancelled`, `OrderRefundRequested`, `OrderRefunded`: the order facts
  claims are judged against (delivered keys, guarantee window, refundable),
  delivered orders counted for the issue rates, compensations' progress;
- delivery's `ArrivalConfirmed`: later claims are out of guarantee;
- payment's `FundsSettled`: shown to agents (where a refund will come from);
- identity's `IdentityVerified`: the buyer's after-sales priority; its
  `UserSuspended`: a suspended account opens no claims (an upheld one moves money);
- inventory's `StockChanged`: sellable keys per offer (may a claim be
  replaced?), and `KeyReplacementFailed`: a replacement falls back to a refund;
- delivery's `KeyReplaced`: the replacement keys reached the buyer (resolved);
- its own ticket events: the summaries, the agent queue and its SLA
  deadlines, issue counters and seller flags.
"""

from __future__ import annotations

from typing import Any

from kami_aftersales import handlers
from kami_aftersales.handlers import AftersalesDeps
from kami_events.catalogue.aftersales import (
    CompensationApproved,
    ReplacementApproved,
    TicketEscalated,
    TicketOpened,
    TicketResolved,
)
from kami_events.catalogue.delivery import ArrivalConfirmed, KeyReplaced
from kami_events.catalogue.identity import IdentityVerified, UserSuspended
from kami_events.catalogue.inventory import KeyReplacementFailed, StockChanged
from kami_events.catalogue.ordering import (
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderRefundRequested,
)
from kami_events.catalogue.payment import FundsSettled
from kami_events.consumer import EventConsumer, Received


def register(consumer: EventConsumer, deps: AftersalesDeps) -> None:
    @consumer.handles(
        OrderPlaced,
        OrderPaid,
        OrderDelivered,
        OrderCompleted,
        OrderCancelled,
        OrderRefundRequested,
        OrderRefunded,
    )
    async def order_event(received: Received[Any]) -> None:
        await handlers.project_order_event(deps, received.envelope)

    @consumer.handles(ArrivalConfirmed)
    async def arrival(received: Received[ArrivalConfirmed]) -> None:
        await handlers.project_arrival(deps, received.envelope)

    @consumer.handles(FundsSettled)
    async def settled(received: Received[FundsSettled]) -> None:
        await handlers.project_settlement(
            deps, received.event.order_id, received.envelope.occurred_at
        )

    @consumer.handles(IdentityVerified)
    async def verified(received: Received[IdentityVerified]) -> None:
        event = received.event
        await deps.stores.record_priority(
            event.user_id,
            received.envelope.aggregate_version,
            event.tier.value,
            event.aftersales_priority,
        )

    @consumer.handles(UserSuspended)
    async def suspended(received: Received[UserSuspended]) -> None:
        event = received.event
        await deps.stores.record_suspension(
            event.user_id, received.envelope.aggregate_version, event.until
        )

    @consumer.handles(
        TicketOpened, TicketEscalated, TicketResolved, CompensationApproved, ReplacementApproved
    )
    async def ticket_event(received: Received[Any]) -> None:
        await handlers.project_ticket_event(deps, received.envelope)

    @consumer.handles(StockChanged)
    async def stock(received: Received[StockChanged]) -> None:
        await handlers.project_stock(deps, received.envelope)

    @consumer.handles(KeyReplaced)
    async def replaced(received: Received[KeyReplaced]) -> None:
        await handlers.complete_replacement(deps, received.envelope)

    @consumer.handles(KeyReplacementFailed)
    async def not_replaced(received: Received[KeyReplacementFailed]) -> None:
        await handlers.refund_instead_of_replacement(deps, received.envelope)
