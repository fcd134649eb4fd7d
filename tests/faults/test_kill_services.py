"""kill -9 each service in turn while buyers keep purchasing (DESIGN §9.3:
every saga ends within its deadlines even when any one service is killed and
restarted mid-flow), then the §9 audit of everything."""

from __future__ import annotations

import asyncio
import time

import pytest

from kami_actors import Person
from tests.faults.harness import FaultsPlatform, ScenarioLog, audit_platform
from tests.faults.shopping import Market, Stream


@pytest.mark.timeout(600)
async def test_kill_each_service_in_turn_mid_purchase(
    faulty: FaultsPlatform, operator: Person, market: Market, scenario: ScenarioLog
) -> None:
    rng = scenario.rng
    victims = rng.sample(faulty.services, len(faulty.services))
    scenario.note(f"kill order: {', '.join(victims)}")
    stream = Stream(market, scenario, rng)
    stream.start()
    try:
        for service in victims:
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            # A burst of purchases first, so the kill lands amid appends and publishes.
            burst = rng.randint(2, 6)
            stream.burst(burst)
            await asyncio.sleep(rng.uniform(0.05, 0.8))
            in_flight = len(stream.purchases)
            await asyncio.to_thread(faulty.stop, service, kill=True)
            down_for = rng.uniform(0.0, 2.0)
            scenario.note(
                f"kill -9 {service} amid a burst of {burst} ({in_flight} purchases done); "
                f"down {down_for:.1f}s"
            )
            scenario.count("services killed")
            await asyncio.sleep(down_for)
            started = time.monotonic()
            faulty.start(service)
            await asyncio.to_thread(faulty.wait_ready, service, 120)
            scenario.note(f"{service} ready again after {time.monotonic() - started:.1f}s")
        await asyncio.sleep(1.0)
    finally:
        purchases = await stream.finish()
    scenario.note(f"{len(purchases)} purchases: {dict(scenario.counts)}")
    stream.check()
    await audit_platform(faulty, operator, scenario)
