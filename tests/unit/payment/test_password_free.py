"""Password-free small payments (小额免密): off by default, turned on with the
payment password, bounded per payment (≤ 200 yuan) and per day, race-safe,
marked, and still under the KYC tier's daily limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kami_events.catalogue.identity import KycTier
from kami_events.catalogue.payment import PaymentConfirmed, PaymentFailed, PaymentFailure
from kami_payment.domain.ledger import buyer_wallet
from kami_payment.domain.payment import PaymentStatus
from kami_payment.domain.refusals import RefusalKind, Refused
from kami_payment.handlers import PaymentPolicy
from tests.unit.payment.scenario import verified
from tests.unit.payment.world import PIN, World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World(PaymentPolicy(password_max_attempts=5, default_daily_limit=50_000))
    yield world
    await world.assert_books_balance()


async def enable(
    world: World,
    limit: int = 5_000,
    cap: int = 8_000,
    pin: str | None = PIN,
    buyer: str = "buyer-1",
) -> None:
    await world.service.set_password_free(
        buyer, enabled=True, per_payment_limit=limit, daily_cap=cap, payment_password=pin
    )


async def test_off_by_default_a_payment_without_the_password_is_refused(world: World) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    order = await world.reserved(world.purchase(1_000))

    with pytest.raises(Refused) as refused:
        await world.pay_by_wallet(order, pin=None)

    assert (refused.value.code, refused.value.kind) == (
        "payment_password_required",
        RefusalKind.INVALID,
    )
    assert not (await world.service.password_free_setting("buyer-1")).setting.enabled
    assert world.event_types(order.payment_id) == ["PaymentInitiated"]


async def test_turning_it_on_takes_the_password_and_limits_within_bounds(world: World) -> None:
    await world.funded_wallet("buyer-1", 5_000)
    for limit, cap, code in (
        (20_001, 30_000, "password_free_limit_too_high"),
        (0, 1_000, "password_free_limit_too_high"),
        (5_000, 4_000, "invalid_password_free_cap"),
        (5_000, 100_001, "invalid_password_free_cap"),
    ):
        with pytest.raises(Refused) as invalid:
            await enable(world, limit, cap)
        assert (invalid.value.code, invalid.value.kind) == (code, RefusalKind.INVALID)
    with pytest.raises(Refused) as no_password:
        await enable(world, pin=None)
    assert no_password.value.code == "payment_password_required"
    with pytest.raises(Refused) as wrong:
        await enable(world, pin="147036")
    assert wrong.value.code == "wrong_payment_password"
    assert not (await world.service.password_free_setting("buyer-1")).setting.enabled

    await enable(world, 20_000, 30_000)

    view = await world.service.password_free_setting("buyer-1")
    assert (view.setting.enabled, view.setting.per_payment_limit, view.setting.daily_cap) == (
        True,
        20_000,
        30_000,
    )


async def test_a_small_payment_goes_without_the_password_and_is_marked(world: World) -> None:
    await world.funded_wallet("buyer-1", 10_000)
    await enable(world)
    order = await world.reserved(world.purchase(3_000))

    outcome = await world.pay_by_wallet(order, pin=None)

    assert outcome.payment.status is PaymentStatus.CONFIRMED
    assert outcome.payment.second_factor_waived
    assert world.last(PaymentConfirmed, order.payment_id).second_factor_waived
    capture = next(
        m
        for m in world.journal.movements.values()
        if m.movement.meta.get("payment_id") == order.payment_id
    )
    assert capture.movement.meta["second_factor_waived"] == 1
    assert (await world.service.password_free_setting("buyer-1")).spent_today == 3_000
    # With the password, a payment is not a password-free one and not counted.
    typed = await world.reserved(world.purchase(1_000))
    paid = await world.pay_by_wallet(typed)
    assert not paid.payment.second_factor_waived
    assert not world.last(PaymentConfirmed, typed.payment_id).second_factor_waived
    assert (await world.service.password_free_setting("buyer-1")).spent_today == 3_000


async def test_over_the_limit_or_the_cap_the_password_is_required(world: World) -> None:
    await world.funded_wallet("buyer-1", 20_000)
    await enable(world, limit=5_000, cap=8_000)
    big = await world.reserved(world.purchase(5_001))
    with pytest.raises(Refused) as over_limit:
        await world.pay_by_wallet(big, pin=None)
    assert over_limit.value.code == "payment_password_required"
    assert "5000 fen" in over_limit.value.message

    first = await world.reserved(world.purchase(5_000))
    await world.pay_by_wallet(first, pin=None)
    second = await world.reserved(world.purchase(4_000))
    with pytest.raises(Refused) as over_cap:
        await world.pay_by_wallet(second, pin=None)

    assert over_cap.value.code == "payment_password_required"
    assert "9000 fen" in over_cap.value.message and "8000 fen" in over_cap.value.message
    assert world.event_types(second.payment_id) == ["PaymentInitiated"]  # nothing failed
    assert (await world.pay_by_wallet(second)).payment.status is PaymentStatus.CONFIRMED
    # The next day the cap starts afresh.
    world.later(days=1)
    third = await world.reserved(world.purchase(4_000))
    assert (await world.pay_by_wallet(third, pin=None)).payment.second_factor_waived


async def test_two_racing_small_payments_cannot_both_pass_a_cap_one_fits(world: World) -> None:
    await world.funded_wallet("buyer-1", 20_000)
    await enable(world, limit=5_000, cap=6_000)
    orders = [await world.reserved(world.purchase(4_000)) for _ in range(2)]

    results = await asyncio.gather(
        *(world.pay_by_wallet(o, pin=None) for o in orders), return_exceptions=True
    )

    paid = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(paid) == 1 and [r.code for r in refused] == ["payment_password_required"]
    assert world.balance(buyer_wallet("buyer-1")) == 16_000


async def test_the_kyc_daily_limit_still_applies(world: World) -> None:
    await world.identity_event(verified("buyer-1", KycTier.PHONE, 3_000))
    await world.funded_wallet("buyer-1", 20_000)
    await enable(world, limit=5_000, cap=8_000)
    order = await world.reserved(world.purchase(4_000))

    with pytest.raises(Refused) as refused:
        await world.pay_by_wallet(order, pin=None)

    assert refused.value.code == "daily_limit_exceeded"
    assert world.last(PaymentFailed, order.payment_id).reason is PaymentFailure.DAILY_LIMIT_EXCEEDED
    # Refused by the tier, it does not use up the password-free cap.
    assert (await world.service.password_free_setting("buyer-1")).spent_today == 0


async def test_a_short_wallet_gives_the_cap_back(world: World) -> None:
    await world.funded_wallet("buyer-1", 1_000)
    await enable(world)
    order = await world.reserved(world.purchase(3_000))

    with pytest.raises(Refused) as short:
        await world.pay_by_wallet(order, pin=None)

    assert short.value.code == "insufficient_funds"
    assert (await world.service.password_free_setting("buyer-1")).spent_today == 0


async def test_turning_it_off_needs_no_password_and_a_lock_stops_it(world: World) -> None:
    await world.funded_wallet("buyer-1", 10_000)
    await enable(world)
    await world.service.set_password_free(
        "buyer-1", enabled=False, per_payment_limit=None, daily_cap=None, payment_password=None
    )
    order = await world.reserved(world.purchase(1_000))
    with pytest.raises(Refused) as off:
        await world.pay_by_wallet(order, pin=None)
    assert off.value.code == "payment_password_required"

    await enable(world)
    for _ in range(5):  # wrong passwords lock wallet payments
        with pytest.raises(Refused):
            await world.service.set_payment_password("buyer-1", "369147", "147036")
    with pytest.raises(Refused) as locked:
        await world.pay_by_wallet(order, pin=None)
    assert (locked.value.code, locked.value.kind) == (
        "payment_password_locked",
        RefusalKind.FORBIDDEN,
    )
