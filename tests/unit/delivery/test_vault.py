"""The buyer's side on fakes: announcements, reveal, export, audit, voiding, arrival."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kami_delivery import handlers
from kami_delivery.adapters.ports import MessageKind, OrderState
from kami_delivery.domain.keys import UnavailableStatus
from kami_delivery.domain.rejections import Conflict, Gone, NotFound
from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.delivery import ArrivalConfirmed, DeliveryFailed, KeyDelivered
from kami_events.catalogue.identity import PhoneVerified
from kami_events.catalogue.ordering import OrderRefunded, OrderRefundRequested
from tests.unit.delivery.events import envelope, paid, placed
from tests.unit.delivery.fakes import World, world

SECRETS = {"k-1": "AAAA-BBBB-CCCC-1111", "k-2": "AAAA-BBBB-CCCC-2222"}


async def delivered(w: World, *, phone: bool = True) -> KeyDelivered:
    w.inventory.stock(**SECRETS)
    if phone:
        await handlers.record_phone(
            w.deps, PhoneVerified(user_id="buyer-1", phone_masked="138****0001")
        )
    order = placed("order-1", "buyer-1", now=w.clock())
    await handlers.record_order_placed(w.deps, order)
    await handlers.accept_paid_order(w.deps, envelope(paid(order, list(SECRETS)), at=w.clock()))
    await handlers.deliver_next(w.deps)
    [event] = w.events(KeyDelivered)
    assert isinstance(event, KeyDelivered)
    return event


async def test_key_delivered_announces_on_the_site_and_by_text_without_the_secret() -> None:
    w = world()
    event = await delivered(w)
    await handlers.announce_delivery(w.deps, event)
    await handlers.announce_delivery(w.deps, event)  # a redelivery sends nothing twice

    [message] = w.messages.for_user("buyer-1")
    assert message.kind is MessageKind.KEYS_DELIVERED and "order-1" in message.body
    [(user, phone, text)] = w.sms.sent.values()
    assert (user, phone) == ("buyer-1", "138****0001")
    for secret in SECRETS.values():
        assert secret not in text and secret not in message.body


async def test_no_text_for_a_buyer_without_a_verified_phone() -> None:
    w = world()
    event = await delivered(w, phone=False)
    assert [c.value for c in event.channels] == ["vault"]
    await handlers.announce_delivery(w.deps, event)
    assert w.sms.sent == {} and len(w.messages.for_user("buyer-1")) == 1


async def test_announcement_publishes_keys_a_crash_left_hidden() -> None:
    w = world()
    event = await delivered(w)
    # As if the worker died between the commit and publishing.
    w.vault.entries = {k: replace(e, visible=False) for k, e in w.vault.entries.items()}
    assert await handlers.list_vault(w.deps, "buyer-1", order_id=None, limit=10) == []
    await handlers.announce_delivery(w.deps, event)
    listed = await handlers.list_vault(w.deps, "buyer-1", order_id=None, limit=10)
    assert {e.key_id for e in listed} == {"k-1", "k-2"}


async def test_failed_sms_is_raised_so_the_consumer_retries() -> None:
    w = world()
    event = await delivered(w)
    w.sms.fail = True
    with pytest.raises(ConnectionError):
        await handlers.announce_delivery(w.deps, event)


async def test_owner_reveals_a_key_and_every_reveal_is_audited_without_the_secret() -> None:
    w = world()
    await delivered(w)

    entry, secret = await handlers.reveal_key(w.deps, "buyer-1", "k-1", client="1.2.3.4 curl")
    await handlers.reveal_key(w.deps, "buyer-1", "k-1", client=None)

    assert secret.reveal() == SECRETS["k-1"] and entry.order_id == "order-1"
    assert [(r.user_id, r.action, r.key_ids) for r in w.audit.records] == [
        ("buyer-1", "reveal", ("k-1",)),
        ("buyer-1", "reveal", ("k-1",)),
    ]
    assert SECRETS["k-1"] not in repr(w.audit.records)


async def test_someone_elses_key_is_not_found_and_not_audited() -> None:
    w = world()
    await delivered(w)
    with pytest.raises(NotFound):
        await handlers.reveal_key(w.deps, "buyer-2", "k-1", client=None)
    with pytest.raises(NotFound):
        await handlers.reveal_key(w.deps, "buyer-1", "k-404", client=None)
    assert await handlers.list_vault(w.deps, "buyer-2", order_id=None, limit=10) == []
    assert (
        await handlers.export_keys(
            w.deps, "buyer-2", export_format="csv", order_id=None, limit=10, client=None
        )
        == []
    )
    assert w.audit.records == []


async def test_export_gives_the_owners_plaintext_once_audited() -> None:
    w = world()
    await delivered(w)
    rows = await handlers.export_keys(
        w.deps, "buyer-1", export_format="txt", order_id="order-1", limit=100, client=None
    )
    assert sorted(s.reveal() for _, s in rows) == sorted(SECRETS.values())
    [record] = w.audit.records
    assert record.action == "export" and record.export_format == "txt"
    assert sorted(record.key_ids) == ["k-1", "k-2"] and record.order_ids == ("order-1",)


async def test_refunded_orders_voided_keys_leave_the_vault() -> None:
    w = world()
    await delivered(w)
    common = {
        "order_id": "order-1",
        "buyer_id": "buyer-1",
        "seller_id": "seller-1",
        "offer_id": "offer-1",
        "payment_id": "pay-order-1",
        "refund_id": "refund-1",
        "amount": 2_000,
        "source": RefundSource.SELLER_DEPOSIT,
        "reason": RefundReason.CLAIM_UPHELD,
    }
    await handlers.record_refund_request(
        w.deps, OrderRefundRequested(**common, void_key_ids=["k-2"])
    )
    await handlers.hide_refunded_keys(w.deps, OrderRefunded(**common))

    listed = await handlers.list_vault(w.deps, "buyer-1", order_id=None, limit=10)
    assert [e.key_id for e in listed] == ["k-1"]
    with pytest.raises(Gone):
        await handlers.reveal_key(w.deps, "buyer-1", "k-2", client=None)
    assert w.vault.entries["k-2"].sealed == b""  # the ciphertext is destroyed
    order = await w.orders.get("order-1")
    assert order is not None and order.state is OrderState.REFUNDED


async def test_failed_delivery_tells_the_buyer_a_refund_is_coming() -> None:
    w = world()
    w.inventory.stock(**SECRETS)
    w.inventory.unavailable["k-1"] = UnavailableStatus.EXPIRED
    order = placed("order-1", "buyer-1", now=w.clock())
    await handlers.record_order_placed(w.deps, order)
    await handlers.accept_paid_order(w.deps, envelope(paid(order, list(SECRETS)), at=w.clock()))
    await handlers.deliver_next(w.deps)
    [failed] = w.events(DeliveryFailed)
    assert isinstance(failed, DeliveryFailed)
    await handlers.announce_failure(w.deps, failed)
    [message] = w.messages.for_user("buyer-1")
    assert message.kind is MessageKind.DELIVERY_FAILED and "refunded" in message.body


async def test_buyer_confirms_arrival_once() -> None:
    w = world()
    await delivered(w)
    assert await handlers.confirm_arrival(w.deps, "buyer-1", "order-1", "req-1") is True
    assert await handlers.confirm_arrival(w.deps, "buyer-1", "order-1", "req-2") is False
    assert [type(e) for e in w.events()] == [KeyDelivered, ArrivalConfirmed]


async def test_arrival_refused_for_others_before_delivery_and_after_refund() -> None:
    w = world()
    order = placed("order-1", "buyer-1", now=w.clock())
    await handlers.record_order_placed(w.deps, order)
    with pytest.raises(NotFound):
        await handlers.confirm_arrival(w.deps, "buyer-2", "order-1", "req")
    with pytest.raises(Conflict) as early:
        await handlers.confirm_arrival(w.deps, "buyer-1", "order-1", "req")
    assert early.value.code == "not_delivered"
    await w.orders.set_state("order-1", OrderState.REFUNDED)
    with pytest.raises(Conflict) as refunded:
        await handlers.confirm_arrival(w.deps, "buyer-1", "order-1", "req")
    assert refunded.value.code == "order_refunded"
    assert w.events() == []
