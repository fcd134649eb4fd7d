"""The workers of the priority lane.

`DeliveryLane.run_once` is the service's periodic job: it drains the lane
with `lanes` concurrent workers (each claims the most urgent due job, works
it, and claims again), then sleeps until woken (an `OrderPaid` was just
queued) or until `idle_poll` passes (a retry fell due, or another replica
queued something).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kami_delivery.handlers import DeliveryDeps, deliver_next
from kami_delivery.metrics import QUEUE_JOBS

log = logging.getLogger(__name__)


class DeliveryLane:
    def __init__(self, deps: DeliveryDeps, *, lanes: int, idle_poll: float) -> None:
        if lanes < 1:
            raise ValueError("the lane needs at least one worker")
        self._deps = deps
        self._lanes = lanes
        self._idle_poll = idle_poll
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def drain(self) -> int:
        """Work due jobs until none is left; returns how many were worked."""
        worked = 0

        async def worker() -> None:
            nonlocal worked
            while await deliver_next(self._deps):
                worked += 1

        # Every worker ends on its own, never cancelled because another failed:
        # cancelling a task that waits in PyMongo's server selection (the
        # database is away) can leave the client's topology lock held for
        # ever, and every later query of the process hangs (tests/faults, a
        # FerretDB outage; a task group cancelled the others that way).
        ended = await asyncio.gather(
            *(worker() for _ in range(self._lanes)), return_exceptions=True
        )
        failures = [e for e in ended if isinstance(e, BaseException)]
        if failures:
            raise failures[0]
        for state, count in (await self._deps.queue.counts()).items():
            QUEUE_JOBS.labels(state).set(count)
        return worked

    async def run_once(self) -> None:
        self._wake.clear()
        try:
            await self.drain()
        except Exception:
            log.exception("the delivery lane failed; retrying in %.1fs", self._idle_poll)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._idle_poll)
