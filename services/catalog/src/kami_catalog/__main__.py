"""`python -m kami_catalog [serve | seed [FILE] | rebuild-projections]`

- `serve` (the default): the HTTP API on `KAMI_HTTP_HOST:KAMI_HTTP_PORT` (8102),
  with the consumer, the outbox relay and the projector.
- `seed FILE`: publish the categories and products of a starter catalogue
  (idempotent); the running service's relay publishes the events.
- `rebuild-projections`: rebuild every read model from the event stores and
  the consumed-event log. Run it while the service is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from kami_catalog.adapters.projections import READ_MODELS
from kami_catalog.app import build_service, create_app
from kami_catalog.seed import SeedError, load_catalogue, seed_catalogue
from kami_catalog.settings import CatalogSettings


async def _seed(path: Path, settings: CatalogSettings | None = None) -> int:
    try:
        catalogue = load_catalogue(path)
    except SeedError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 2
    service = build_service(settings)
    try:
        await service.runtime.store.ensure_indexes()
        await service.private_store.ensure_indexes()
        await service.read_models.ensure_indexes()
        report = await seed_catalogue(service.handlers, catalogue)
    finally:
        await service.runtime.mongo.close()
    print(
        f"seed: {report.categories_added} categories added, "
        f"{report.categories_changed} changed; {report.products_published} products "
        f"published, {report.products_unchanged} unchanged"
    )
    for error in report.errors:
        print(f"seed: skipped {error}", file=sys.stderr)
    return 1 if report.errors else 0


async def rebuild_projections(settings: CatalogSettings | None = None) -> dict[str, int]:
    """Rebuild every read model from scratch; returns the documents per read model."""
    service = build_service(settings)
    try:
        await service.read_models.ensure_indexes()
        await service.projector.rebuild()
        return {name: await service.runtime.db[name].count_documents({}) for name in READ_MODELS}
    finally:
        await service.runtime.mongo.close()


async def _rebuild() -> int:
    counts = await rebuild_projections()
    print("rebuild-projections: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kami_catalog", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP API and the event processing")
    seed = commands.add_parser("seed", help="load a starter catalogue")
    seed.add_argument("file", type=Path, nargs="?")
    commands.add_parser("rebuild-projections", help="rebuild the read models from events")
    args = parser.parse_args(argv)

    if args.command == "seed":
        path = args.file or CatalogSettings().seed_path
        if path is None:
            parser.error("seed needs a FILE (or KAMI_SEED_PATH)")
        return asyncio.run(_seed(path))
    if args.command == "rebuild-projections":
        return asyncio.run(_rebuild())

    from kami_web.serve import run_service

    run_service(CatalogSettings(), create_app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
