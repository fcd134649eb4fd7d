"""What delivery does for after-sales on fakes: key verdicts from the issuer
(never the keys), free text cleared of the order's keys, the "not received"
reminder, and sellers told of blocked keys."""

from __future__ import annotations

import pytest

from kami_delivery import handlers
from kami_delivery.adapters.issuers import IssuerDirectory, SimulatedIssuer, Verdict
from kami_delivery.adapters.ports import MessageKind
from kami_delivery.domain.rejections import Forbidden, NotFound
from kami_events.catalogue.aftersales import Resolution, TicketResolved
from kami_events.catalogue.catalog import OfferListed
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import ArrivalConfirmed, KeyDelivered
from kami_events.catalogue.identity import PhoneVerified
from kami_events.catalogue.inventory import BlockReason, KeysBlocked
from tests.unit.delivery.events import envelope, paid, placed
from tests.unit.delivery.fakes import World, world

SECRETS = {"k-1": "HOK-INVALID-0001", "k-2": "HOK-USED-0002", "k-3": "HOK-VALID-0003"}


async def delivered(w: World, secrets: dict[str, str]) -> KeyDelivered:
    w.inventory.stock(**secrets)
    await handlers.record_phone(
        w.deps, PhoneVerified(user_id="buyer-1", phone_masked="138****0001")
    )
    order = placed("order-1", "buyer-1", now=w.clock())
    await handlers.record_order_placed(w.deps, order)
    await handlers.accept_paid_order(w.deps, envelope(paid(order, list(secrets)), at=w.clock()))
    await handlers.deliver_next(w.deps)
    [event] = w.events(KeyDelivered)
    assert isinstance(event, KeyDelivered)
    await handlers.announce_delivery(w.deps, event)
    return event


async def test_the_simulated_issuer_judges_by_the_marker_a_test_key_carries() -> None:
    w = world()
    w.deps.issuers = IssuerDirectory({IssuerDirectory.ANY: SimulatedIssuer()})
    await delivered(w, {**SECRETS, "k-4": "HOK-PLAIN-0004"})
    verdicts = await handlers.verify_keys(
        w.deps, "aftersales", "order-1", ["k-1", "k-2", "k-3", "k-4"]
    )
    assert verdicts == [
        ("k-1", Verdict.INVALID),
        ("k-2", Verdict.ALREADY_USED),
        ("k-3", Verdict.VALID),
        ("k-4", Verdict.UNKNOWN),
    ]


async def test_a_product_without_an_issuer_is_unknown_and_only_aftersales_may_ask() -> None:
    w = world()
    await delivered(w, SECRETS)
    assert await handlers.verify_keys(w.deps, "aftersales", "order-1", ["k-1"]) == [
        ("k-1", Verdict.UNKNOWN)
    ]
    with pytest.raises(Forbidden):
        await handlers.verify_keys(w.deps, "catalog", "order-1", ["k-1"])
    with pytest.raises(NotFound):
        await handlers.verify_keys(w.deps, "aftersales", "order-2", ["k-1"])


async def test_the_orders_keys_pasted_into_free_text_are_replaced_by_their_ids() -> None:
    w = world()
    await delivered(w, {"k-1": "ABCD-EFGH-1234", "k-2": "ABCD-EFGH-12345", "k-3": "ZZZZ-0003"})
    texts, found = await handlers.redact_keys(
        w.deps,
        "aftersales",
        "order-1",
        [
            "key abcd efgh 1234 is used, ABCD-EFGH-12345 too",  # retyped; a longer one
            "https://img.example.com/ABCDEFGH1234.png",
            "ZZZZ-0004 is not mine",
        ],
    )
    assert texts == [
        "key [card key k-1] is used, [card key k-2] too",
        "https://img.example.com/[card key k-1].png",
        "ZZZZ-0004 is not mine",
    ]
    assert found == 3


async def test_a_voided_key_is_shredded_and_no_longer_recognised() -> None:
    w = world()
    await delivered(w, {"k-1": "ABCD-EFGH-1234", "k-2": "ZZZZ-0002"})
    await w.vault.void("order-1", ["k-1"])
    texts, found = await handlers.redact_keys(
        w.deps, "aftersales", "order-1", ["ABCD-EFGH-1234 and ZZZZ-0002"]
    )
    assert (texts, found) == (["ABCD-EFGH-1234 and [card key k-2]"], 1)


async def test_only_aftersales_may_have_text_cleared_of_keys_and_only_for_a_known_order() -> None:
    w = world()
    await delivered(w, {"k-1": "ABCD-EFGH-1234"})
    with pytest.raises(Forbidden):
        await handlers.redact_keys(w.deps, "catalog", "order-1", ["ABCD-EFGH-1234"])
    with pytest.raises(NotFound):
        await handlers.redact_keys(w.deps, "aftersales", "order-2", ["ABCD-EFGH-1234"])


async def test_a_not_received_ticket_reminds_the_buyer_once_on_the_site_and_by_text() -> None:
    w = world()
    await delivered(w, {"k-1": "AAAA-1"})
    resolved = TicketResolved(
        ticket_id="t-1",
        order_id="order-1",
        resolution=Resolution.NOTIFICATION_RESENT,
        resolved_by="rule-vault-redirect",
        automatic=True,
    )
    await handlers.remind_of_delivery(w.deps, resolved)
    await handlers.remind_of_delivery(w.deps, resolved)  # a redelivery: no second reminder
    reminders = [
        m for m in w.messages.for_user("buyer-1") if m.kind is MessageKind.DELIVERY_REMINDER
    ]
    assert len(reminders) == 1 and "order-1" in reminders[0].body
    assert len(w.sms.sent) == 2  # the delivery's text and the reminder
    rejected = TicketResolved(
        ticket_id="t-2",
        order_id="order-1",
        resolution=Resolution.REJECTED,
        resolved_by="agent-1",
        automatic=False,
    )
    await handlers.remind_of_delivery(w.deps, rejected)
    assert len(w.messages.for_user("buyer-1")) == 2


async def test_the_seller_hears_of_keys_blocked_near_expiry() -> None:
    w = world()
    await handlers.record_offer(
        w.deps,
        OfferListed(
            offer_id="offer-1",
            product_id="p-1",
            seller_id="seller-1",
            unit_price=100,
            delivery_mode=DeliveryMode.AUTO,
            manual_delivery_sla_minutes=None,
            guarantee_window_minutes=15,
            max_quantity_per_order=5,
        ),
    )
    blocked = KeysBlocked(
        offer_id="offer-1", key_ids=["k-1", "k-2"], reason=BlockReason.NEAR_EXPIRY
    )
    await handlers.notify_keys_blocked(w.deps, blocked, "event-1")
    await handlers.notify_keys_blocked(w.deps, blocked, "event-1")
    [message] = w.messages.for_user("seller-1")
    assert message.kind is MessageKind.KEYS_BLOCKED and "2 key(s)" in message.title
    by_seller = KeysBlocked(offer_id="offer-1", key_ids=["k-3"], reason=BlockReason.SELLER_BLOCKED)
    await handlers.notify_keys_blocked(w.deps, by_seller, "event-2")
    assert len(w.messages.for_user("seller-1")) == 1


async def test_arrival_is_confirmed_when_the_issuer_vouches_for_every_key() -> None:
    w = world()
    w.deps.issuers = IssuerDirectory({IssuerDirectory.ANY: SimulatedIssuer()})
    await delivered(w, {"k-1": "HOK-VALID-1", "k-2": "HOK-VALID-2"})
    [confirmed] = w.events(ArrivalConfirmed)
    assert isinstance(confirmed, ArrivalConfirmed)
    assert confirmed.confirmed_by == "key_verification"


async def test_one_key_the_issuer_does_not_vouch_for_leaves_arrival_to_the_buyer() -> None:
    w = world()
    w.deps.issuers = IssuerDirectory({IssuerDirectory.ANY: SimulatedIssuer()})
    await delivered(w, {"k-1": "HOK-VALID-1", "k-2": "HOK-PLAIN-2"})
    assert w.events(ArrivalConfirmed) == []
    assert await handlers.confirm_arrival(w.deps, "buyer-1", "order-1", "req-1")
    [confirmed] = w.events(ArrivalConfirmed)
    assert isinstance(confirmed, ArrivalConfirmed) and confirmed.confirmed_by == "buyer"
