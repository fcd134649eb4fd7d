"""A reseller's order is paid from its prepaid balance at the reseller price:
the order's total into escrow, the margin to the reseller's margin account;
a short balance fails the payment; the books stay balanced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from kami_events.catalogue.payment import PaymentConfirmed, PaymentFailed, PaymentFailure
from kami_events.catalogue.reseller import ResellerOrderRequested
from kami_events.store import CommitContext
from kami_payment.domain.ledger import buyer_wallet, escrow, reseller_margin
from tests.unit.payment.scenario import Purchase
from tests.unit.payment.world import World

RESELLER_USER = "reseller-user-1"
RESELLER = "reseller-1"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    yield world
    await world.assert_books_balance()


async def requested(
    world: World, purchase: Purchase, reseller_total: int, seen_total: int | None = None
) -> None:
    """`seen_total`: the order's total at the offer price the reseller service saw."""
    total = purchase.total if seen_total is None else seen_total
    event = ResellerOrderRequested(
        order_id=purchase.order_id,
        reseller_id=RESELLER,
        user_id=RESELLER_USER,
        offer_id="offer-1",
        quantity=1,
        unit_price=total,
        reseller_unit_price=reseller_total,
        total=total,
        reseller_total=reseller_total,
        margin=reseller_total - total,
    )
    await world.service.on_reseller_order_requested(
        event, CommitContext(correlation_id=purchase.order_id, causation_id=str(uuid4()))
    )


async def test_a_reserved_reseller_order_is_captured_at_the_reseller_price(world: World) -> None:
    await world.funded_wallet(RESELLER_USER, 5_000)
    purchase = world.purchase(1_000, buyer=RESELLER_USER)
    await requested(world, purchase, 1_150)
    await world.reserved(purchase)

    confirmed = world.last(PaymentConfirmed)
    assert (confirmed.order_id, confirmed.amount) == (purchase.order_id, 1_000)
    assert world.balance(buyer_wallet(RESELLER_USER)) == 5_000 - 1_150
    assert world.balance(escrow(purchase.payment_id)) == 1_000
    assert world.balance(reseller_margin(RESELLER)) == 150
    # The same events again move nothing.
    await requested(world, purchase, 1_150)
    await world.order_event(purchase.reserved())
    assert world.balance(buyer_wallet(RESELLER_USER)) == 5_000 - 1_150
    assert world.event_types(purchase.payment_id) == ["PaymentInitiated", "PaymentConfirmed"]


async def test_the_order_reserved_before_the_terms_arrive_is_paid_when_they_do(
    world: World,
) -> None:
    await world.funded_wallet(RESELLER_USER, 5_000)
    purchase = world.purchase(1_000, buyer=RESELLER_USER)
    await world.reserved(purchase)
    assert world.balance(buyer_wallet(RESELLER_USER)) == 5_000
    await requested(world, purchase, 1_000)  # no markup: no margin posting
    assert world.balance(buyer_wallet(RESELLER_USER)) == 4_000
    assert world.balance(reseller_margin(RESELLER)) == 0


async def test_a_short_prepaid_balance_fails_the_payment_and_moves_nothing(world: World) -> None:
    await world.funded_wallet(RESELLER_USER, 1_100)
    purchase = world.purchase(1_000, buyer=RESELLER_USER)
    await requested(world, purchase, 1_150)
    await world.reserved(purchase)

    failed = world.last(PaymentFailed)
    assert failed.reason is PaymentFailure.INSUFFICIENT_FUNDS
    assert world.balance(buyer_wallet(RESELLER_USER)) == 1_100
    assert world.balance(escrow(purchase.payment_id)) == 0


async def test_an_order_of_someone_else_is_never_charged_to_the_reseller(world: World) -> None:
    await world.funded_wallet(RESELLER_USER, 5_000)
    purchase = world.purchase(1_000, buyer="buyer-1")
    await requested(world, purchase, 1_150)
    await world.reserved(purchase)
    assert world.balance(buyer_wallet(RESELLER_USER)) == 5_000
    assert world.event_types(purchase.payment_id) == []


async def test_a_price_above_the_reseller_price_is_not_charged(world: World) -> None:
    await world.funded_wallet(RESELLER_USER, 5_000)
    purchase = world.purchase(1_200, buyer=RESELLER_USER)  # the price rose to 1 200
    await requested(world, purchase, 1_150, seen_total=1_000)
    await world.reserved(purchase)
    assert world.last(PaymentFailed).reason is PaymentFailure.AMOUNT_MISMATCH
    assert world.balance(buyer_wallet(RESELLER_USER)) == 5_000
