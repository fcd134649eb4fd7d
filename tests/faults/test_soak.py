"""Soak: the fault scenarios, over and over on one platform, for
`KAMI_SOAK_MINUTES` minutes (collected only when that is set; never in CI):

    KAMI_SOAK_MINUTES=60 uv run pytest tests/faults/test_soak.py -s

Each round runs every scenario once, in a random order, each with its own
seed and followed by the full audit; state accumulates on the one platform,
as it would in a long-lived deployment. The first failure stops the soak and
names the round's seed. At the end it prints what it did: rounds, scenarios
run and their times, purchases by outcome, kills, restarts, replayed
messages, dead letters, audit totals.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from kami_actors import Person
from tests.faults.harness import SCENARIOS, FaultsPlatform, ScenarioLog
from tests.faults.shopping import Market
from tests.faults.stack_control import StackControl
from tests.faults.test_callbacks import (
    test_duplicated_concurrent_and_reordered_callbacks_capture_once as callbacks_reordered,
)
from tests.faults.test_callbacks import (
    test_payments_arriving_after_cancellation_are_refunded_once as late_payments,
)
from tests.faults.test_kill_services import (
    test_kill_each_service_in_turn_mid_purchase as kill_each_service,
)
from tests.faults.test_poison import (
    test_a_poison_message_on_every_partition_is_dead_lettered_and_the_partition_flows as poison,
)
from tests.faults.test_replay import (
    test_replaying_every_topic_from_offset_zero_changes_nothing as replay,
)
from tests.faults.test_server_restarts import restart_mid_flow

MINUTES = float(os.environ.get("KAMI_SOAK_MINUTES") or 0)

Scenario = Callable[[FaultsPlatform, Person, Market, ScenarioLog], Awaitable[None]]


def scenarios(stack: StackControl | str) -> dict[str, Scenario]:
    found: dict[str, Scenario] = {
        "kill each service": kill_each_service,
        "callbacks duplicated and reordered": callbacks_reordered,
        "late payments": late_payments,
        "poison": poison,
        "replay": replay,
    }
    if isinstance(stack, StackControl):
        for server in ("kafka", "ferretdb"):

            async def restart(
                platform: FaultsPlatform,
                operator: Person,
                market: Market,
                log: ScenarioLog,
                server: str = server,
            ) -> None:
                await restart_mid_flow(platform, operator, market, log, stack, server)

            found[f"{server} restart"] = restart
    return found


@pytest.mark.timeout(int(MINUTES * 60) + 1200)
async def test_soak(
    faulty: FaultsPlatform,
    operator: Person,
    market: Market,
    stack: StackControl | str,
    faults_seed: int,
) -> None:
    runs = scenarios(stack)
    if isinstance(stack, str):
        print(f"\nsoak without server restarts: {stack}")
    deadline = time.monotonic() + MINUTES * 60
    started = time.monotonic()
    rounds = 0
    totals: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    while time.monotonic() < deadline:
        rounds += 1
        seed = faults_seed + rounds
        order = list(runs)
        ScenarioLog("soak round", seed).rng.shuffle(order)
        for did in await market.restock():
            print(f"soak round {rounds}: {did}")
        for name in order:
            log = ScenarioLog(f"{name} (round {rounds})", seed)
            SCENARIOS.append(log)
            try:
                await runs[name](faulty, operator, market, log)
            except BaseException:
                log.finish("FAILED")
                print(
                    f"\nsoak FAILED in round {rounds} at {name!r} after "
                    f"{(time.monotonic() - started) / 60:.1f} min; replay the round with "
                    f"KAMI_FAULTS_SEED={seed}"
                )
                raise
            log.finish("passed")
            totals[f"scenario {name}"] += 1
            seconds[name] += int(log.seconds)
            for counted, value in log.counts.items():
                if counted.startswith("audit: "):
                    totals[counted] = value  # cumulative already: the latest is the total
                else:
                    totals[counted] += value
            if time.monotonic() > deadline:
                break
    print(f"\nsoak: {rounds} rounds in {(time.monotonic() - started) / 60:.1f} min")
    for name, value in sorted(totals.items()):
        extra = f" ({seconds[name[9:]]}s in all)" if name.startswith("scenario ") else ""
        print(f"  {name}: {value}{extra}")
