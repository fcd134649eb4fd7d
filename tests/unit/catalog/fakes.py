"""In-memory stand-ins for the catalog's read side, for handler tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from kami_catalog.domain.offer import SellerStanding
from kami_catalog.handlers import CatalogHandlers, Request
from kami_events.clock import ManualClock
from kami_events.store import CommitContext
from kami_events.testing import InMemoryEventStore

OPERATOR = Request(actor_id="op-1", request_id="req-op")


def seller(seller_id: str) -> Request:
    return Request(actor_id=seller_id, request_id=f"req-{seller_id}")


@dataclass
class FakeFacts:
    standings: dict[str, SellerStanding] = field(default_factory=dict)
    suspended_until: dict[str, datetime] = field(default_factory=dict)
    completed: dict[tuple[str, str], str] = field(default_factory=dict)
    offers: dict[str, list[str]] = field(default_factory=dict)

    async def standing_of(self, seller_id: str, now: datetime) -> SellerStanding:
        standing = self.standings.get(seller_id, SellerStanding(seller_id))
        until = self.suspended_until.get(seller_id)
        if standing.suspended and until is not None and until <= now:
            return SellerStanding(
                seller_id,
                deposit_below_minimum=standing.deposit_below_minimum,
                flagged_critical=standing.flagged_critical,
            )
        return standing

    async def completed_order_of(self, buyer_id: str, offer_id: str) -> str | None:
        return self.completed.get((buyer_id, offer_id))

    async def offer_ids_of_seller(self, seller_id: str) -> list[str]:
        return list(self.offers.get(seller_id, []))

    async def offers_awaiting_suspension_end(self, now: datetime) -> list[str]:
        return [
            offer_id
            for seller_id, until in self.suspended_until.items()
            if until <= now
            for offer_id in self.offers.get(seller_id, [])
        ]


@dataclass
class Catalog:
    """Handlers over in-memory stores, with the facts they read."""

    handlers: CatalogHandlers
    store: InMemoryEventStore
    private_store: InMemoryEventStore
    facts: FakeFacts
    clock: ManualClock

    def published(self) -> list[str]:
        return [e.event_type for e in self.store.committed]


def make_catalog() -> Catalog:
    clock = ManualClock()
    store = InMemoryEventStore(producer="catalog", clock=clock)
    private_store = InMemoryEventStore(producer="catalog", clock=clock)
    facts = FakeFacts()
    handlers = CatalogHandlers(store=store, private_store=private_store, facts=facts, clock=clock)
    return Catalog(handlers, store, private_store, facts, clock)


CAUSE = CommitContext(correlation_id="corr-1", causation_id="evt-1")
