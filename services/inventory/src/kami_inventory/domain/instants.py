"""Instants as MongoDB stores them."""

from __future__ import annotations

from datetime import datetime


def to_millis(moment: datetime) -> datetime:
    """`moment` truncated to the millisecond, the precision of a BSON date: an
    instant reported before it is stored equals the one read back later."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)
