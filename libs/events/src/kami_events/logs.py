"""JSON logs for every Kami process (DESIGN §7): one object per line.

    {"timestamp": "2025-05-01T08:00:00.123Z", "level": "info", "service": "ordering",
     "logger": "kami_events.consumer", "message": "...", "correlation_id": "<order id>",
     "event_id": "...", "order_id": "...", "trace_id": "..."}

`configure_logging` installs it once per process on the root logger, so the
standard library's loggers (ours, uvicorn's access and error logs, FastStream,
aiokafka, pymongo) and structlog's all come out the same way. What a log line
is about is bound with `log_context` (the consumer binds the message's ids
around each handler, the HTTP middleware the request's), and every line
emitted inside carries it.

No secret reaches a log line: fields named like one (password, OTP, token,
card key, ID number...) are replaced, and JWT-shaped strings and 18-digit ID
numbers are masked inside messages too. The code itself never logs a secret
(DESIGN §9.5); this is the second line of defence.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

# Field names whose values are secrets, wherever they appear in a log line.
SECRET_FIELDS = frozenset(
    {
        "password",
        "new_password",
        "old_password",
        "payment_password",
        "otp",
        "code",
        "verification_code",
        "token",
        "access_token",
        "refresh_token",
        "verification_token",
        "service_token",
        "authorization",
        "secret",
        "card_key",
        "key_secret",
        "plaintext",
        "id_number",
        "master_key",
        "cookie",
    }
)
_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_ID_NUMBER = re.compile(r"(?<![\dA-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![\dA-Za-z])")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")


def scrub(text: str) -> str:
    """`text` with bearer tokens, JWTs and ID numbers masked."""
    text = _BEARER.sub("Bearer " + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return _ID_NUMBER.sub(r"\1********\2", text)


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue
        if key.lower() in SECRET_FIELDS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    moment = (
        datetime.fromtimestamp(record.created, UTC)
        if isinstance(record, logging.LogRecord)
        else datetime.now(UTC)
    )
    # Milliseconds: enough to order lines, and no 6-digit run that could pass for a code.
    event_dict["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event_dict


def _trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


def _access_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn's access log passes its parts as arguments: keep them as fields."""
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if (
        isinstance(record, logging.LogRecord)
        and record.name == "uvicorn.access"
        and isinstance(args, tuple)
        and len(args) == 5
    ):
        client, method, path, _version, status = args
        event_dict.update(client=client, method=method, path=path, status=status)
    return event_dict


def _service(service: str) -> Processor:
    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        # A process hosting several services (`kami serve all`) binds each
        # one's name in its tasks' context; otherwise the process's own.
        event_dict.setdefault("service", service)
        return event_dict

    return add


def _message_field(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict["message"] = scrub(str(event_dict.pop("event", "")))
    event_dict.pop("color_message", None)  # uvicorn's copy of the message, in ANSI colours
    return event_dict


def _ordered(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    head = ("timestamp", "level", "service", "logger", "message")
    ordered = {key: event_dict.pop(key) for key in head if key in event_dict}
    ordered.update(event_dict)
    return ordered


def configure_logging(
    service: str, *, level: int | str = logging.INFO, stream: TextIO | None = None
) -> None:
    """JSON lines on `stream` (stdout) for everything logged in this process."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _access_fields,
        _trace_ids,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        pass_foreign_args=True,
        processors=[
            _timestamp,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _service(service),
            structlog.processors.format_exc_info,
            _message_field,
            _redact,
            _ordered,
            structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings become JSON lines too
    # uvicorn's loggers write through the root handler, in the same format and
    # at the root's level (a uvicorn.Config made earlier may have set its own).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.setLevel(logging.NOTSET)
        uvicorn_logger.propagate = True
    # FastStream's own loggers do not propagate and get a coloured handler
    # unless one writing to stdout is there already: give them ours.
    for name in ("faststream", "faststream.access.kafka"):
        faststream_logger = logging.getLogger(name)
        faststream_logger.handlers[:] = [handler]
        faststream_logger.propagate = False
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every log line emitted inside carries `fields` (None values are left out)."""
    present = {key: value for key, value in fields.items() if value is not None}
    tokens = structlog.contextvars.bind_contextvars(**present)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
