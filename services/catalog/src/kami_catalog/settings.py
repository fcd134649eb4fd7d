"""Configuration of the catalog service, from `KAMI_*` environment variables."""

from __future__ import annotations

from kami_events.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    service_name: str = "catalog"
