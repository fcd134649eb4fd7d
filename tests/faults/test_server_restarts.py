"""The Kafka broker, then FerretDB, stopped and started again while buyers
keep purchasing; every service rides through it, nothing is lost or done
twice (the §9 audit).

They restart the servers this run owns (`tests/faults/stack_control.py`):
the local stack scripts/test started (`KAMI_TEST_STACK_HOME`), or the one
the `servers` fixture started. Servers given from outside are never touched:
then these two tests are skipped and say why.

Beside the buyers, while Kafka is away a steady publisher sends batches
without pause through the services' own publishing broker
(`kami_events.kafka.publishing_broker`), so a batch is surely in flight when
the broker stops: it must publish again once the broker is back.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from uuid import uuid4

import pytest

from kami_actors import Person
from kami_events.kafka import publishing_broker
from kami_events.settings import ServiceSettings
from tests.faults.harness import FaultsPlatform, ScenarioLog, audit_platform
from tests.faults.shopping import Market, Stream
from tests.faults.stack_control import StackControl


@dataclass
class SteadyPublisher:
    """Batches of 20 messages, one after the other, as a busy relay sends them."""

    bootstrap: str
    topic: str = field(default_factory=lambda: f"kami-faults-probe-{uuid4().hex[:8]}")
    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_sent_at: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        broker = publishing_broker(
            ServiceSettings(service_name="faults-probe", kafka_bootstrap=self.bootstrap)
        )
        try:
            while not self.stop.is_set():
                try:
                    pending = [
                        await broker.publish(b"probe", topic=self.topic, key=b"p", no_confirm=True)
                        for _ in range(20)
                    ]
                    await asyncio.gather(*pending)
                    self.sent += len(pending)
                    self.last_sent_at = time.monotonic()
                    await asyncio.sleep(0.05)
                except Exception as exc:
                    self.errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.5)
        finally:
            await broker.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("server", ["kafka", "ferretdb"])
async def test_a_server_stopped_and_started_mid_flow(
    owned_stack: StackControl,
    faulty: FaultsPlatform,
    operator: Person,
    market: Market,
    scenario: ScenarioLog,
    server: str,
) -> None:
    await restart_mid_flow(faulty, operator, market, scenario, owned_stack, server)


async def restart_mid_flow(
    faulty: FaultsPlatform,
    operator: Person,
    market: Market,
    scenario: ScenarioLog,
    stack: StackControl,
    server: str,
) -> None:
    rng = scenario.rng
    # Kafka is stopped as `stack down` stops it (its partitions' leadership
    # goes away with it); FerretDB is stopped or killed.
    how = signal.SIGTERM if server == "kafka" else rng.choice([signal.SIGTERM, signal.SIGKILL])
    stream = Stream(market, scenario, rng)
    stream.start()
    probe = SteadyPublisher(faulty.kafka_bootstrap)
    probing = asyncio.create_task(probe.run()) if server == "kafka" else None
    try:
        await asyncio.sleep(rng.uniform(2.0, 6.0))
        before = len(stream.purchases)
        pid = await asyncio.to_thread(stack.stop, server, how)
        scenario.note(f"{how.name} to {server} (pid {pid}, {before} purchases done)")
        # Each stays away longer than its clients wait: the broker longer than
        # a producer's request timeout (40 s), so batches in flight fail (that
        # once broke every idempotent producer for good); FerretDB longer than
        # server selection (10 s), so queries fail and handlers retry (that
        # once wedged PyMongo in delivery). Real outages last that long: a
        # broker restart on this busy machine took 49 s.
        down_for = rng.uniform(45.0, 50.0) if server == "kafka" else rng.uniform(20.0, 25.0)
        await asyncio.sleep(down_for)
        started = time.monotonic()
        await asyncio.to_thread(stack.up)
        scenario.note(
            f"{server} down {down_for:.1f}s, answering again {time.monotonic() - started:.1f}s "
            f"after `stack up` (pid {stack.pid(server)})"
        )
        scenario.count(f"{server} restarts")
        if probing is not None:
            back = time.monotonic()
            while probe.last_sent_at < back and time.monotonic() < back + 90:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            scenario.note(
                f"steady publisher: {probe.sent} sent, failures {dict(probe.errors)}, "
                + (
                    f"publishing again {probe.last_sent_at - back:.1f}s after the restart"
                    if probe.last_sent_at >= back
                    else "NOT publishing 90s after the restart"
                )
            )
            assert probe.last_sent_at >= back, f"the producer never recovered: {probe.errors}"
        # The buyers go on until everyone has recovered and bought a few more.
        after = len(stream.purchases)
        deadline = time.monotonic() + 120
        while len(stream.purchases) < after + 4 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    finally:
        probe.stop.set()
        purchases = await stream.finish()
        if probing is not None:
            await probing
        if stack.pid(server) is None:  # whatever happened, the next tests get their server
            await asyncio.to_thread(stack.up)
    scenario.note(f"{len(purchases)} purchases: {dict(scenario.counts)}")
    stream.check()
    await audit_platform(faulty, operator, scenario)
