"""Deposit minimums per seller category: each seller is held to the minimum of
the category identity approved it for (`SellerApproved.category`)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.payment import DepositBelowMinimum, DepositChanged
from kami_payment.domain.parties import DepositMinimums
from kami_payment.settings import PaymentSettings
from tests.unit.payment.scenario import seller_approved
from tests.unit.payment.world import TEST_POLICY, World

SECRET = "x" * 32


def test_a_category_without_its_own_minimum_keeps_the_default() -> None:
    minimums = DepositMinimums(10_000, {"games": 30_000, "life": 0})
    assert minimums.for_category("games") == 30_000
    assert minimums.for_category("life") == 0  # a category may need no deposit
    assert minimums.for_category("education") == 10_000
    assert minimums.for_category(None) == 10_000


def test_the_minimums_are_configured_as_json_per_category(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAMI_PAYMENT_DEPOSIT_MINIMUMS", '{"games": 200000, "video-vip": 50000}')
    settings = PaymentSettings(payment_wechat_pay_secret=SECRET, payment_alipay_secret=SECRET)
    assert settings.payment_deposit_minimums == {"games": 200_000, "video-vip": 50_000}
    assert settings.payment_deposit_minimum == 100_000  # the default for the others
    for bad in ('{"Games!": 1}', '{"games": -1}'):
        monkeypatch.setenv("KAMI_PAYMENT_DEPOSIT_MINIMUMS", bad)
        with pytest.raises(ValidationError):
            PaymentSettings(payment_wechat_pay_secret=SECRET, payment_alipay_secret=SECRET)


async def test_two_sellers_with_the_same_balance_are_held_to_their_own_minimums() -> None:
    world = World(replace(TEST_POLICY, deposit_minimums={"games": 30_000}))
    await world.identity_event(seller_approved("seller-games", category="games"))
    await world.identity_event(seller_approved("seller-other", category="education"))
    await world.funded_deposit("seller-games", 36_000)
    await world.funded_deposit("seller-other", 30_000)
    assert world.last(DepositChanged, "seller-games").minimum == 30_000
    assert world.last(DepositChanged, "seller-other").minimum == 10_000

    # An upheld claim draws 6000 from the games seller's deposit: 30 000 left,
    # the same as the other seller's balance.
    await world.funded_wallet("buyer-1", 6_000)
    order = await world.reserved(world.purchase(6_000, seller="seller-games"))
    await world.pay_by_wallet(order)
    await world.order_event(order.delivered())
    await world.order_event(
        order.refund_requested(
            "claim-1", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )
    assert world.last(DepositChanged, "seller-games").balance == 30_000
    assert "DepositBelowMinimum" not in world.event_types("seller-games")  # at its minimum

    order = await world.reserved(world.purchase(1, seller="seller-games"))
    await world.funded_wallet("buyer-1", 1)
    await world.pay_by_wallet(order)
    await world.order_event(order.delivered())
    await world.order_event(
        order.refund_requested(
            "claim-2", source=RefundSource.SELLER_DEPOSIT, reason=RefundReason.CLAIM_UPHELD
        )
    )

    below = world.last(DepositBelowMinimum, "seller-games")
    assert (below.balance, below.minimum, below.shortfall) == (29_999, 30_000, 1)
    games = await world.service.deposit("seller-games")
    other = await world.service.deposit("seller-other")
    assert (games.category, games.minimum, games.shortfall) == ("games", 30_000, 1)
    assert (other.category, other.minimum, other.shortfall) == ("education", 10_000, 0)
    assert "DepositBelowMinimum" not in world.event_types("seller-other")
    assert await world.service.deposits_below_minimum() == 1
    await world.assert_books_balance()
