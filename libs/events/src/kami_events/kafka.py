"""The FastStream Kafka broker every service uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from faststream.kafka import KafkaBroker

from kami_events.settings import ServiceSettings

log = logging.getLogger(__name__)


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


def publishing_broker(settings: ServiceSettings, **options: object) -> RenewingBroker:
    """The broker a service publishes through (outbox relay, dead letters)."""
    return RenewingBroker(lambda: make_broker(settings, **options))


class RenewingBroker:
    """What the outbox relay and the dead letters publish through: a broker
    of its own, replaced by a new one after a publish fails.

    aiokafka's idempotent producer numbers the batches of each partition.
    When a batch fails (the broker was away longer than the producer's
    request timeout), its numbers are spent but never written, and the broker
    refuses every later batch with `OutOfOrderSequenceNumber`, for ever: the
    Java client bumps its producer epoch then, aiokafka does not. A service
    stopped publishing until it was restarted (tests/faults: the broker away
    for 45 s). A new producer gets a new producer id and numbers from zero;
    the relay re-sends what failed, and consumers dedupe the copies.

    Broker-like for `KafkaEventPublisher` and `KafkaDeadLetters`: `publish`
    takes FastStream's arguments; with `no_confirm=True` the returned
    confirmation renews the broker too if it fails.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._broker: Any = None
        self._lock = asyncio.Lock()
        self.renewals = 0

    async def publish(self, message: Any, **options: Any) -> Any:
        broker = await self._current()
        try:
            sent = await broker.publish(message, **options)
        except Exception:
            await self._discard(broker)
            raise
        if options.get("no_confirm"):
            return asyncio.ensure_future(self._confirmed(broker, sent))
        return sent

    async def stop(self) -> None:
        async with self._lock:
            broker, self._broker = self._broker, None
        if broker is not None:
            await broker.stop()

    async def _confirmed(self, broker: Any, pending: Any) -> Any:
        try:
            return await pending
        except Exception:
            await self._discard(broker)
            raise

    async def _current(self) -> Any:
        async with self._lock:
            if self._broker is None:
                broker = self._make()
                try:
                    await broker.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await broker.stop()
                    raise
                self._broker = broker
            return self._broker

    async def _discard(self, broker: Any) -> None:
        async with self._lock:
            if self._broker is not broker:
                return  # already replaced, after another of its publishes failed
            self._broker = None
            self.renewals += 1
        log.warning("a publish failed: the next one goes through a new Kafka producer")
        with contextlib.suppress(Exception):
            await broker.stop()
