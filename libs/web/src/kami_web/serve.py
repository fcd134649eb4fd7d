"""Running one service as a process: `python -m kami_<service>` calls `run_service`.

JSON logs and (when OTEL_TRACES_EXPORTER asks for it) tracing are set up
before the app is built, so the broker and the app get their middleware;
uvicorn logs through the same JSON handler. On SIGTERM uvicorn stops
accepting connections, finishes the requests in flight (at most
`http_shutdown_grace_seconds`), then the app's lifespan stops the runtime
gracefully (`kami_events.runtime`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from kami_events.logs import configure_logging
from kami_events.settings import ServiceSettings
from kami_events.tracing import configure_tracing

S = TypeVar("S", bound=ServiceSettings)


def run_service(settings: S, create_app: Callable[[S], FastAPI]) -> None:
    configure_logging(settings.service_name, level=settings.log_level)
    configure_tracing(settings.service_name)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # keep the JSON handler configure_logging installed
        # The C event loop and HTTP parser: a service spends much of its CPU
        # in the loop (Kafka, MongoDB, HTTP) and in parsing requests.
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=max(1, round(settings.http_shutdown_grace_seconds)),
    )
    uvicorn.Server(config).run()
