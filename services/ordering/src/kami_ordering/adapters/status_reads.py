"""Counting the MongoDB commands the buyers' status reads make
(`kami_order_status_read_commands_total`), so that what the saga costs per
purchase can be told from what buyers asking for their order cost.

The commands are the same `_id` reads of the event store the saga makes, so
`kami_mongo_command_seconds` cannot tell them apart: the status route runs
inside `counted_as_status_read()`, and a listener on every MongoDB client
counts the commands started in that context (pymongo's async client starts
a command in the task that awaits it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pymongo import monitoring

from kami_ordering import metrics

_in_status_read: ContextVar[bool] = ContextVar("kami_ordering_status_read", default=False)


class StatusReadCounter(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if _in_status_read.get():
            collection = event.command.get(event.command_name)
            metrics.STATUS_READ_COMMANDS.labels(
                collection if isinstance(collection, str) else "", event.command_name
            ).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


_registered = False


def count_status_reads() -> None:
    """Listen to the MongoDB clients created from now on (once per process)."""
    global _registered
    if not _registered:
        monitoring.register(StatusReadCounter())
        _registered = True


@contextmanager
def counted_as_status_read() -> Iterator[None]:
    token = _in_status_read.set(True)
    try:
        yield
    finally:
        _in_status_read.reset(token)
