"""Aftersales' handlers and stores on the real MongoDB-compatible server:
issue counters under racing writers, a ticket's life through the agent
queue and SLA escalation with an injected clock, and keys pasted into
tickets never stored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from kami_aftersales import handlers
from kami_aftersales.adapters.counters import HOUR, IssueCounters
from kami_aftersales.adapters.stores import Stores
from kami_aftersales.adapters.verification import RedactionUnavailable, VerificationUnavailable
from kami_aftersales.domain.analytics import FlagPolicy, Seller
from kami_aftersales.domain.claims import ClaimRefused
from kami_aftersales.domain.rules import RulesPolicy, Verdict
from kami_aftersales.domain.ticket import AgentAction, SlaPolicy, Ticket, TicketState
from kami_aftersales.handlers import AftersalesDeps, OpenTicket
from kami_events.catalogue.aftersales import (
    IssueCategory,
    Remedy,
    ReplacementApproved,
    Resolution,
    SellerFlagged,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import DeliveryChannel, KeyReplaced
from kami_events.catalogue.inventory import (
    KeyReplacementFailed,
    ReplacementFailure,
    StockChanged,
)
from kami_events.catalogue.ordering import OrderDelivered, OrderPaid, OrderPlaced
from kami_events.clock import ManualClock
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.mongo import Document
from kami_events.repository import AggregateRepository
from kami_events.store import MongoEventStore

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


class Verifier:
    def __init__(self, verdict: Verdict | None) -> None:
        self.verdict = verdict

    async def verify(self, order_id: str, key_ids: Sequence[str]) -> dict[str, Verdict]:
        if self.verdict is None:
            raise VerificationUnavailable("down")
        return dict.fromkeys(key_ids, self.verdict)


class Redactor:
    """Delivery's redaction: the one key of each order here is `SECRET-<order id>`."""

    def __init__(self) -> None:
        self.down = False
        self.asked: list[str] = []

    async def redact(self, order_id: str, texts: Sequence[str]) -> list[str]:
        self.asked.append(order_id)
        if self.down:
            raise RedactionUnavailable("down")
        return [t.replace(f"SECRET-{order_id}", f"[card key {order_id}-k1]") for t in texts]


class NoTimelines:
    async def timeline(self, order_id: str, bearer_token: str) -> list[dict[str, Any]] | None:
        return None


async def make_deps(db: AsyncDatabase[Document], clock: ManualClock) -> AftersalesDeps:
    store = MongoEventStore(db, producer="aftersales", clock=clock)
    await store.ensure_indexes()
    stores = Stores(db)
    await stores.ensure_indexes()
    counters = IssueCounters.in_database(db)
    await counters.ensure_indexes()
    return AftersalesDeps(
        tickets=AggregateRepository(store, Ticket),
        sellers=AggregateRepository(store, Seller),
        stores=stores,
        counters=counters,
        verifier=Verifier(Verdict.INVALID),
        redactor=Redactor(),
        timelines=NoTimelines(),
        rules=RulesPolicy(),
        sla=SlaPolicy(agent=timedelta(hours=1), senior_agent=timedelta(minutes=30)),
        flags=FlagPolicy(min_orders=2, warning_bp=500, critical_bp=9_000),
        clock=clock,
    )


def wrap(event: Event, version: int, at: datetime) -> Envelope[Any]:
    return Envelope.wrap(
        event,
        producer="ordering",
        aggregate_id=getattr(event, "order_id"),  # noqa: B009
        aggregate_version=version,
        correlation_id=getattr(event, "order_id"),  # noqa: B009
        occurred_at=at,
    )


async def delivered(
    deps: AftersalesDeps,
    order_id: str,
    now: datetime,
    *,
    seller_id: str = "seller-1",
    offer_id: str = "o-1",
) -> None:
    ids = {
        "order_id": order_id,
        "buyer_id": "buyer-1",
        "seller_id": seller_id,
        "offer_id": offer_id,
    }
    events: list[Event] = [
        OrderPlaced(
            **ids,
            product_id="p-1",
            quantity=1,
            unit_price=950,
            total=950,
            delivery_mode=DeliveryMode.AUTO,
            payment_deadline=now + timedelta(minutes=15),
        ),
        OrderPaid(
            **ids,
            payment_id=f"pay-{order_id}",
            product_id="p-1",
            quantity=1,
            key_ids=[f"{order_id}-k1"],
            amount=950,
            delivery_mode=DeliveryMode.AUTO,
        ),
        OrderDelivered(
            **ids,
            delivery_id=f"d-{order_id}",
            key_ids=[f"{order_id}-k1"],
            guarantee_ends_at=now + timedelta(minutes=15),
        ),
    ]
    for version, event in enumerate(events, start=1):
        await handlers.project_order_event(deps, wrap(event, version, now))


async def project_own_events(deps: AftersalesDeps, store_events: list[Envelope[Any]]) -> None:
    """What the consumer does when the ticket's events come back from Kafka."""
    for envelope in store_events:
        if envelope.aggregate_type == "aftersales.ticket":
            await handlers.project_ticket_event(deps, envelope)


async def committed(db: AsyncDatabase[Document]) -> list[Envelope[Any]]:
    store = MongoEventStore(db, producer="aftersales")
    return [e for commit in await store.read_commits(0, 1000) for e in commit.events]


async def test_counters_count_each_event_once_however_many_writers_race(
    mongo_db: AsyncDatabase[Document],
) -> None:
    counters = IssueCounters.in_database(mongo_db)
    await counters.ensure_indexes()
    ids = [f"t-{n}" for n in range(12)]
    results = await asyncio.gather(
        *(counters.add("seller:s-1", START, i, {"tickets": 1}) for i in ids + ids[:6])
    )
    assert sum(results) == 12  # the repeats changed nothing
    assert await counters.read("seller:s-1", START) == {"tickets": 12}
    # Another process, which remembers nothing, finds the count and the
    # events in it.
    other = IssueCounters.in_database(mongo_db)
    assert await other.add("seller:s-1", START, "t-3", {"tickets": 1}) is False
    assert await other.add("seller:s-1", START, "t-12", {"tickets": 1}) is True
    assert await counters.read("seller:s-1", START) == {"tickets": 13}
    # Each revision carries one event, however many its bucket counts.
    newest = await mongo_db["issue_counts"].find_one({"event_key": "seller:s-1|20260501|t-12"})
    assert newest is not None and set(newest) == {"_id", "event_key", "counts"}
    await counters.add("seller:s-1", START - timedelta(days=1), "t-old", {"tickets": 2})
    await counters.add("seller:s-1", START - timedelta(days=7), "t-older", {"tickets": 5})
    assert await counters.window("seller:s-1", START, 7) == {"tickets": 15}
    await counters.add("platform", START, "t-x", {"p|other": 1}, unit=HOUR)
    assert await counters.window("platform", START + timedelta(minutes=59), 1, unit=HOUR) == {
        "p|other": 1
    }
    assert await counters.window("platform", START + timedelta(hours=1), 1, unit=HOUR) == {}


async def test_counters_go_on_from_a_bucket_counted_in_the_layout_before(
    mongo_db: AsyncDatabase[Document],
) -> None:
    # The layout before: revisions carrying every event id of their bucket.
    await mongo_db["issue_counters"].insert_many(
        [
            {"_id": "offer:o-1|20260501", "rev": 1},
            {"_id": "offer:o-1|20260501|000001", "superseded": True},
            {
                "_id": "offer:o-1|20260501|000002",
                "counts": {"orders": 2},
                "events": ["order-1", "order-2"],
            },
        ]
    )
    counters = IssueCounters.in_database(mongo_db)
    await counters.ensure_indexes()
    assert await counters.read("offer:o-1", START) == {"orders": 2}
    assert await counters.add("offer:o-1", START, "order-2", {"orders": 1}) is False
    assert await counters.add("offer:o-1", START, "order-3", {"orders": 1}) is True
    assert await IssueCounters.in_database(mongo_db).read("offer:o-1", START) == {"orders": 3}


async def test_an_upheld_claim_is_compensated_and_an_unverifiable_one_escalates_by_sla(
    mongo_db: AsyncDatabase[Document],
) -> None:
    clock = ManualClock(START)
    deps = await make_deps(mongo_db, clock)
    await delivered(deps, "order-1", START)
    await delivered(deps, "order-2", START)

    upheld = await handlers.open_ticket(
        deps,
        OpenTicket("buyer-1", "order-1", IssueCategory.KEY_INVALID, [], "bad", (), "k-1", "r-1"),
    )
    assert upheld.ticket.compensation is not None and upheld.ticket.compensation.amount == 950

    deps.verifier = Verifier(None)  # the issuer cannot be reached: an agent decides
    waiting = await handlers.open_ticket(
        deps,
        OpenTicket("buyer-1", "order-2", IssueCategory.KEY_INVALID, [], "bad", (), "k-2", "r-2"),
    )
    again = await handlers.open_ticket(
        deps,
        OpenTicket("buyer-1", "order-2", IssueCategory.KEY_INVALID, [], "bad", (), "k-2", "r-3"),
    )
    assert again.created is False and again.ticket.id == waiting.ticket.id
    await project_own_events(deps, await committed(mongo_db))
    queue = await deps.stores.queue()
    assert [doc["_id"] for doc in queue] == [waiting.ticket.id]

    # Two delivered orders, two tickets: the seller is flagged (min_orders=2 here).
    seller = await deps.sellers.get("seller-1")
    assert seller is not None and seller.flags
    assert any(isinstance(e.payload, SellerFlagged) for e in await committed(mongo_db))

    assert await handlers.escalate_overdue(deps) == 0
    clock.advance(timedelta(hours=1))
    assert await handlers.escalate_overdue(deps) == 1
    assert await handlers.escalate_overdue(deps) == 0  # the new deadline is not due
    ticket = await deps.tickets.get(waiting.ticket.id)
    assert ticket is not None and ticket.level is not None
    assert ticket.level.value == "senior_agent"
    assert (await deps.stores.queue())[0]["level"] == "senior_agent"

    decided = await handlers.decide_ticket(
        deps,
        waiting.ticket.id,
        agent_id="agent-1",
        action=AgentAction.REJECT,
        amount=None,
        note="the issuer says it was redeemed by you",
        request_id="r-4",
    )
    assert decided.resolution is not None and decided.resolution.value == "rejected"
    await project_own_events(deps, await committed(mongo_db))
    assert await deps.stores.queue() == []
    assert await deps.stores.open_ticket_of("order-2") is None
    messages = await deps.stores.messages_of(waiting.ticket.id)
    assert [m.author_role for m in messages] == ["buyer", "support"]


def pool_event(event: Event, version: int, at: datetime, producer: str) -> Envelope[Any]:
    return Envelope.wrap(
        event,
        producer=producer,
        aggregate_id=event.aggregate_id,  # type: ignore[attr-defined]
        aggregate_version=version,
        correlation_id=getattr(event, "order_id", "o-1"),
        occurred_at=at,
    )


async def test_a_replacement_holds_the_ticket_open_until_the_key_arrives_or_refunds(
    mongo_db: AsyncDatabase[Document],
) -> None:
    clock = ManualClock(START)
    deps = await make_deps(mongo_db, clock)
    await delivered(deps, "order-1", START)
    await delivered(deps, "order-2", START)
    # Inventory says the offer's pool has one sellable key (and an older, replayed count).
    await handlers.project_stock(
        deps,
        pool_event(StockChanged(offer_id="o-1", available=1, reserved=0), 7, START, "inventory"),
    )
    await handlers.project_stock(
        deps,
        pool_event(StockChanged(offer_id="o-1", available=0, reserved=0), 6, START, "inventory"),
    )
    assert await deps.stores.stock_of("o-1") == 1

    def claim(order_id: str, key: str) -> OpenTicket:
        return OpenTicket(
            "buyer-1",
            order_id,
            IssueCategory.KEY_INVALID,
            [],
            "bad",
            (),
            key,
            f"r-{key}",
            preferred_remedy=Remedy.REPLACEMENT,
        )

    opened = await handlers.open_ticket(deps, claim("order-1", "k-1"))
    ticket = opened.ticket
    assert ticket.state is TicketState.REPLACING and ticket.compensation is None
    approved = [e.payload for e in await committed(mongo_db)]
    assert any(isinstance(e, ReplacementApproved) for e in approved)
    # The order's one open ticket is this one until the keys arrive.
    assert (await deps.stores.open_ticket_of("order-1") or {}).get("ticket_id") == ticket.id
    await project_own_events(deps, await committed(mongo_db))
    assert (await deps.stores.ticket(ticket.id) or {})["state"] == "replacing"
    assert await deps.stores.queue() == []

    replaced = KeyReplaced(
        delivery_id="d-order-1",
        order_id="order-1",
        buyer_id="buyer-1",
        offer_id="o-1",
        seller_id="seller-1",
        ticket_id=ticket.id,
        key_ids=["o-1-spare"],
        replaced_key_ids=["order-1-k1"],
        channels=[DeliveryChannel.VAULT],
    )
    assert await handlers.complete_replacement(deps, pool_event(replaced, 2, START, "delivery"))
    assert not await handlers.complete_replacement(deps, pool_event(replaced, 2, START, "delivery"))
    done = await deps.tickets.get(ticket.id)
    assert done is not None and done.resolution is Resolution.KEY_REPLACED and done.automatic
    assert await deps.stores.open_ticket_of("order-1") is None
    facts = await deps.stores.order_facts("order-1")
    assert facts is not None and facts.delivered_key_ids == ("o-1-spare",)
    assert facts.refundable == 950  # no money moved
    outcome = await deps.stores.replacement_of("order-1", ticket.id)
    assert outcome is not None and outcome["key_ids"] == ["o-1-spare"]

    # The second order's replacement comes back unallocated: refunded instead.
    second = (await handlers.open_ticket(deps, claim("order-2", "k-2"))).ticket
    assert second.state is TicketState.REPLACING
    failed = KeyReplacementFailed(
        offer_id="o-1",
        order_id="order-2",
        ticket_id=second.id,
        reason=ReplacementFailure.OUT_OF_STOCK,
        requested=1,
        available=0,
    )
    assert await handlers.refund_instead_of_replacement(
        deps, pool_event(failed, 9, START, "inventory")
    )
    refunded = await deps.tickets.get(second.id)
    assert refunded is not None and refunded.compensation is not None
    assert (refunded.compensation.amount, refunded.compensation.void_key_ids) == (
        950,
        ("order-2-k1",),
    )
    assert refunded.resolution is Resolution.REFUND_FULL
    assert await deps.stores.open_ticket_of("order-2") is None


async def test_a_key_pasted_into_a_ticket_is_stored_as_its_id_or_not_at_all(
    mongo_db: AsyncDatabase[Document],
) -> None:
    clock = ManualClock(START)
    deps = await make_deps(mongo_db, clock)
    redactor = Redactor()
    deps.redactor = redactor
    await delivered(deps, "order-1", START)
    opened = await handlers.open_ticket(
        deps,
        OpenTicket(
            "buyer-1",
            "order-1",
            IssueCategory.OTHER,
            [],
            "the key SECRET-order-1 says invalid",
            ("https://img.example.com/SECRET-order-1.png",),
            "k-1",
            "r-1",
        ),
    )
    await handlers.post_message(
        deps,
        opened.ticket.id,
        author_id="buyer-1",
        author_role="buyer",
        text="again: SECRET-order-1",
        evidence_urls=(),
    )
    # Delivery cannot answer: the message is refused, nothing of it stored.
    redactor.down = True
    with pytest.raises(ClaimRefused) as refused:
        await handlers.post_message(
            deps,
            opened.ticket.id,
            author_id="buyer-1",
            author_role="buyer",
            text="and again: SECRET-order-1",
            evidence_urls=(),
        )
    assert (refused.value.status, refused.value.code) == (503, "key_check_unavailable")
    assert redactor.asked == ["order-1"] * 3

    stored = [doc async for doc in mongo_db["messages"].find({})]
    assert [doc["text"] for doc in stored] == [
        "the key [card key order-1-k1] says invalid",
        "again: [card key order-1-k1]",
    ]
    assert stored[0]["evidence_urls"] == ["https://img.example.com/[card key order-1-k1].png"]
    assert "SECRET-order-1" not in repr([doc async for doc in mongo_db["events"].find({})])


async def test_a_suspended_buyer_opens_no_claim_until_the_suspension_ends(
    mongo_db: AsyncDatabase[Document],
) -> None:
    clock = ManualClock(START)
    deps = await make_deps(mongo_db, clock)
    await delivered(deps, "order-1", START)
    await deps.stores.record_priority("buyer-1", 3, "advanced", 5)
    await deps.stores.record_suspension("buyer-1", 4, START + timedelta(minutes=10))
    await deps.stores.record_suspension("buyer-1", 2, None)  # an older one redelivered

    def claim(key: str) -> OpenTicket:
        return OpenTicket("buyer-1", "order-1", IssueCategory.KEY_INVALID, [], "bad", (), key, key)

    with pytest.raises(ClaimRefused) as refused:
        await handlers.open_ticket(deps, claim("k-1"))
    assert (refused.value.status, refused.value.code) == (403, "buyer_suspended")
    assert await committed(mongo_db) == []  # no ticket, no compensation
    assert await deps.stores.open_ticket_of("order-1") is None

    clock.advance(timedelta(minutes=10))  # still inside the 15-minute guarantee window
    opened = await handlers.open_ticket(deps, claim("k-2"))
    assert opened.created and opened.ticket.compensation is not None
    assert opened.ticket.priority == 5  # the priority outlived the suspension's record
