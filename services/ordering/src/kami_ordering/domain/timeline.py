"""A short, safe line about one event of an order, for its timeline.

Events never carry a key's secret, a password or an OTP (DESIGN §2), but the
timeline is shown to support agents too, so it shows less than the event:
no buyer-supplied values (`buyer_fields`), no free text (`detail`), nothing
whose name denotes a secret, and lists only as counts.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from kami_events.catalogue.common import is_sensitive_name
from kami_events.event import Event

MAX_SUMMARY_LENGTH = 240

# Fields every event of a purchase repeats: the timeline row names the order already.
_REPEATED = frozenset({"order_id", "buyer_id", "seller_id", "offer_id", "product_id", "currency"})
# Free text, or values the buyer typed in.
_WITHHELD = frozenset({"detail", "buyer_fields", "channel_reference"})


def summarize(event: Event) -> str:
    parts: list[str] = []
    for name in type(event).model_fields:
        if name in _REPEATED or name in _WITHHELD or is_sensitive_name(name):
            continue
        rendered = _render(name, getattr(event, name))
        if rendered is not None:
            parts.append(f"{name}={rendered}")
    summary = ", ".join(parts)
    if len(summary) > MAX_SUMMARY_LENGTH:
        summary = summary[: MAX_SUMMARY_LENGTH - 1] + "…"
    return summary


def _render(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return str(len(value))
    return None
