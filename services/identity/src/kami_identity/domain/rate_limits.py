"""Sliding-window rate limits, counted in fixed windows.

The estimate for "the last `window`" weighs the previous fixed window by how
much of it still overlaps: `previous * (1 - elapsed) + current`. That removes
the burst a plain fixed window allows at its boundary, while the store only
ever counts hits in fixed windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RateLimit:
    name: str
    limit: int
    window: timedelta

    def window_index(self, now: datetime) -> int:
        return int(now.timestamp() // self.window.total_seconds())

    def retry_after(self, *, current: int, previous: int, now: datetime) -> int | None:
        """None if a hit that brought the current window to `current` is allowed,
        else a hint of how many seconds to wait."""
        seconds = self.window.total_seconds()
        elapsed = (now.timestamp() % seconds) / seconds
        if previous * (1 - elapsed) + current <= self.limit:
            return None
        return max(1, math.ceil(seconds * (1 - elapsed)))
