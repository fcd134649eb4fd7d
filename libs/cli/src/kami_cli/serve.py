"""`kami serve <service>` and `kami serve all`.

One service: exactly what `python -m kami_<service>` does: its settings from
the environment, its app (HTTP API, consumer, outbox relay, pollers) under
uvicorn on `KAMI_HTTP_HOST:KAMI_HTTP_PORT`. This is the container image's
entrypoint and how `deploy/local/kami_local.py` starts each process.

All services in one process (a laptop, a demo): one event loop, one uvicorn
server per service on its own port. What several services in one process
would otherwise share, and how each is kept apart:

- settings: `KAMI_HTTP_PORT`, `KAMI_MONGODB_DATABASE`, `KAMI_SERVICE_NAME`
  and `KAMI_CONSUMER_GROUP_OVERRIDE` name one service's port, database,
  identity and consumer group, so every service would take the same. Here
  each service's are set explicitly (its port from the local table, database
  `<prefix>_<service>`, its own name and group), and those variables are
  refused. Service-to-service URLs
  (`delivery_inventory_url`) point at the in-process servers.
- Prometheus: the metrics live in the process-wide default registry. Their
  names do not collide (each service's metrics are its own; the shared
  machinery's are labelled by service), so every port's `/metrics` shows the
  whole process: scrape one port, not seven. Outbox gauges are refreshed on
  each service's own scrape, so a background job refreshes all of them.
- signals: each uvicorn server would install its own SIGTERM handler over
  the previous one's; here one handler stops every server, and each shuts
  its runtime down (consumer, relay, pollers) in its lifespan.
- logs: one JSON handler for the process (`kami_events.logs`); each line
  names its service, bound in each server's task context and inherited by
  every task it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
import uvloop
from fastapi import FastAPI
from pydantic import ValidationError

from kami_cli.config import SERVICE_PORTS, SERVICES, package_of
from kami_cli.errors import CliError
from kami_events.logs import configure_logging, log_context
from kami_events.settings import ServiceSettings
from kami_web.serve import run_service

log = logging.getLogger(__name__)

# Variables that configure a single service and would give every service of
# one process the same port, database or consumer group.
SINGLE_SERVICE_VARIABLES = (
    "KAMI_HTTP_PORT",
    "KAMI_MONGODB_DATABASE",
    "KAMI_SERVICE_NAME",
    "KAMI_CONSUMER_GROUP_OVERRIDE",
)
OUTBOX_GAUGE_REFRESH_SECONDS = 15.0


@dataclass(frozen=True)
class Servable:
    """A service the CLI can run: its settings class and its app factory."""

    name: str
    settings_class: type[ServiceSettings]
    create_app: Callable[..., FastAPI]


class UnknownService(CliError):
    pass


def servable(name: str) -> Servable:
    if name not in SERVICES:
        raise UnknownService(
            f"unknown service {name!r}; choose one of: {', '.join(SERVICES)}, or all", 2
        )
    try:
        settings_module = importlib.import_module(f"{package_of(name)}.settings")
        app_module = importlib.import_module(f"{package_of(name)}.app")
    except ModuleNotFoundError as exc:
        raise UnknownService(f"{name} cannot be served yet: {exc}", 2) from None
    settings_class = getattr(settings_module, f"{name.capitalize()}Settings")
    return Servable(name, settings_class, app_module.create_app)


def servable_services() -> list[Servable]:
    """Every service that has an app today."""
    found = []
    for name in SERVICES:
        with contextlib.suppress(UnknownService):
            found.append(servable(name))
    return found


def _settings(service: Servable, **overrides: Any) -> ServiceSettings:
    try:
        return service.settings_class(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"KAMI_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise CliError(f"{service.name} is not configured: {problems}") from None


def serve_one(name: str) -> None:
    service = servable(name)
    run_service(_settings(service), service.create_app)


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_all`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class _Running:
    service: Servable
    app: FastAPI
    server: _InProcessServer
    failure: str | None = None


def plan_all(
    services: Sequence[Servable],
    *,
    host: str,
    ports: dict[str, int],
    database_prefix: str,
    environ: dict[str, str] | None = None,
) -> dict[str, ServiceSettings]:
    """Each service's settings for one process: its own port, database and name."""
    environ = dict(os.environ) if environ is None else environ
    clashing = [name for name in SINGLE_SERVICE_VARIABLES if environ.get(name)]
    if clashing:
        raise CliError(
            f"`kami serve all` runs every service in one process; {', '.join(clashing)} "
            "would configure them all alike. Unset it (ports come from the local table, "
            "databases are <prefix>_<service>, see --database-prefix)."
        )
    names = {s.name for s in services}
    planned = {}
    for service in services:
        overrides: dict[str, Any] = {
            "service_name": service.name,
            "http_host": host,
            "http_port": ports[service.name],
            "mongodb_database": f"{database_prefix}_{service.name}",
        }
        for other in names:
            field = f"{service.name}_{other}_url"
            if field in service.settings_class.model_fields:
                overrides[field] = f"http://{host}:{ports[other]}"
        planned[service.name] = _settings(service, **overrides)
    return planned


async def _run_all(running: list[_Running]) -> None:
    loop = asyncio.get_running_loop()

    def stop_all(*_: object) -> None:
        for each in running:
            each.server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_all)

    async def serve(each: _Running) -> None:
        structlog.contextvars.bind_contextvars(service=each.service.name)
        try:
            await each.server.serve()
        except SystemExit as exc:  # uvicorn's way to say the app or the port failed
            each.failure = f"{each.service.name} failed to start (exit {exc.code})"
            stop_all()
        except Exception as exc:
            each.failure = f"{each.service.name} stopped: {exc!r}"
            log.exception("%s stopped", each.service.name)
            stop_all()

    async def refresh_outbox_gauges() -> None:
        while True:
            await asyncio.sleep(OUTBOX_GAUGE_REFRESH_SECONDS)
            for each in running:
                if each.server.started:
                    with contextlib.suppress(Exception):
                        await each.app.state.runtime.relay.lag()

    refresher = asyncio.create_task(refresh_outbox_gauges())
    try:
        await asyncio.gather(*(serve(each) for each in running))
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def serve_all(*, host: str, base_port: int, database_prefix: str) -> None:
    services = servable_services()
    # The local table's order and spacing (identity 8101 ... aftersales 8107).
    first = min(SERVICE_PORTS.values())
    ports = {name: base_port + port - first for name, port in SERVICE_PORTS.items()}
    planned = plan_all(services, host=host, ports=ports, database_prefix=database_prefix)
    configure_logging("all")
    running = []
    for service in services:
        settings = planned[service.name]
        with log_context(service=service.name):
            app = service.create_app(settings)
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            http="httptools",
        )
        running.append(_Running(service, app, _InProcessServer(config)))
    log.info(
        "serving %s in one process",
        ", ".join(f"{r.service.name}:{r.server.config.port}" for r in running),
    )
    uvloop.run(_run_all(running))  # the event loop run_service gives one service
    failures = [r.failure for r in running if r.failure]
    if failures:
        raise CliError("; ".join(failures))
