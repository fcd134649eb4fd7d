"""Buyers waiting for their order's state (`GET /orders/{id}?wait_for=...`)
without polling.

A `kami_events.changes.Changes` is this process's notifier: the repository signals it after
every append to an order's stream, and only the requests waiting on that
order wake up and read it again (by `_id`). Another replica of ordering may
append instead, which this process does not hear of, so a waiting request
also reads its order again every `recheck` seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from kami_events.changes import Changes
from kami_ordering.adapters.repository import LoadedOrder, OrderRepository
from kami_ordering.domain.order import Order, OrderState, waiting_is_over

# The longest a request may wait (a proxy or client may give up on a longer one).
MAX_WAIT_SECONDS = 30.0


class OrderStatus:
    """An order's state for its buyer: now, or once it reaches a state."""

    def __init__(
        self, repository: OrderRepository, changes: Changes, *, recheck_seconds: float
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
        `waiting_is_over` for `wanted`, or as it is when `timeout` passes.
        The repository signals the order's id after every append here."""

        def done(loaded: LoadedOrder | None) -> bool:
            return (
                loaded is None
                or not may_see(loaded.order)
                or wanted is None
                or _answers(loaded, wanted)
            )

        loaded = await self._changes.read_until(
            order_id,
            lambda: self._repository.load(order_id),
            done,
            timeout=min(timeout, MAX_WAIT_SECONDS),
            recheck=self._recheck,
        )
        if loaded is None or not may_see(loaded.order):
            return None
        return loaded


def _answers(loaded: LoadedOrder, wanted: OrderState) -> bool:
    state = loaded.order.state
    return state is not None and waiting_is_over(state, wanted)
