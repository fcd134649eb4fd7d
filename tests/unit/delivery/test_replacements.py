"""Replacement keys on fakes (issue 6): inventory allocated a new key for a
faulty one; delivery seals it for the buyer, voids the faulty one, tells the
buyer, and never delivers a key held by another order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kami_delivery import handlers
from kami_delivery.adapters.issuers import IssuerDirectory, SimulatedIssuer
from kami_delivery.adapters.ports import InventoryUnavailable, MessageKind, OrderState
from kami_delivery.domain.delivery import delivery_id_for
from kami_delivery.domain.keys import UnavailableStatus
from kami_delivery.domain.rejections import Gone, NotFound
from kami_delivery.handlers import ReplacementUndeliverable
from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.delivery import (
    ArrivalConfirmed,
    DeliveryChannel,
    KeyDelivered,
    KeyReplaced,
)
from kami_events.catalogue.identity import PhoneVerified
from kami_events.catalogue.inventory import ReplacementKeysAllocated
from kami_events.catalogue.ordering import OrderRefunded, OrderRefundRequested
from kami_events.envelope import Envelope
from tests.unit.delivery.events import OFFER, envelope, paid, placed
from tests.unit.delivery.fakes import World, world


async def delivered(w: World, order_id: str = "order-1", **secrets: str) -> KeyDelivered:
    w.inventory.stock(**secrets)
    order = placed(order_id, "buyer-1", now=w.clock(), quantity=len(secrets))
    await handlers.record_order_placed(w.deps, order)
    await handlers.accept_paid_order(w.deps, envelope(paid(order, list(secrets)), at=w.clock()))
    await handlers.deliver_next(w.deps)
    [event] = [
        e for e in w.events(KeyDelivered) if isinstance(e, KeyDelivered) and e.order_id == order_id
    ]
    await handlers.announce_delivery(w.deps, event)
    return event


def allocated(
    new: list[str], faulty: list[str], ticket: str = "t-1", order_id: str = "order-1"
) -> Envelope[ReplacementKeysAllocated]:
    event = ReplacementKeysAllocated(
        offer_id=OFFER, order_id=order_id, ticket_id=ticket, key_ids=new, replaced_key_ids=faulty
    )
    return envelope(event, at=datetime(2026, 3, 1, 12, tzinfo=UTC), producer="inventory")


async def test_the_new_key_reaches_only_the_buyers_vault_and_the_faulty_one_is_voided() -> None:
    w = world()
    await handlers.record_phone(
        w.deps, PhoneVerified(user_id="buyer-1", phone_masked="138****0001")
    )
    await delivered(w, **{"k-1": "HOK-BAD-0001", "k-2": "HOK-GOOD-0002"})
    w.inventory.stock(**{"k-9": "HOK-SPARE-0009"})

    assert await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))

    [replaced] = w.events(KeyReplaced)
    assert replaced == KeyReplaced(
        delivery_id=delivery_id_for("order-1"),
        order_id="order-1",
        buyer_id="buyer-1",
        offer_id=OFFER,
        seller_id="seller-1",
        ticket_id="t-1",
        key_ids=["k-9"],
        replaced_key_ids=["k-1"],
        channels=[DeliveryChannel.VAULT, DeliveryChannel.SMS],
    )
    listed = await handlers.list_vault(w.deps, "buyer-1", order_id="order-1", limit=10)
    assert sorted(e.key_id for e in listed) == ["k-2", "k-9"]
    entry, secret = await handlers.reveal_key(w.deps, "buyer-1", "k-9", client="app")
    assert secret.reveal() == "HOK-SPARE-0009" and entry.owner_id == "buyer-1"
    assert w.audit.records[-1].key_ids == ("k-9",)  # the look is audited
    with pytest.raises(NotFound):
        await handlers.reveal_key(w.deps, "buyer-2", "k-9", client="app")
    with pytest.raises(Gone):
        await handlers.reveal_key(w.deps, "buyer-1", "k-1", client="app")
    assert w.vault.entries["k-1"].sealed == b""  # its ciphertext is destroyed
    with pytest.raises(NotFound):  # nothing left to ask the issuer about
        await handlers.verify_keys(w.deps, "aftersales", "order-1", ["k-1"])
    assert b"HOK-SPARE-0009" not in w.vault.entries["k-9"].sealed  # sealed at rest

    await handlers.announce_replacement(w.deps, replaced)
    await handlers.announce_replacement(w.deps, replaced)  # a redelivery tells nobody twice
    [notice] = [m for m in w.messages.for_user("buyer-1") if m.kind is MessageKind.KEY_REPLACED]
    assert "order-1" in notice.body
    texts = [text for (_, _, text) in w.sms.sent.values()]
    assert len(texts) == 2 and "已更换" in texts[-1]
    assert not any("HOK-" in text for text in texts)


async def test_a_redelivered_allocation_records_nothing_more() -> None:
    w = world()
    await delivered(w, **{"k-1": "HOK-BAD-0001"})
    w.inventory.stock(**{"k-9": "HOK-SPARE-0009"})
    assert await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))

    assert not await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))
    assert len(w.events(KeyReplaced)) == 1
    # The buyer cannot be given back a key the order had before, by another ticket either.
    w.inventory.stock(**{"k-8": "HOK-SPARE-0008"})
    with pytest.raises(ReplacementUndeliverable):
        await handlers.deliver_replacement(w.deps, allocated(["k-1"], ["k-9"], ticket="t-2"))
    assert len(w.events(KeyReplaced)) == 1


async def test_a_key_in_another_orders_vault_is_never_delivered_again() -> None:
    w = world()
    await delivered(w, "order-1", **{"k-1": "HOK-BAD-0001"})
    await delivered(w, "order-2", **{"k-2": "HOK-THEIRS-0002"})

    with pytest.raises(ReplacementUndeliverable):
        await handlers.deliver_replacement(w.deps, allocated(["k-2"], ["k-1"]))

    assert w.events(KeyReplaced) == []
    assert w.vault.entries["k-2"].order_id == "order-2"
    assert not w.vault.entries["k-1"].voided


async def test_keys_inventory_withholds_or_cannot_reveal_are_not_delivered() -> None:
    w = world()
    await delivered(w, **{"k-1": "HOK-BAD-0001"})
    w.inventory.stock(**{"k-9": "HOK-SPARE-0009"})
    w.inventory.down = True
    with pytest.raises(InventoryUnavailable):  # retried by the consumer
        await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))
    w.inventory.down = False
    w.inventory.unavailable["k-9"] = UnavailableStatus.BLOCKED
    with pytest.raises(ReplacementUndeliverable, match="blocked"):
        await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))
    assert w.events(KeyReplaced) == [] and "k-9" not in w.vault.entries


async def test_a_refunded_order_gets_no_replacement() -> None:
    w = world()
    await delivered(w, **{"k-1": "HOK-BAD-0001"})
    w.inventory.stock(**{"k-9": "HOK-SPARE-0009"})
    await handlers.record_order_state(w.deps, "order-1", OrderState.REFUNDED)
    assert not await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))
    assert w.events(KeyReplaced) == [] and "k-9" not in w.vault.entries


async def test_a_later_refund_naming_the_orders_first_keys_voids_their_replacements() -> None:
    w = world()
    await delivered(w, **{"k-1": "HOK-BAD-0001", "k-2": "HOK-GOOD-0002"})
    w.inventory.stock(**{"k-9": "HOK-SPARE-0009"})
    await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))
    common = {
        "order_id": "order-1",
        "buyer_id": "buyer-1",
        "seller_id": "seller-1",
        "offer_id": OFFER,
        "payment_id": "pay-order-1",
        "refund_id": "refund-cb",
        "amount": 2_000,
        "source": RefundSource.SELLER_DEPOSIT,
        "reason": RefundReason.CHARGEBACK,
    }
    # A chargeback: ordering names the keys it knows, the first ones.
    await handlers.record_refund_request(
        w.deps, OrderRefundRequested(**common, void_key_ids=["k-1", "k-2"])
    )
    await handlers.hide_refunded_keys(w.deps, OrderRefunded(**common))

    assert await handlers.list_vault(w.deps, "buyer-1", order_id=None, limit=10) == []
    assert w.vault.entries["k-9"].voided


async def test_a_new_key_the_issuer_vouches_for_confirms_arrival() -> None:
    w = world()
    w.deps.issuers = IssuerDirectory({IssuerDirectory.ANY: SimulatedIssuer()})
    await delivered(w, **{"k-1": "HOK-INVALID-0001", "k-2": "HOK-VALID-0002"})
    assert w.events(ArrivalConfirmed) == []  # one key is invalid: the buyer may claim
    w.inventory.stock(**{"k-9": "HOK-VALID-0009"})
    await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))
    [replaced] = w.events(KeyReplaced)
    assert isinstance(replaced, KeyReplaced)

    await handlers.announce_replacement(w.deps, replaced)

    [confirmed] = w.events(ArrivalConfirmed)
    assert isinstance(confirmed, ArrivalConfirmed)
    assert confirmed.confirmed_by == "key_verification"


async def test_a_new_key_whose_hidden_entry_was_lost_is_fetched_again_on_announcement() -> None:
    w = world()
    await delivered(w, **{"k-1": "HOK-BAD-0001"})
    w.inventory.stock(**{"k-9": "HOK-SPARE-0009"})
    await handlers.deliver_replacement(w.deps, allocated(["k-9"], ["k-1"]))
    [replaced] = w.events(KeyReplaced)
    assert isinstance(replaced, KeyReplaced)
    del w.vault.entries["k-9"]  # say, a replayed KeyDelivered cleared hidden entries

    await handlers.announce_replacement(w.deps, replaced)

    [entry] = await handlers.list_vault(w.deps, "buyer-1", order_id="order-1", limit=10)
    assert entry.key_id == "k-9"
