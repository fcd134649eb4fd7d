"""A first look at Kami's event backbone on the real local servers.

Publishes the starter catalogue's products as `ProductPublished` events:
each is committed to an event store on FerretDB, the outbox relay publishes
it to Kafka, and a consumer in its own group receives it. Prints each step.

    uv run python deploy/local/demo.py [--products N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from kami_events.catalogue import ProductPublished
from kami_events.catalogue.catalog import ProductKind
from kami_events.consumer import Received
from kami_events.runtime import ServiceRuntime
from kami_events.settings import ServiceSettings
from kami_events.store import CommitContext
from kami_events.topics import topic_for

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "catalog-sample.json"


KIND_BY_CATEGORY = {
    "mobile-topup": ProductKind.PHONE_TOPUP,
    "video-vip": ProductKind.MEMBERSHIP,
    "music-vip": ProductKind.MEMBERSHIP,
    "food-coupons": ProductKind.GIFT_CARD,
    "language": ProductKind.COURSE,
    "exam": ProductKind.COURSE,
}


def load_products(limit: int) -> list[dict[str, Any]]:
    if not SAMPLE.exists():
        sys.exit(f"demo: starter catalogue not found at {SAMPLE}")
    products: list[dict[str, Any]] = json.loads(SAMPLE.read_text())["products"]
    return products[:limit]


def product_id_of(product: dict[str, Any]) -> str:
    # Stable ids, so running the demo twice shows the store refusing duplicates.
    return str(uuid5(NAMESPACE_URL, f"kami-demo/{product['name']}"))


async def main(limit: int) -> None:
    settings = ServiceSettings(service_name="demo", outbox_poll_interval_seconds=0.05)
    runtime = ServiceRuntime(settings)
    arrived: asyncio.Queue[Received[ProductPublished]] = asyncio.Queue()
    products = load_products(limit)
    wanted = {product_id_of(p) for p in products}

    @runtime.consumer.handles(ProductPublished)
    async def show(message: Received[Any]) -> None:
        if message.envelope.aggregate_id in wanted:
            await arrived.put(message)

    print(f"Kafka {settings.kafka_bootstrap}, MongoDB {settings.mongodb_uri}")
    await runtime.start()
    try:
        expected = 0
        for product in products:
            product_id = product_id_of(product)
            event = ProductPublished(
                product_id=product_id,
                category_id=product["category"],
                name=product["name"],
                kind=KIND_BY_CATEGORY.get(product["category"], ProductKind.GAME_POINTS),
                face_value=product.get("face_value_fen"),
            )
            existing = await runtime.store.load(event.aggregate_type, product_id)
            if existing:
                print(f"  already published: {product['name']} (stream version {len(existing)})")
                continue
            await runtime.store.append(
                event.aggregate_type, product_id, 0, [event], CommitContext(product_id)
            )
            expected += 1
            print(f"  committed to FerretDB: ProductPublished {product['name']}")
        print(f"relay -> Kafka topic {topic_for('catalog.product')} -> consumer group kami-demo")
        for _ in range(expected):
            message = await asyncio.wait_for(arrived.get(), timeout=30)
            envelope = message.envelope
            print(
                f"  arrived: {envelope.event_type} v{envelope.schema_version} "
                f"key={envelope.aggregate_id} event_id={envelope.event_id} "
                f"name={message.event.name}"
            )
        lag = await runtime.relay.lag()
        print(f"outbox: {lag.unpublished_commits} unpublished commits")
    finally:
        await runtime.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=5)
    asyncio.run(main(parser.parse_args().products))
