"""KeyedLocks: one key's holders take turns, other keys run at once, and the
table forgets a key once nobody holds or awaits it."""

from __future__ import annotations

import asyncio

from kami_events.locks import KeyedLocks


async def test_holders_of_one_key_take_turns_and_other_keys_run_at_once() -> None:
    locks = KeyedLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    both_at_once = False

    async def work(key: str) -> None:
        nonlocal both_at_once
        async with locks.hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            await asyncio.sleep(0.01)
            both_at_once = both_at_once or (inside["a"] > 0 and inside["b"] > 0)
            inside[key] -= 1

    await asyncio.gather(*(work(key) for key in "abababab"))
    assert most == {"a": 1, "b": 1}
    assert both_at_once
    assert len(locks) == 0


async def test_a_failing_holder_releases_its_key() -> None:
    locks = KeyedLocks()

    async def fail() -> None:
        async with locks.hold("a"):
            raise RuntimeError("boom")

    results = await asyncio.gather(fail(), fail(), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    assert len(locks) == 0
    async with asyncio.timeout(1):
        async with locks.hold("a"):
            assert len(locks) == 1
