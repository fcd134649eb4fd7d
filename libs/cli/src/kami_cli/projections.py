"""`kami projections rebuild <service>`: read models rebuilt from event stores.

Only catalog's read models are projections that can be rebuilt from what the
service keeps: its projector folds its own event stores and its log of the
events it consumed (`kami_catalog.adapters.projections`). The other services
keep read models fed by other services' events, which they do not log, so
only a replay of those topics could restore them: the command refuses them
and says so.
"""

from __future__ import annotations

import httpx

from kami_cli.config import CliSettings
from kami_cli.errors import CliError

WHY_NOT: dict[str, str] = {
    "identity": "identity keeps no read model: users are loaded from their streams",
    "inventory": "inventory's offer read model is fed by catalog's events, and its key "
    "documents are the pool itself, not a projection",
    "ordering": "ordering's offers, settlements, claims and timeline come from other "
    "services' events, which it does not log; only a replay of their topics restores them",
    "payment": "payment's read models of orders and parties come from other services' "
    "events, which it does not log; only a replay of their topics restores them",
    "delivery": "delivery's read models come from ordering's events, which it does not log",
    "aftersales": "aftersales' order facts, queue and issue counters come from other "
    "services' events and its own, which it does not log; only a replay of their topics "
    "restores them",
}


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def rebuild(
    settings: CliSettings, service: str, *, database: str | None, force: bool
) -> dict[str, int]:
    if service != "catalog":
        raise CliError(f"{service} has no projections to rebuild: {WHY_NOT[service]}", 2)
    if not force and _answers(settings.url(service)):
        raise CliError(
            f"{service} is running at {settings.url(service)}: stop it first (a write "
            "racing the rebuild could be lost), or pass --force"
        )
    from kami_catalog.__main__ import rebuild_projections
    from kami_catalog.settings import CatalogSettings

    catalog = CatalogSettings(
        kafka_bootstrap=settings.kafka_bootstrap,
        mongodb_uri=settings.mongodb_uri,
        mongodb_database=database or settings.database(service),
    )
    return await rebuild_projections(catalog)
