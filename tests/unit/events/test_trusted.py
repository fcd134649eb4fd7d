"""Read-model documents trusted in memory for a moment (kami_events.trusted)."""

from __future__ import annotations

import asyncio

from kami_events.trusted import TrustedReads


class Documents:
    def __init__(self) -> None:
        self.value: str | None = "v1"
        self.reads = 0

    async def read(self) -> str | None:
        self.reads += 1
        await asyncio.sleep(0)
        return self.value


async def test_a_read_is_trusted_for_its_window_then_read_again() -> None:
    now = [0.0]
    trusted = TrustedReads(1.0, monotonic=lambda: now[0])
    docs = Documents()
    assert await trusted.get("k", docs.read) == "v1"
    docs.value = "v2"  # another process wrote it
    now[0] = 0.9
    assert await trusted.get("k", docs.read) == "v1"
    now[0] = 1.0
    assert await trusted.get("k", docs.read) == "v2"
    assert docs.reads == 2


async def test_this_process_s_write_counts_at_once() -> None:
    trusted = TrustedReads(10.0, monotonic=lambda: 0.0)
    docs = Documents()
    await trusted.get("k", docs.read)
    docs.value = "v2"
    trusted.written("k")
    assert await trusted.get("k", docs.read) == "v2"


async def test_a_read_overlapping_a_write_is_not_kept() -> None:
    trusted = TrustedReads(10.0, monotonic=lambda: 0.0)
    docs = Documents()
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_read() -> str | None:
        value = docs.value  # read before the write lands
        started.set()
        await release.wait()
        return value

    reading = asyncio.create_task(trusted.get("k", slow_read))
    await started.wait()
    docs.value = "v2"
    trusted.written("k")
    release.set()
    assert await reading == "v1"  # what it read, returned once, never kept
    assert await trusted.get("k", docs.read) == "v2"


async def test_nothing_found_and_no_trust_are_never_kept() -> None:
    docs = Documents()
    docs.value = None
    trusted = TrustedReads(10.0, monotonic=lambda: 0.0)
    assert await trusted.get("k", docs.read) is None
    docs.value = "v1"
    assert await trusted.get("k", docs.read) == "v1"
    untrusting = TrustedReads(0.0, monotonic=lambda: 0.0)
    await untrusting.get("k", docs.read)
    await untrusting.get("k", docs.read)
    assert docs.reads == 4
