"""Every service as its own process, on the real servers, driven over HTTP.

One platform per test session: its own free ports, databases
(`e2e<run>_<service>`) and Kafka topic namespace (`kami-e2e-<run>`), so it
never meets a running demo or an earlier run's events.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from kami_actors import Person
from kami_events.mongo import connect
from kami_local import DEMO_OPERATOR_PHONE, SERVICES, Platform, available_services
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
    "KAMI_OUTBOX_POLL_INTERVAL_SECONDS": "0.05",
    # After-sales judges a seller from 3 delivered orders (not 20), and only
    # flags critical (delisting) over 90% (so a test sees a warning demote).
    "KAMI_AFTERSALES_FLAG_MIN_ORDERS": "3",
    "KAMI_AFTERSALES_FLAG_CRITICAL_BP": "9000",
    # A seller's deposit minimum of 10 yuan (not 1000), so a test can draw a
    # deposit below it with an order a phone-tier buyer may pay.
    "KAMI_PAYMENT_DEPOSIT_MINIMUM": "1000",
    # Inventory's maintenance (near-expiry blocking) runs every second.
    "KAMI_INVENTORY_MAINTENANCE_INTERVAL_SECONDS": "1",
}


def _free_port() -> int:
    """A port nobody listens on now, so two test runs can share a machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def platform(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    run = uuid4().hex[:8]
    home: Path = tmp_path_factory.mktemp("platform")
    ports = {name: _free_port() for name in SERVICES}
    instance = Platform(
        servers.kafka_bootstrap,
        servers.mongodb_uri,
        home=home,
        ports=ports,
        database_prefix=f"e2e{run}",
        topic_prefix=f"kami-e2e-{run}",
        extra_env=E2E_ENV,
    )
    services = available_services()
    try:
        instance.up(services)
        yield instance
    finally:
        instance.down(services)


@pytest.fixture(scope="session")
async def platform_databases(platform: Platform, servers: Servers) -> AsyncIterator[None]:
    """Drops the run's databases at the end of the session."""
    yield
    client = connect(servers.mongodb_uri, app_name="kami-e2e-cleanup")
    try:
        prefix = f"{platform.database_prefix}_"
        for name in await client.list_database_names():
            if name.startswith(prefix):
                await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def operator(platform: Platform, platform_databases: None) -> AsyncIterator[Person]:
    """The operator; after the test, the DESIGN §9 audit of everything so far."""
    person = await operator_of(platform, OPERATOR_PHONE)
    yield person
    await assert_invariants(platform, person)
