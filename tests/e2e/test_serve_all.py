"""`kami serve all`: every service in one process, on ports of its own, with
its own databases and topic namespace; a purchase goes through it, one
`/metrics` shows every service, and SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from uuid import uuid4

import httpx

from kami_cli.config import SERVICE_PORTS
from kami_events.mongo import connect
from kami_local import Platform, available_services
from kami_market import (
    funded_buyer,
    list_offer_with_keys,
    operator_of,
    order_state,
    pay_by_wallet,
    place_order,
)
from tests.conftest import Servers
from tests.e2e.conftest import E2E_ENV, OPERATOR_PHONE


def _free_run_of_ports(count: int) -> int:
    """The first of `count` consecutive ports nobody listens on."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65_000:
            continue
        free = True
        for port in range(base, base + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise AssertionError("no run of free ports")


async def _all_ready(platform: Platform, process: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    async with httpx.AsyncClient(timeout=2) as client:
        for service in available_services():
            while True:
                assert process.returncode is None, "kami serve all exited"
                try:
                    if (await client.get(f"{platform.url(service)}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert loop.time() < deadline, f"{service} never got ready"
                await asyncio.sleep(0.3)


async def test_every_service_in_one_process_sells_a_key(servers: Servers, tmp_path: Path) -> None:
    run = uuid4().hex[:8]
    base = _free_run_of_ports(len(SERVICE_PORTS))
    first = min(SERVICE_PORTS.values())
    platform = Platform(
        servers.kafka_bootstrap,
        servers.mongodb_uri,
        home=tmp_path / "platform",
        ports={name: base + port - first for name, port in SERVICE_PORTS.items()},
        database_prefix=f"e2eall{run}",
        topic_prefix=f"kami-e2e-all-{run}",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMI_")}
    env.update(platform.secrets())
    env.update(E2E_ENV)
    env.update(
        {
            "KAMI_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
            "KAMI_MONGODB_URI": servers.mongodb_uri,
            "KAMI_DATABASE_PREFIX": platform.database_prefix,
            "KAMI_TOPIC_PREFIX": f"kami-e2e-all-{run}",
            "KAMI_PAYMENT_SIMULATOR_ENABLED": "true",
        }
    )
    log = (tmp_path / "serve-all.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kami_cli",
        "serve",
        "all",
        "--base-port",
        str(base),
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        await _all_ready(platform, process)
        operator = await operator_of(platform, OPERATOR_PHONE)
        offer = await list_offer_with_keys(platform, operator, keys=1, unit_price=950)
        buyer = await funded_buyer(platform, 2000)
        order_id = await place_order(buyer, offer)
        await order_state(buyer, order_id, "RESERVED")
        paid = await pay_by_wallet(buyer, order_id)
        assert paid.status_code in (200, 201), paid.text
        await order_state(buyer, order_id, "DELIVERED")

        # One registry for the process: any port shows every service's metrics.
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = (await client.get(f"{platform.url('catalog')}/metrics")).text
        published = [
            line for line in metrics.splitlines() if line.startswith("kami_events_published_total{")
        ]
        for service in ("ordering", "payment", "inventory", "delivery"):
            assert any(f'service="{service}"' in line for line in published), service
        assert "kami_saga_orders" in metrics and "kami_ledger_balance_fen" in metrics
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 60)
        else:
            code = process.returncode
        log.close()
        mongo = connect(servers.mongodb_uri, app_name="kami-e2e-cleanup")
        try:
            for name in await mongo.list_database_names():
                if name.startswith(f"{platform.database_prefix}_"):
                    await mongo.drop_database(name)  # done at the end of the run
        finally:
            await mongo.close()
    output = (tmp_path / "serve-all.log").read_text(errors="replace")
    assert code == 0, output[-3000:]
    # Each JSON line names its service; every service shut its runtime down.
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    shut_down = {
        line["service"]
        for line in lines
        if line["logger"] == "uvicorn.error" and line["message"] == "Application shutdown complete."
    }
    assert {"ordering", "payment", "inventory", "delivery"} <= shut_down, shut_down
