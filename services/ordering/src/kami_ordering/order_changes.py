"""Buyers waiting for their order's state (`GET /orders/{id}?wait_for=...`)
without polling.

`OrderChanges` is this process's notifier: the repository signals it after
every append to an order's stream, and only the requests waiting on that
order wake up and read it again (by `_id`). Another replica of ordering may
append instead, which this process does not hear of, so a waiting request
also reads its order again every `recheck` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kami_events.changes import Changes, Watch
from kami_ordering.adapters.repository import LoadedOrder, OrderRepository
from kami_ordering.domain.order import Order, OrderState, waiting_is_over

# The longest a request may wait (a proxy or client may give up on a longer one).
MAX_WAIT_SECONDS = 30.0


# The order's id is the key: the repository signals it after every append.
OrderWatch = Watch
OrderChanges = Changes


class OrderStatus:
    """An order's state for its buyer: now, or once it reaches a state."""

    def __init__(
        self, repository: OrderRepository, changes: OrderChanges, *, recheck_seconds: float
    ) -> None:
        self._repository = repository
        self._changes = changes
        self._recheck = recheck_seconds

    async def read(
        self,
        order_id: str,
        may_see: Callable[[Order], bool],
        wanted: OrderState | None = None,
        timeout: float = 0.0,
    ) -> LoadedOrder | None:
        """The order (None: no such order, or not `may_see`), once
        `waiting_is_over` for `wanted`, or as it is when `timeout` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout, MAX_WAIT_SECONDS)
        # Watching before the first read: a change in between is not missed.
        with self._changes.watch(order_id) as watch:
            loaded = await self._repository.load(order_id)
            if loaded is None or not may_see(loaded.order):
                return None
            while wanted is not None and not _answers(loaded, wanted):
                left = deadline - loop.time()
                if left <= 0:
                    break
                # Woken by a change here, or time to look for one made elsewhere
                # (and at the deadline: the answer is the state as it is then).
                await watch.changed_within(min(left, self._recheck))
                reloaded = await self._repository.load(order_id)
                assert reloaded is not None  # streams are never deleted
                loaded = reloaded
        return loaded


def _answers(loaded: LoadedOrder, wanted: OrderState) -> bool:
    state = loaded.order.state
    return state is not None and waiting_is_over(state, wanted)
