"""The Kafka broker, then FerretDB, stopped and started again while buyers
keep purchasing; every service rides through it, nothing is lost or done
twice (the §9 audit).

They restart the servers this run owns (`tests/faults/stack_control.py`):
the local stack scripts/test started (`KAMI_TEST_STACK_HOME`), or the one
the `servers` fixture started. Servers given from outside are never touched:
then these two tests are skipped and say why.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from kami_actors import Person
from tests.faults.harness import FaultsPlatform, ScenarioLog, audit_platform
from tests.faults.shopping import Market, Stream
from tests.faults.stack_control import StackControl

SERVER_NAMES = {"kafka": "the Kafka broker", "ferretdb": "FerretDB"}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("server", ["kafka", "ferretdb"])
async def test_a_server_stopped_and_started_mid_flow(
    faulty: FaultsPlatform,
    operator: Person,
    market: Market,
    scenario: ScenarioLog,
    stack: StackControl | str,
    server: str,
) -> None:
    if isinstance(stack, str):
        pytest.skip(f"not restarting {SERVER_NAMES[server]}: {stack}")
    rng = scenario.rng
    how = rng.choice([signal.SIGTERM, signal.SIGKILL])
    stream = Stream(market, scenario, rng)
    stream.start()
    try:
        await asyncio.sleep(rng.uniform(2.0, 6.0))
        before = len(stream.purchases)
        pid = await asyncio.to_thread(stack.stop, server, how)
        scenario.note(f"{how.name} to {server} (pid {pid}, {before} purchases done)")
        down_for = rng.uniform(2.0, 8.0)
        await asyncio.sleep(down_for)
        started = time.monotonic()
        await asyncio.to_thread(stack.up)
        scenario.note(
            f"{server} down {down_for:.1f}s, answering again {time.monotonic() - started:.1f}s "
            f"after `stack up` (pid {stack.pid(server)})"
        )
        scenario.count(f"{server} restarts")
        # The buyers go on until everyone has recovered and bought a few more.
        after = len(stream.purchases)
        deadline = time.monotonic() + 120
        while len(stream.purchases) < after + 4 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    finally:
        purchases = await stream.finish()
        if stack.pid(server) is None:  # whatever happened, the next tests get their server
            await asyncio.to_thread(stack.up)
    scenario.note(f"{len(purchases)} purchases: {dict(scenario.counts)}")
    stream.check()
    await audit_platform(faulty, operator, scenario)
