"""The FastStream Kafka broker every service uses."""

from __future__ import annotations

import logging
from typing import Any

from faststream.kafka import KafkaBroker

from kami_events.settings import ServiceSettings


def make_broker(settings: ServiceSettings, **options: object) -> KafkaBroker:
    """A broker whose producer is idempotent with acks=all, so a retried send
    is neither lost nor duplicated nor reordered within a partition.

    FastStream logs through a plain standard-library logger (so its lines are
    JSON like every other, see `kami_events.logs`), and its two lines per
    message ("Received", "Processed") only at DEBUG: the consumer's metrics
    and spans say that already."""
    options.setdefault("logger", _FastStreamLog())
    options.setdefault("log_level", logging.DEBUG)
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"kami-{settings.service_name}",
        enable_idempotence=True,
        acks="all",
        **options,  # type: ignore[arg-type]
    )


class _FastStreamLog:
    """The logger FastStream gets: `faststream.kafka`, which it can log to
    but not re-level (it sets a logger it is given to its `log_level`, which
    would let the per-message DEBUG lines through)."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("faststream.kafka")

    def log(self, level: int, msg: Any, /, *args: Any, **kwargs: Any) -> None:
        self._logger.log(level, msg, *args, **kwargs)
