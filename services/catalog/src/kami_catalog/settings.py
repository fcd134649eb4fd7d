"""Configuration of the catalog service, from `KAMI_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from kami_events.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    service_name: str = "catalog"
    http_port: int = Field(default=8102, ge=1, le=65535)

    # Read models: how often the projector looks for commits it has not applied
    # (it also runs after every command).
    projection_interval_seconds: float = Field(default=1.0, gt=0)
    # How often offers delisted for a suspension that has run out are relisted.
    suspension_check_interval_seconds: float = Field(default=60.0, gt=0)

    hot_picks_days: int = Field(default=7, ge=1, le=90)

    # Price comparison: what makes a seller look reliable.
    reliable_min_delivery_success_bp: int = Field(default=9_500, ge=0, le=10_000)
    reliable_max_ticket_rate_bp: int = Field(default=500, ge=0, le=10_000)
    reliable_min_rating_milli: int = Field(default=4_000, ge=1_000, le=5_000)

    # The starter catalogue `python -m kami_catalog seed` loads by default.
    seed_path: Path | None = None
