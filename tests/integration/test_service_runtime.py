"""A service process's runtime on the real servers: health, readiness,
metrics, relay and pollers started and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from kami_events.consumer import Received
from kami_events.mongo import connect
from kami_events.runtime import ServiceRuntime
from kami_events.settings import ServiceSettings
from kami_events.store import CommitContext
from kami_web.app import create_app
from tests.conftest import Servers
from tests.integration.conftest import eventually
from tests.unit.events.sample_events import CounterOpened


async def test_runtime_serves_health_and_moves_events(
    servers: Servers, kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    service = unique("svc")
    settings = ServiceSettings(
        service_name=service,
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=servers.mongodb_uri,
        mongodb_database=f"kami_test_{service.replace('-', '_')}",
        outbox_poll_interval_seconds=0.05,
    )
    runtime = ServiceRuntime(settings)
    seen: list[str] = []
    ticks = 0

    @runtime.consumer.handles(CounterOpened)
    async def on_opened(message: Received[Any]) -> None:
        seen.append(message.envelope.aggregate_id)

    async def tick() -> None:
        nonlocal ticks
        ticks += 1

    runtime.every("tick", timedelta(seconds=0.05), tick)
    app = create_app(runtime, title="test")
    await runtime.start()
    try:
        aggregate_id = unique("counter")
        await runtime.store.append(
            "test.counter", aggregate_id, 0, [CounterOpened(name="n")], CommitContext("c")
        )
        # The relay publishes it and this service's own consumer receives it.
        await eventually(lambda: aggregate_id in seen, message="event never came back")
        await eventually(lambda: ticks >= 2, message="poller did not run")

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {
                "mongodb": "ok",
                "kafka": "ok",
                "consumer": "ok",
                "outbox": "ok",
            }
            metrics = (await client.get("/metrics")).text
            assert f'kami_outbox_lag_seconds{{service="{service}"}} 0.0' in metrics
            assert (
                f'kami_events_consumed_total{{event_type="CounterOpened",outcome="handled",service="{service}"}}'
                in metrics
            )
    finally:
        await runtime.stop()
        # Dropped only once nothing reads it: FerretDB's SQLite backend can
        # crash (SIGBUS) when a database is dropped under a live reader.
        cleanup = connect(servers.mongodb_uri, app_name="kami-tests-cleanup")
        await cleanup.drop_database(settings.database_name)
        await cleanup.close()
        await asyncio.sleep(0)
    ticks_after_stop = ticks
    await asyncio.sleep(0.2)
    assert ticks == ticks_after_stop
