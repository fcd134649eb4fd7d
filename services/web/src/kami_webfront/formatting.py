"""Filters the templates format values with: money in fen, rates in basis points, times."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def yuan(fen: int | None) -> str:
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole}.{cents:02d}"


def percent_bp(bp: int | None) -> str:
    return "—" if bp is None else f"{bp / 100:.1f}%"


def stars(milli: int | None) -> str:
    return "—" if not milli else f"{milli / 1000:.1f}"


def local_time(value: str | datetime | None) -> str:
    if value is None:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def iso(value: str | datetime | None) -> str:
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.isoformat()


FILTERS: dict[str, Any] = {
    "yuan": yuan,
    "percent_bp": percent_bp,
    "stars": stars,
    "local_time": local_time,
    "iso": iso,
}


def new_request_id() -> str:
    """A form's own id: sending the same form twice is one request (idempotency)."""
    return uuid.uuid4().hex


GLOBALS: dict[str, Any] = {"new_request_id": new_request_id}
