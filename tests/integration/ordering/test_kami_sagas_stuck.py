"""`kami sagas stuck` against ordering on the real Kafka and FerretDB, served
over HTTP: a saga whose payment deadline passed while the deadline poller was
not running is listed; the gauge's endpoint is for operators only."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
import uvicorn

from kami_events.catalogue.identity import Role
from kami_local import free_port
from tests.conftest import Servers
from tests.integration.conftest import eventually
from tests.integration.ordering.harness import MINUTES, OrderingWorld, ordering_world
from tests.integration.ordering.test_ordering_service import place, reserve
from tests.kami_command import kami


@pytest.fixture
async def world(
    servers: Servers,
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[OrderingWorld]:
    async with ordering_world(
        bootstrap=kafka_bootstrap,
        mongodb_uri=servers.mongodb_uri,
        unique=unique,
        monkeypatch=monkeypatch,
    ) as world:
        # The poller looks once at start, then not for an hour: deadlines pass unfired.
        world.settings = world.settings.model_copy(
            update={"ordering_deadline_poll_seconds": 3600.0}
        )
        yield world


async def test_a_saga_past_its_deadline_is_listed_for_operators(world: OrderingWorld) -> None:
    ordering = await world.start()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(ordering.app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, message="the HTTP server never started")
        buyer = world.unique("buyer")
        offer_id, _ = await world.list_offer(ordering)
        order = (await place(world, ordering, buyer, offer_id, quantity=1)).json()
        await reserve(world, order, [world.unique("key")])
        await world.wait_for_state(ordering, order["order_id"], buyer, "RESERVED")
        operator = {
            "KAMI_ORDERING_URL": f"http://127.0.0.1:{port}",
            "KAMI_TOKEN": world.keys.user_token("op-1", Role.OPERATOR),
        }

        on_time = await kami("sagas", "stuck", "--check", env=operator)
        assert on_time.code == 0, on_time
        assert "no saga is past its deadline by more than 60s" in on_time.stdout

        world.clock.advance(20 * MINUTES)  # 5 minutes past the 15-minute payment window
        listed = await kami("sagas", "stuck", "--json", env=operator)
        assert listed.code == 0, listed
        found = json.loads(listed.stdout)
        [saga] = found["sagas"]
        assert (saga["order_id"], saga["state"], saga["deadline"]) == (
            order["order_id"],
            "RESERVED",
            "payment",
        )
        # (publishing moves the test clock a second per event)
        assert 5 * MINUTES <= timedelta(seconds=saga["overdue_seconds"]) <= 6 * MINUTES
        table = await kami("sagas", "stuck", "--check", env=operator)
        assert table.code == 3, table  # --check: stuck sagas fail the command
        assert order["order_id"] in table.stdout and "RESERVED" in table.stdout

        as_buyer = {**operator, "KAMI_TOKEN": world.keys.user_token(buyer, Role.BUYER)}
        refused = await kami("sagas", "stuck", env=as_buyer)
        assert refused.code == 1
        assert "403 forbidden" in refused.stderr
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await ordering.stop()
