"""`kami projections rebuild` on the real FerretDB: catalog's read models come
back equal to the live ones; services without projections are refused."""

from __future__ import annotations

from typing import Any

from kami_catalog.adapters.projections import READ_MODELS
from tests.integration.catalog.conftest import CatalogUnderTest
from tests.integration.catalog.shop import build_shop
from tests.kami_command import kami

# Where no catalog answers: the command's "is it running?" check must see it stopped.
STOPPED = "catalog=http://127.0.0.1:9"


async def _snapshot(c: CatalogUnderTest) -> dict[str, list[dict[str, Any]]]:
    db = c.service.runtime.db
    return {name: [doc async for doc in db[name].find().sort("_id", 1)] for name in READ_MODELS}


async def test_kami_rebuilds_catalogs_read_models_from_its_event_stores(
    catalog: CatalogUnderTest,
) -> None:
    await build_shop(catalog)
    await catalog.service.projector.catch_up()
    live = await _snapshot(catalog)
    for name in ("categories", "products", "offers", "sellers"):
        assert live[name], f"the shop left {name} empty"
    await catalog.service.read_models.clear()

    settings = catalog.service.settings
    ran = await kami(
        "--mongodb-uri",
        settings.mongodb_uri,
        "--url",
        STOPPED,
        "projections",
        "rebuild",
        "catalog",
        "--database",
        settings.database_name,
    )
    assert ran.code == 0, ran
    for name, docs in live.items():
        assert f"{name} ({len(docs)} documents)" in ran.stdout
    assert await _snapshot(catalog) == live


async def test_services_without_projections_are_refused_with_the_reason() -> None:
    ran = await kami("projections", "rebuild", "ordering")
    assert ran.code == 2
    assert "ordering has no projections to rebuild" in ran.stderr
    assert "only a replay of their topics restores them" in ran.stderr
