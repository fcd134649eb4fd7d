"""Placing orders: the price comes from the offer, the request is checked
against the offer and product, and the Idempotency-Key makes a retried
request return the same order instead of a second one."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from kami_events.catalogue.ordering import OrderPlaced
from kami_events.money import Money
from kami_ordering.adapters.ports import OrderRequest
from kami_ordering.domain.order import Order
from kami_ordering.domain.terms import PlacementRefused, RefusalKind
from kami_ordering.handlers import IdempotencyKeyReused, PlaceOrder
from tests.unit.ordering.script import (
    BUYER,
    MANUAL_OFFER,
    OFFER,
    PRICE,
    T0,
    SagaScript,
    auto_offer,
)

ACCOUNT = {"game_account": "123456", "server": "north"}


def placed_events(saga: SagaScript) -> list[OrderPlaced]:
    return [e.payload for e in saga.store.committed if isinstance(e.payload, OrderPlaced)]


# -- Idempotency-Key ------------------------------------------------------------------


async def test_the_same_request_under_the_same_key_returns_the_same_order() -> None:
    saga = SagaScript()
    first = await saga.buyer_places_order(quantity=2, key="key-A")
    again = await saga.buyer_places_order(quantity=2, key="key-A")
    assert first.created and not again.created
    assert again.loaded.order.id == first.loaded.order.id
    assert len(placed_events(saga)) == 1


async def test_a_different_request_under_a_used_key_is_refused() -> None:
    saga = SagaScript()
    await saga.buyer_places_order(quantity=2, key="key-A")
    with pytest.raises(IdempotencyKeyReused):
        await saga.buyer_places_order(quantity=3, key="key-A")
    assert len(placed_events(saga)) == 1


async def test_keys_belong_to_one_buyer_only() -> None:
    saga = SagaScript()
    mine = await saga.buyer_places_order(key="key-A")
    theirs = await saga.buyer_places_order(key="key-A", buyer_id="buyer-2")
    assert theirs.created
    assert theirs.loaded.order.id != mine.loaded.order.id
    assert theirs.loaded.order.buyer_id == "buyer-2"


async def test_concurrent_twins_under_one_key_place_one_order() -> None:
    saga = SagaScript()
    results = await asyncio.gather(
        *(saga.buyer_places_order(quantity=1, key="key-twin") for _ in range(5))
    )
    assert len({r.loaded.order.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert len(placed_events(saga)) == 1


async def test_a_request_recorded_before_a_crash_is_committed_by_its_retry_at_its_price() -> None:
    saga = SagaScript()
    # The first attempt recorded its request, then died before committing the order.
    crashed = Order.place(
        "order-crashed",
        buyer_id=BUYER,
        offer=auto_offer(),
        quantity=1,
        buyer_fields={},
        now=T0,
        timers=saga.timers,
    )
    command = PlaceOrder(BUYER, "key-crash", OFFER, 1, {}, "req-1")
    saga.requests.by_key[(BUYER, "key-crash")] = OrderRequest(
        BUYER, "key-crash", command.fingerprint(), crashed.id, crashed.pending_events
    )
    saga.catalog.offers[OFFER] = auto_offer(unit_price=Money.fen(PRICE + 500))  # price moved

    retried = await saga.placement.place(command)
    assert not retried.created
    assert retried.loaded.order.id == "order-crashed"
    assert retried.loaded.order.total == Money.fen(PRICE)  # the price the order was placed at
    assert saga.views.deadline_of("order-crashed") is not None


async def test_a_refused_request_does_not_use_up_its_key() -> None:
    saga = SagaScript()
    with pytest.raises(PlacementRefused):
        await saga.buyer_places_order(quantity=50, key="key-A")
    placed = await saga.buyer_places_order(quantity=2, key="key-A")
    assert placed.created


# -- the price and the terms -------------------------------------------------------------


async def test_the_price_is_the_offers_current_price_and_placed_orders_keep_theirs() -> None:
    saga = SagaScript()
    before = await saga.buyer_places_order(quantity=2)
    saga.catalog.offers[OFFER] = auto_offer(unit_price=Money.fen(8_000))
    after = await saga.buyer_places_order(quantity=2)
    assert after.loaded.order.total == Money.fen(16_000)
    reloaded = await saga.repository.load(before.loaded.order.id)
    assert reloaded is not None and reloaded.order.total == Money.fen(2 * PRICE)


@pytest.mark.parametrize(
    ("setup", "kind", "code"),
    [
        ("unknown_offer", RefusalKind.NOT_FOUND, "offer_not_found"),
        ("delisted", RefusalKind.UNAVAILABLE, "offer_not_available"),
        ("unpublished_product", RefusalKind.UNAVAILABLE, "offer_not_available"),
        ("suspended", RefusalKind.FORBIDDEN, "buyer_suspended"),
    ],
)
async def test_orders_for_what_cannot_be_bought_are_refused(
    setup: str, kind: RefusalKind, code: str
) -> None:
    saga = SagaScript()
    offer_id = OFFER
    if setup == "unknown_offer":
        offer_id = "offer-nobody-listed"
    elif setup == "delisted":
        saga.catalog.offers[OFFER] = auto_offer(listed=False)
    elif setup == "unpublished_product":
        saga.catalog.products.clear()
    else:
        saga.catalog.suspended_until[BUYER] = None
    with pytest.raises(PlacementRefused) as refused:
        await saga.buyer_places_order(offer_id=offer_id)
    assert (refused.value.kind, refused.value.code) == (kind, code)
    assert saga.store.committed == []


async def test_a_suspension_that_ended_no_longer_blocks_orders() -> None:
    saga = SagaScript()
    saga.catalog.suspended_until[BUYER] = T0 + timedelta(hours=1)
    with pytest.raises(PlacementRefused):
        await saga.buyer_places_order()
    saga.clock.advance(timedelta(hours=1, seconds=1))
    assert (await saga.buyer_places_order()).created


@pytest.mark.parametrize("quantity", [0, 6])
async def test_quantity_outside_the_offers_range_is_refused(quantity: int) -> None:
    saga = SagaScript()
    with pytest.raises(PlacementRefused) as refused:
        await saga.buyer_places_order(quantity=quantity)
    assert refused.value.code == "quantity_out_of_range"
    assert refused.value.kind is RefusalKind.INVALID


async def test_an_offers_minimum_quantity_is_enforced() -> None:
    saga = SagaScript()
    saga.catalog.offers[OFFER] = auto_offer(min_quantity=3)
    with pytest.raises(PlacementRefused, match="3 to 5"):
        await saga.buyer_places_order(quantity=2)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"game_account": "123456"}, "missing: server"),
        ({**ACCOUNT, "password": "x"}, "not asked for by this product: password"),
        ({**ACCOUNT, "game_account": "   "}, "game_account is empty"),
        ({**ACCOUNT, "game_account": "1" * 129}, "longer than 128"),
        ({**ACCOUNT, "game_account": "12ab56"}, "game_account does not have the expected format"),
        ({**ACCOUNT, "server": "west"}, "server must be one of: north, south"),
        ({**ACCOUNT, "server": "north\x00"}, "server contains control characters"),
    ],
)
async def test_buyer_fields_must_be_exactly_the_products_and_well_formed(
    fields: dict[str, str], problem: str
) -> None:
    saga = SagaScript()
    with pytest.raises(PlacementRefused) as refused:
        await saga.buyer_places_order(offer_id=MANUAL_OFFER, quantity=1, buyer_fields=fields)
    assert refused.value.code == "buyer_fields_invalid"
    assert problem in refused.value.message


async def test_buyer_fields_are_trimmed_and_a_product_without_fields_takes_none() -> None:
    saga = SagaScript()
    placed = await saga.buyer_places_order(
        offer_id=MANUAL_OFFER,
        quantity=1,
        buyer_fields={"game_account": " 123456 ", "server": "south"},
    )
    assert placed.loaded.order.buyer_fields == {"game_account": "123456", "server": "south"}
    with pytest.raises(PlacementRefused, match="not asked for"):
        await saga.buyer_places_order(offer_id=OFFER, buyer_fields={"server": "north"})


def test_the_fingerprint_covers_offer_quantity_and_fields_only() -> None:
    base = PlaceOrder(BUYER, "k", OFFER, 1, {"a": "1"}, "req-1")
    assert base.fingerprint() == PlaceOrder(BUYER, "k", OFFER, 1, {"a": "1"}, "req-2").fingerprint()
    for other in (
        PlaceOrder(BUYER, "k", "offer-2", 1, {"a": "1"}, "req-1"),
        PlaceOrder(BUYER, "k", OFFER, 2, {"a": "1"}, "req-1"),
        PlaceOrder(BUYER, "k", OFFER, 1, {"a": "2"}, "req-1"),
    ):
        assert other.fingerprint() != base.fingerprint()
