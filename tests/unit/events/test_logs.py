"""JSON log lines: one object per line, the bound ids on each, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from kami_events.logs import REDACTED, configure_logging, log_context


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    configure_logging("ordering", stream=out)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_bound_ids(lines: io.StringIO) -> None:
    log = logging.getLogger("kami_ordering.handlers")
    with log_context(correlation_id="order-1", event_id="e-1", order_id="order-1", absent=None):
        log.info("order %s reserved", "order-1", extra={"keys": 2})
    log.warning("after the handler")

    first, second = records(lines)
    assert list(first)[:5] == ["timestamp", "level", "service", "logger", "message"]
    assert first["timestamp"].endswith("Z") and len(first["timestamp"]) == 24
    assert (first["level"], first["service"], first["logger"]) == (
        "info",
        "ordering",
        "kami_ordering.handlers",
    )
    assert first["message"] == "order order-1 reserved"
    assert (first["correlation_id"], first["event_id"], first["order_id"]) == (
        "order-1",
        "e-1",
        "order-1",
    )
    assert first["keys"] == 2 and "absent" not in first
    # The context ends with its block.
    assert second["level"] == "warning" and "correlation_id" not in second


def test_secrets_never_reach_a_line(lines: io.StringIO) -> None:
    log = logging.getLogger("kami_identity.handlers")
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    log.info(
        "login with %s for 110101199003074514 (Authorization: Bearer abc.def)",
        jwt,
        extra={"password": "E2e-correct-horse-42", "otp": "123456", "id_number": "x"},
    )
    [line] = records(lines)
    text = json.dumps(line)
    for secret in (jwt, "110101199003074514", "abc.def", "E2e-correct-horse-42", "123456"):
        assert secret not in text
    assert line["password"] == line["otp"] == line["id_number"] == REDACTED
    assert "110101********4514" in line["message"]


def test_exceptions_and_uvicorn_access_lines_keep_their_parts(lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("kami_events.runtime").exception("job failed")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/orders/o-1", "1.1", 200
    )
    failure, access = records(lines)
    assert failure["level"] == "error" and "ValueError: boom" in failure["exception"]
    assert access["message"] == '127.0.0.1:5000 - "GET /orders/o-1 HTTP/1.1" 200'
    assert (access["method"], access["path"], access["status"]) == ("GET", "/orders/o-1", 200)
    assert access["logger"] == "uvicorn.access" and access["service"] == "ordering"


def test_access_lines_survive_a_uvicorn_config_made_before() -> None:
    import uvicorn

    # uvicorn.Config sets its access logger's level and propagation when made
    # (a test double served with log_level="warning" leaves that behind).
    uvicorn.Config(lambda *_: None, log_level="warning", access_log=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging("ordering", stream=out)
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz", "1.1", 200
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()
    assert [line["path"] for line in records(out)] == ["/healthz"]
