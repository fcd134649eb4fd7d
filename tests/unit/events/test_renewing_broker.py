"""`RenewingBroker`: a failed publish retires the producer, the next publish
gets a new one (aiokafka's idempotent producer never recovers from a failed
batch: every later batch is refused with OutOfOrderSequenceNumber)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from kami_events.kafka import RenewingBroker


class StuckAfterOneFailure:
    """A broker whose producer, once a batch failed, refuses all the rest."""

    def __init__(self, name: int, fail_first: bool) -> None:
        self.name = name
        self.started = self.stopped = False
        self.broken = fail_first
        self.sent: list[bytes] = []

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def publish(self, message: bytes, **options: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.broken:
            future.set_exception(OutOfOrderSequenceNumber())
        else:
            self.sent.append(message)
            future.set_result(None)
        if options.get("no_confirm"):
            return future
        return await future


def factory(*fail: bool) -> tuple[list[StuckAfterOneFailure], Any]:
    made: list[StuckAfterOneFailure] = []

    def make() -> StuckAfterOneFailure:
        broker = StuckAfterOneFailure(
            len(made), fail[len(made)] if len(made) < len(fail) else False
        )
        made.append(broker)
        return broker

    return made, make


async def test_a_failed_confirmation_retires_the_producer_and_the_next_publish_gets_a_new_one() -> (
    None
):
    made, make = factory(True)
    renewing = RenewingBroker(make)
    pending = [
        await renewing.publish(f"m{n}".encode(), topic="t", no_confirm=True) for n in range(3)
    ]
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, OutOfOrderSequenceNumber) for r in results)
    assert made[0].stopped and renewing.renewals == 1  # three failures, one renewal

    await asyncio.gather(await renewing.publish(b"again", topic="t", no_confirm=True))
    assert len(made) == 2 and made[1].started and made[1].sent == [b"again"]
    await renewing.stop()
    assert made[1].stopped


async def test_a_publish_that_raises_at_once_renews_too() -> None:
    made, make = factory(True)
    renewing = RenewingBroker(make)
    with pytest.raises(OutOfOrderSequenceNumber):
        await renewing.publish(b"m", topic="t")
    await renewing.publish(b"m", topic="t")
    assert [b.sent for b in made] == [[], [b"m"]]


async def test_a_broker_that_cannot_start_is_not_kept() -> None:
    attempts: list[StuckAfterOneFailure] = []

    class Unreachable(StuckAfterOneFailure):
        async def start(self) -> None:
            raise KafkaConnectionError("no broker")

    def make() -> StuckAfterOneFailure:
        broker = (Unreachable if not attempts else StuckAfterOneFailure)(len(attempts), False)
        attempts.append(broker)
        return broker

    renewing = RenewingBroker(make)
    with pytest.raises(KafkaConnectionError):
        await renewing.publish(b"m", topic="t")
    assert attempts[0].stopped
    await renewing.publish(b"m", topic="t")
    assert attempts[1].sent == [b"m"]
