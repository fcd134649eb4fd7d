"""Every service as its own process, on the real servers, driven over HTTP.

One platform per test session: its own free ports, databases
(`e2e<run>_<service>`) and Kafka topic namespace (`kami-e2e-<run>`), so it
never meets a running demo or an earlier run's events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from kami_actors import Person
from kami_events.mongo import connect
from kami_local import DEMO_OPERATOR_PHONE, Platform, available_services
from kami_market import operator_of
from tests.conftest import Servers
from tests.e2e.invariants import assert_invariants

OPERATOR_PHONE = DEMO_OPERATOR_PHONE
SUPPORT_PHONE = "13900000002"

# Loose limits and cheap hashing: the e2e suite registers many users from one IP.
_LOOSE = {"limit": 100000, "window_seconds": 60}
E2E_ENV = {
    "KAMI_IDENTITY_OPERATOR_PHONES": OPERATOR_PHONE,
    "KAMI_IDENTITY_SUPPORT_PHONES": SUPPORT_PHONE,
    "KAMI_IDENTITY_RATE_LIMITS": json.dumps(
        {
            name: _LOOSE
            for name in ("otp_per_phone", "otp_per_ip", "login_per_phone", "login_per_ip")
        }
        | {"register_per_ip": _LOOSE}
    ),
    "KAMI_IDENTITY_OTP_RESEND_COOLDOWN_SECONDS": "0",
    "KAMI_IDENTITY_ARGON2_TIME_COST": "1",
    "KAMI_IDENTITY_ARGON2_MEMORY_KIB": "8192",
    "KAMI_IDENTITY_ARGON2_PARALLELISM": "1",
    # After-sales judges a seller from 3 delivered orders (not 20), and only
    # flags critical (delisting) over 90% (so a test sees a warning demote).
    "KAMI_AFTERSALES_FLAG_MIN_ORDERS": "3",
    "KAMI_AFTERSALES_FLAG_CRITICAL_BP": "9000",
    # A seller's deposit minimum of 10 yuan (not 1000), so a test can draw a
    # deposit below it with an order a phone-tier buyer may pay.
    "KAMI_PAYMENT_DEPOSIT_MINIMUM": "1000",
    # Sellers approved for this category keep 25 yuan (test_replacements).
    "KAMI_PAYMENT_DEPOSIT_MINIMUMS": json.dumps({"e2e-premium": 2500}),
    # Inventory's maintenance (near-expiry blocking) runs every second.
    "KAMI_INVENTORY_MAINTENANCE_INTERVAL_SECONDS": "1",
    # Gauges refreshed every second, so tests read them without waiting long.
    "KAMI_ORDERING_METRICS_REFRESH_SECONDS": "1",
    "KAMI_PAYMENT_METRICS_SECONDS": "1",
    "KAMI_INVENTORY_METRICS_REFRESH_SECONDS": "1",
    "KAMI_CONSUMER_LAG_REFRESH_SECONDS": "1",
}


@contextmanager
def running_platform(
    servers: Servers, home: Path, extra_env: Mapping[str, str] = E2E_ENV
) -> Iterator[Platform]:
    """Every service as a process, in a namespace of its own; its databases
    are dropped at the end of the session (never under a running service)."""
    instance = Platform.isolated(
        servers.kafka_bootstrap, servers.mongodb_uri, home=home, name="e2e", extra_env=extra_env
    )
    try:
        with instance.running(available_services()):
            yield instance
    finally:
        _finished_platforms.append(instance.database_prefix)


_finished_platforms: list[str] = []


@pytest.fixture(scope="session")
def platform(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(servers, tmp_path_factory.mktemp("platform")) as instance:
        yield instance


@pytest.fixture(scope="session", autouse=True)
async def platform_databases(servers: Servers) -> AsyncIterator[None]:
    """Drops the databases of every platform of the session at its end."""
    yield
    client = connect(servers.mongodb_uri, app_name="kami-e2e-cleanup")
    try:
        prefixes = tuple(f"{prefix}_" for prefix in _finished_platforms)
        for name in await client.list_database_names():
            if prefixes and name.startswith(prefixes):
                await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def operator(platform: Platform) -> AsyncIterator[Person]:
    """The operator; after the test, the DESIGN §9 audit of everything so far."""
    person = await operator_of(platform, OPERATOR_PHONE)
    yield person
    await assert_invariants(platform, person)
