"""The README's shell blocks, run as a new user would after `./scripts/run`.

The module starts a platform the way `./scripts/run` does (starter
catalogue, every service as a process, the demo market seeded through the
APIs), but on free ports and in a namespace of its own. Each block about a
running platform runs as written under bash, with two substitutions only:
`localhost:81xx` becomes this platform's port for that service, and `uv run`
runs in this test's interpreter's environment (a `uv` on the PATH that does
`exec "$@"`, so no lock or venv is touched). The `kami` commands find the
platform through `KAMI_<SERVICE>_URL` and `KAMI_DATABASE_PREFIX`, as the
README says they do. Every block is either run or listed in `NOT_RUN` with
the reason, so a new block must be classified.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kami_cli.config import SERVICE_PORTS
from kami_cli.demo import DEMO_BUYER_PHONE
from kami_events.mongo import connect
from kami_local import DEMO_OPERATOR_PHONE, REPO, Platform, available_services
from seed_demo import seed_catalogue, seed_market
from tests.conftest import Servers
from tests.kami_command import kami

README = REPO / "README.md"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)

# Blocks run against the platform, by their first line.
DEMO_BUY = "uv run kami demo buy"
CURL_PURCHASE = "get() { python3 -c 'import functools, json, sys"
ANOTHER_BUYER = "PHONE=137$(shuf -i 10000000-99999999 -n 1)      # any number not registered yet"
STATUS = "uv run python deploy/local/kami_local.py status    # each service: pid and URL"
RUN = {DEMO_BUY, CURL_PURCHASE, ANOTHER_BUYER, STATUS}
# Blocks not run here, by their first line, and why.
NOT_RUN = {
    "./scripts/run": "the two commands themselves: the module fixture does what "
    "./scripts/run does, on its own ports; ./scripts/test is what runs this test",
    "uv run python deploy/local/kami_local.py down      # the services": "stops the "
    "checkout's platform and the shared servers, which a test must not touch",
    "kami serve ordering              # one service, configured like `python -m kami_ordering`": (
        "a reference of every command (serving on fixed ports, provisioning the "
        "shared Kafka, placeholders like $OFFER); tests/e2e/test_cli.py and "
        "tests/integration/cli run them"
    ),
    "deploy/local/stack up        # fetch/build if needed, start, wait until both answer": (
        "starts and stops the shared servers; tests/integration/cli/test_stack_command.py"
    ),
    "uv run kami-events schemas            # rewrite libs/events/schemas/ (compatible changes)": (
        "rewrites committed files; ./scripts/test runs the --check"
    ),
    "uv run pytest tests/security -p no:cacheprovider      # about 4 minutes on 2 idle cores": (
        "a test suite of its own"
    ),
    'curl -s -X PUT localhost:8105/wallet/password-free -H "Authorization: Bearer $TOKEN" \\': (
        "turns on password-free payments for the curl purchase's buyer ($TOKEN of that "
        "block); tests/integration/payment/test_password_free_api.py runs the route"
    ),
    "./scripts/test tests/unit            # fast tests only (still starts the servers)": (
        "the test runner itself"
    ),
    'curl -s -X POST localhost:8109/resellers -H "Authorization: Bearer $OPERATOR_TOKEN" \\': (
        "placeholders for an operator's token and a user; tests/e2e/test_reseller.py "
        "approves a reseller and issues its credential the same way"
    ),
    "python docs/reseller_client.py --base-url http://localhost:8109 --key-id $KEY_ID "
    "--secret $SECRET \\": (
        "placeholders for a credential; tests/e2e/test_reseller.py runs the client's "
        "command line and its signer against the platform"
    ),
    "KAMI_STACK_HOME=/tmp/my-stack KAMI_STACK_KAFKA_PORT=19492 KAMI_STACK_MONGO_PORT=27418 "
    "deploy/local/stack up": "starts a private stack and runs the fault suite",
}


def readme_blocks() -> list[str]:
    return _BLOCK.findall(README.read_text(encoding="utf-8"))


def first_line(block: str) -> str:
    return block.splitlines()[0].rstrip()


def block(first: str) -> str:
    (found,) = [b for b in readme_blocks() if first_line(b) == first]
    return found


def test_every_readme_block_is_either_run_or_said_why_not() -> None:
    firsts = [first_line(b) for b in readme_blocks()]
    assert len(firsts) == len(set(firsts)), "two blocks start alike: tell them apart"
    unclassified = set(firsts) - RUN - set(NOT_RUN)
    assert not unclassified, f"README blocks neither run nor listed in NOT_RUN: {unclassified}"
    gone = (RUN | set(NOT_RUN)) - set(firsts)
    assert not gone, f"blocks listed here that the README no longer has: {gone}"


def test_nothing_in_the_repository_points_beside_it() -> None:
    # The folder beside a checkout that a clone does not have; spelled so
    # that this file is no hit of its own.
    sibling = "shared"
    patterns = [f"../{sibling}", f"{sibling}/data", f"{sibling}/DESIGN"]
    found = subprocess.run(
        ["git", "grep", "-n", "-F", *[arg for p in patterns for arg in ("-e", p)]],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, found.stdout or found.stderr


@pytest.fixture(scope="module")
async def demo(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    """A platform as ./scripts/run leaves it: catalogue, services, demo market."""
    platform = Platform.isolated(
        servers.kafka_bootstrap,
        servers.mongodb_uri,
        home=tmp_path_factory.mktemp("readme-platform"),
        name="readme",
        extra_env={"KAMI_IDENTITY_OPERATOR_PHONES": DEMO_OPERATOR_PHONE},
    )
    try:
        # Catalog loads its search index at start: the catalogue goes in first.
        await asyncio.to_thread(seed_catalogue, platform)
        with platform.running(available_services()):
            await seed_market(platform)
            yield platform
    finally:
        client = connect(servers.mongodb_uri, app_name="kami-readme-cleanup")
        try:
            for name in await client.list_database_names():
                if name.startswith(f"{platform.database_prefix}_"):
                    await client.drop_database(name)
        finally:
            await client.close()


@pytest.fixture(scope="module")
def shell_env(demo: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    shims = tmp_path_factory.mktemp("shims")
    uv = shims / "uv"
    # `uv run CMD...` in this test's environment.
    uv.write_text('#!/bin/sh\n[ "$1" = run ] && shift\nexec "$@"\n')
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMI_")}
    env["PATH"] = os.pathsep.join([str(shims), str(Path(sys.executable).parent), env["PATH"]])
    env |= {
        "KAMI_MONGODB_URI": demo.mongodb_uri,
        "KAMI_KAFKA_BOOTSTRAP": demo.kafka_bootstrap,
        "KAMI_DATABASE_PREFIX": demo.database_prefix,
        "KAMI_TOPIC_PREFIX": demo.topic_prefix or "kami",
        "KAMI_CONFIG_DIR": str(tmp_path_factory.mktemp("kami-config")),
        "COLUMNS": "200",
    }
    for service in demo.ports:
        env[f"KAMI_{service.upper()}_URL"] = demo.url(service)
    return env


def on_platform(text: str, platform: Platform) -> str:
    """The block with `localhost:81xx` pointing at this platform's services."""
    for service, port in SERVICE_PORTS.items():
        text = text.replace(f"localhost:{port}", f"127.0.0.1:{platform.ports[service]}")
    return text


def run_block(
    text: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert ran.returncode == 0, (
        f"exit {ran.returncode}\n{text}\nstdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
    )
    return ran


def test_kami_demo_buy_buys_a_key_step_by_step(demo: Platform, shell_env: dict[str, str]) -> None:
    ran = run_block(on_platform(block(DEMO_BUY), demo), shell_env)
    steps = [
        line.split()[1] for line in ran.stdout.splitlines() if re.match(r"\s*\d+\.\d\ds ", line)
    ]
    assert steps == ["logged", "offer", "placed", "reserved", "paid", "delivered", "revealed"], (
        ran.stdout
    )
    (key,) = re.findall(r"^key: (DEMO-\S+)$", ran.stdout, re.MULTILINE)
    assert key.startswith("DEMO-"), ran.stdout
    assert f"as {DEMO_BUYER_PHONE}" in ran.stdout


def test_the_curl_purchase_reveals_a_key_and_shows_the_timeline(
    demo: Platform, shell_env: dict[str, str]
) -> None:
    ran = run_block(on_platform(block(CURL_PURCHASE), demo), shell_env)
    lines = ran.stdout.splitlines()
    assert lines[:2] == ["RESERVED", "DELIVERED"], ran.stdout
    assert '"secret":"DEMO-' in lines[2], ran.stdout
    assert '"event_type":"OrderPaid"' in lines[3], ran.stdout


def test_another_buyer_registers_with_the_code_from_the_sms_outbox(
    demo: Platform, shell_env: dict[str, str]
) -> None:
    ran = run_block(on_platform(block(ANOTHER_BUYER), demo), shell_env)
    assert '"expires_in_seconds"' in ran.stdout, ran.stdout
    assert re.search(r"to 137\d{8}  code \d{6}", ran.stdout), ran.stdout
    assert '"user_id"' in ran.stdout.splitlines()[-1], ran.stdout


def test_status_runs_as_the_readme_shows(shell_env: dict[str, str]) -> None:
    # It reads this checkout's demo platform (pid files), whatever runs there.
    ran = run_block(block(STATUS), shell_env)
    for service in available_services():
        assert re.search(
            rf"^\s+{service}\s+(running pid \d+|stopped)\s+http://", ran.stdout, re.MULTILINE
        ), ran.stdout


async def test_kami_demo_buy_says_so_when_the_platform_is_not_running() -> None:
    ran = await kami("demo", "buy", env={"KAMI_IDENTITY_URL": "http://127.0.0.1:9"})
    assert ran.code == 1, ran
    assert "is the platform running?" in ran.stderr
