"""The fault-injection suite's platform, market, seeds and report.

One platform (every service a process, its own databases and topics) serves
the whole suite; each scenario breaks something, lets the platform come to
rest and runs the DESIGN §9 auditor over everything it holds. Each scenario
prints its seed; `KAMI_FAULTS_SEED=<seed>` replays it. What each scenario
did, and how long it took, is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kami_actors import Person
from kami_events.mongo import connect
from kami_market import operator_of
from tests.conftest import Servers
from tests.e2e.conftest import OPERATOR_PHONE
from tests.faults.harness import (
    SCENARIOS,
    FaultsPlatform,
    ScenarioLog,
    running_faults_platform,
    session_seed,
)
from tests.faults.shopping import Market, open_market
from tests.faults.stack_control import NotOurs, StackControl

# The soak runs only when asked for (it takes KAMI_SOAK_MINUTES minutes).
collect_ignore = [] if os.environ.get("KAMI_SOAK_MINUTES") else ["test_soak.py"]


@pytest.fixture(scope="session")
def faults_seed() -> int:
    seed = session_seed()
    print(f"\nfault-injection seed {seed} (replay: KAMI_FAULTS_SEED={seed})")
    return seed


@pytest.fixture(scope="session")
async def faulty(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FaultsPlatform]:
    with running_faults_platform(
        servers.kafka_bootstrap, servers.mongodb_uri, tmp_path_factory.mktemp("faults")
    ) as platform:
        yield platform
    if os.environ.get("KAMI_FAULTS_KEEP_DATA"):
        print(f"\nkept the databases {platform.database_prefix}_* (KAMI_FAULTS_KEEP_DATA)")
        return
    # The services are down: their databases can go (dropped at the end of the run).
    client = connect(servers.mongodb_uri, app_name="kami-faults-cleanup")
    try:
        for name in await client.list_database_names():
            if name.startswith(f"{platform.database_prefix}_"):
                await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture(scope="session")
async def operator(faulty: FaultsPlatform) -> Person:
    return await operator_of(faulty, OPERATOR_PHONE)


@pytest.fixture(scope="session")
async def market(faulty: FaultsPlatform, operator: Person) -> Market:
    return await open_market(faulty, operator, keys=400, buyers=4, funds=500_000)


@pytest.fixture
def scenario(request: pytest.FixtureRequest, faults_seed: int) -> Iterator[ScenarioLog]:
    log = ScenarioLog(request.node.name, faults_seed)
    SCENARIOS.append(log)
    log.note(f"seed {faults_seed} (replay: KAMI_FAULTS_SEED={faults_seed} -k '{log.name}')")
    yield log
    report = getattr(request.node, "rep_call", None)
    log.finish("passed" if report is not None and report.passed else "FAILED")


@pytest.fixture(scope="session")
def stack(servers: Servers) -> StackControl | str:
    """The stack this run may restart, or why there is none."""
    try:
        return StackControl.of_run(servers)
    except NotOurs as exc:
        return str(exc)


@pytest.fixture(scope="session")
def owned_stack(stack: StackControl | str) -> StackControl:
    """The stack to restart; the test is skipped, saying why, when the run
    owns none (asked for first, so a skipped test starts no platform)."""
    if isinstance(stack, str):
        pytest.skip(f"not restarting Kafka or FerretDB: {stack}")
    return stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SCENARIOS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault-injection scenarios")
    for log in SCENARIOS:
        write(f"{log.name}: {log.outcome} in {log.seconds:.0f}s (seed {log.seed})")
        for line in log.lines:
            write(f"    {line}")
        if log.counts:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(log.counts.items()))
            write(f"    counts: {shown}")
