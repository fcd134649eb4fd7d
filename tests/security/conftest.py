"""The security suite attacks every service running as its own process on the
real servers (the e2e platform: its own ports, databases and topic
namespace), with real tokens for every role, after building a small market
(`world.py`) once per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from kami_actors import Person
from kami_events.mongo import connect
from kami_local import Platform, available_services
from kami_market import operator_of
from tests.conftest import Servers
from tests.e2e.conftest import E2E_ENV, OPERATOR_PHONE
from tests.e2e.invariants import assert_invariants
from tests.security.world import World, build_world

# Access tokens that outlive the session (identity's maximum), so a long
# fuzzing run never meets an expired one by accident; and sellers judged by
# after-sales only past 1000 delivered orders, so the world's seller, with a
# ticket on nearly every one of its few orders, is never flagged and
# delisted (the e2e tests judge from 3: flagging is theirs to test).
SECURITY_ENV = E2E_ENV | {
    "KAMI_IDENTITY_ACCESS_TOKEN_TTL_SECONDS": "3600",
    "KAMI_AFTERSALES_FLAG_MIN_ORDERS": "1000",
}


@pytest.fixture(scope="session")
def platform(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    instance = Platform.isolated(
        servers.kafka_bootstrap,
        servers.mongodb_uri,
        home=tmp_path_factory.mktemp("security-platform"),
        name="sec",
        extra_env=SECURITY_ENV,
    )
    with instance.running(available_services()):
        yield instance


@pytest.fixture(scope="session")
async def operator(platform: Platform, servers: Servers) -> AsyncIterator[Person]:
    """The operator; at the end of the session the run's databases are dropped."""
    yield await operator_of(platform, OPERATOR_PHONE)
    client = connect(servers.mongodb_uri, app_name="kami-security-cleanup")
    try:
        prefix = f"{platform.database_prefix}_"
        for name in await client.list_database_names():
            if name.startswith(prefix):
                await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture(scope="session")
async def world(platform: Platform, operator: Person) -> AsyncIterator[World]:
    built = await build_world(platform, operator)
    yield built
    await built.close()


@pytest.fixture
async def audited(platform: Platform, operator: Person, world: World) -> AsyncIterator[World]:
    """The world; after the test, the DESIGN §9 audit of everything so far
    (no key sold twice, the ledger balanced, every order's money in one place)."""
    yield world
    await assert_invariants(platform, operator)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The leak scan runs after every other test, so it sees all they sent."""
    last = [item for item in items if "test_no_plaintext_secrets" in item.nodeid]
    items[:] = [item for item in items if item not in last] + last
