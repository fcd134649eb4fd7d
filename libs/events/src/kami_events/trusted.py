"""Read-model documents trusted in memory for a moment.

A hot path that reads the same few documents over and over (an offer's terms
for every order of a flash sale, a buyer's profile twice per delivery) reads
each once per `trust_seconds`. The process's own writes replace what it holds
at once; a change another process wrote is seen within `trust_seconds`, which
is how late a read model fed by events may be anyway. A read that overlapped
any of this process's writes is not kept: it may have read the document from
before the write.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class TrustedReads:
    KEPT = 10_000

    def __init__(
        self, trust_seconds: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._trust = trust_seconds
        self._monotonic = monotonic
        self._read: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._writes = 0

    async def get(self, key: str, read: Callable[[], Awaitable[T | None]]) -> T | None:
        """What `read` returns, or what it returned less than `trust_seconds`
        ago (nothing found is not kept: it may appear any moment)."""
        now = self._monotonic()
        kept = self._read.get(key)
        if kept is not None and now - kept[0] < self._trust:
            return kept[1]  # type: ignore[return-value]
        writes = self._writes
        value = await read()
        if value is not None and self._trust > 0 and self._writes == writes:
            self._read.pop(key, None)
            self._read[key] = (now, value)
            while len(self._read) > self.KEPT:
                self._read.popitem(last=False)
        return value

    def written(self, key: str) -> None:
        """This process wrote `key`'s document (call it once the write is done,
        or failed: it may have landed)."""
        self._read.pop(key, None)
        self._writes += 1
