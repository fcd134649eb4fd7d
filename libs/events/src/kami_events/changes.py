"""Requests waiting in this process for something to change (an order's
state), woken by the code that changed it instead of polling.

`Changes` keeps, per key, the watches of the requests waiting on it; whoever
writes the key's new state calls `changed(key)`, and only those requests
wake and read again. Another replica may make the change, which this process
does not hear of, so a waiting request also reads again now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Watch:
    """One request's interest in one key: set when the key changed."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def changed_within(self, seconds: float) -> bool:
        """Wait for a change at most `seconds`; True if one came (and forget it)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, seconds))
        changed = self._changed.is_set()
        self._changed.clear()
        return changed


class Changes:
    """Which requests wait on which key, in this process."""

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}

    def changed(self, key: str) -> None:
        for watch in self._watches.get(key, ()):
            watch.notify()

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[Watch]:
        watch = Watch()
        self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches[key]
            watches.discard(watch)
            if not watches:
                del self._watches[key]

    def waiting(self) -> int:
        """Requests waiting now (all keys)."""
        return sum(len(watches) for watches in self._watches.values())

    async def read_until(
        self,
        key: str,
        read: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        *,
        timeout: float,
        recheck: float,
    ) -> T:
        """`read()` until `done` says so or `timeout` passes, reading again
        when this process changes `key`, and every `recheck` seconds for a
        change made elsewhere. Returns the last read (at the deadline: the
        state as it is then)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Watching before the first read: a change in between is not missed.
        with self.watch(key) as watch:
            value = await read()
            while not done(value):
                left = deadline - loop.time()
                if left <= 0:
                    break
                await watch.changed_within(min(left, recheck))
                value = await read()
        return value
