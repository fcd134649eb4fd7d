"""The payment password's argon2id checks: the bounded pool refuses (429)
before anything changes, and hashes are redone under new parameters."""

from __future__ import annotations

import pytest

from kami_payment.domain.payment import PaymentStatus
from kami_payment.domain.refusals import RefusalKind, Refused
from kami_web.passwords import (
    Argon2Parameters,
    CheckPoolLimits,
    PasswordHasher,
)
from tests.unit.payment.world import CHEAP_ARGON2, PIN, World


async def test_a_busy_pool_is_a_429_that_costs_no_password_attempt() -> None:
    world = World()
    world.hasher = PasswordHasher(CHEAP_ARGON2, CheckPoolLimits(concurrency=1, max_queued=0))
    world.service.hasher = world.hasher
    await world.funded_wallet("buyer-1", 5_000)
    order = await world.reserved(world.purchase(1_000))
    credential = await world.credentials.get("buyer-1")
    assert credential is not None

    async with world.hasher.admitted():  # another check holds the only thread
        with pytest.raises(Refused) as refused:
            await world.pay_by_wallet(order)

    assert refused.value.kind is RefusalKind.BUSY and refused.value.retry_after
    assert refused.value.code == "payment_password_checks_busy"
    assert not any(key[1] == credential.generation for key in world.credentials.slots)
    assert world.event_types(order.payment_id) == ["PaymentInitiated"]
    # The same request again, once the pool has room, pays.
    assert (await world.pay_by_wallet(order)).payment.status is PaymentStatus.CONFIRMED
    await world.assert_books_balance()


async def test_a_hash_under_old_parameters_is_rehashed_at_the_next_success() -> None:
    world = World()
    old = PasswordHasher(Argon2Parameters(time_cost=1, memory_cost_kib=16, parallelism=1))
    await world.credentials.set_hash("buyer-1", await old.hash(PIN))
    before = await world.credentials.get("buyer-1")
    assert before is not None and world.hasher.needs_rehash(before.password_hash)

    # A wrong password rehashes nothing; a right one stores today's parameters.
    await world.funded_wallet("buyer-1", 5_000)
    wrong = await world.reserved(world.purchase(1_000))
    with pytest.raises(Refused):
        await world.pay_by_wallet(wrong, pin="147036")
    assert (await world.credentials.get("buyer-1")) == before
    order = await world.reserved(world.purchase(1_000))
    await world.pay_by_wallet(order)

    after = await world.credentials.get("buyer-1")
    assert after is not None and after.revision == before.revision + 1
    assert not world.hasher.needs_rehash(after.password_hash)
    assert after.password_hash != before.password_hash and PIN not in after.password_hash
    assert await world.hasher.verify(after.password_hash, PIN)
    # Current already: the next success stores nothing new.
    await world.pay_by_wallet(await world.reserved(world.purchase(1_000)))
    assert (await world.credentials.get("buyer-1")).revision == after.revision  # type: ignore[union-attr]
    await world.assert_books_balance()


async def test_a_rehash_never_overwrites_a_password_changed_meanwhile() -> None:
    world = World()
    old = PasswordHasher(Argon2Parameters(time_cost=1, memory_cost_kib=16, parallelism=1))
    await world.credentials.set_hash("buyer-1", await old.hash(PIN))
    checked = await world.credentials.get("buyer-1")
    assert checked is not None
    # The buyer changes the password between the check and its rehash.
    await world.credentials.set_hash("buyer-1", await world.hasher.hash("369147"))

    assert not await world.credentials.rehash(checked, await world.hasher.hash(PIN))

    current = await world.credentials.get("buyer-1")
    assert current is not None and await world.hasher.verify(current.password_hash, "369147")
