"""The argon2id pool identity and payment share: at most `concurrency` hashes
run at once, and a request past the queue or the wait it would face is
refused before it starts."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kami_web.passwords import Argon2Parameters, CheckPoolLimits, PasswordChecksBusy, PasswordHasher

CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_cost_kib=8, parallelism=1)
PIN = "258036"


async def test_the_pool_runs_at_most_its_concurrency_and_refuses_past_its_queue() -> None:
    hasher = PasswordHasher(CHEAP_ARGON2, CheckPoolLimits(concurrency=1, max_queued=1))
    stored = await hasher.hash(PIN)
    release = threading.Event()

    async def held_check() -> bool:
        async with hasher.admitted():
            return await hasher._run(lambda: release.wait(5))

    running = asyncio.create_task(held_check())
    await asyncio.sleep(0)
    queued = asyncio.create_task(held_check())
    await asyncio.sleep(0)
    with pytest.raises(PasswordChecksBusy) as busy:
        async with hasher.admitted():
            pass
    assert busy.value.reason == "queue_full" and busy.value.retry_after >= 1
    release.set()
    assert await running and await queued
    # Free again: admitted and checked.
    async with hasher.admitted():
        assert await hasher.verify(stored, PIN)
        assert not await hasher.verify(stored, "147036")


async def test_a_wait_estimated_past_the_limit_is_refused() -> None:
    hasher = PasswordHasher(
        CHEAP_ARGON2, CheckPoolLimits(concurrency=1, max_queued=100, max_wait_seconds=0.5)
    )
    hasher._check_seconds = 0.3  # as if each check took 300 ms lately
    release = threading.Event()
    running = asyncio.create_task(hasher._run(lambda: release.wait(5)))
    await asyncio.sleep(0)
    async with hasher.admitted():  # would wait about 0.3 s behind the one running
        pass
    queued = asyncio.create_task(hasher._run(lambda: release.wait(5)))
    await asyncio.sleep(0)

    with pytest.raises(PasswordChecksBusy) as busy:
        async with hasher.admitted():  # would wait about 0.6 s
            pass

    assert busy.value.reason == "wait_too_long" and busy.value.retry_after == 1
    release.set()
    assert await running and await queued
