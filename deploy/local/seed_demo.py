"""Demo data for the local platform, through the same APIs people use.

    python deploy/local/seed_demo.py catalogue   # before the services start
    python deploy/local/seed_demo.py market      # once they run

`catalogue` publishes the starter catalogue (`data/catalog-sample.json`)
with catalog's own seed command; it runs before catalog serves, because
catalog loads its search index at start. `market` then creates, over HTTP:
an operator, an approved seller with a deposit, an offer with 20
keys for each automatically delivered product, and the demo buyer (phone
13900000009, `kami_cli.demo`) with 1000 yuan in its wallet and a payment
password: `kami demo buy` buys as it without being told who it is. Prints who
is who and what to try. Running it again adds another seller and offers and
another 1000 yuan to the demo buyer's wallet; the catalogue stays as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import subprocess
import sys
from typing import Any

import httpx

from kami_actors import PASSWORD, Person, approved_seller
from kami_cli.demo import DEMO_BUYER_PHONE
from kami_local import DEMO_OPERATOR_PHONE, REPO, Platform
from kami_market import PAYMENT_PASSWORD, funded_buyer, funded_deposit, operator_of, until

SAMPLE = REPO / "data" / "catalog-sample.json"
KEYS_PER_OFFER = 20
OFFERS = 5


def seed_catalogue(platform: Platform) -> None:
    if not SAMPLE.exists():
        sys.exit(f"seed: starter catalogue not found at {SAMPLE}")
    subprocess.run(
        [sys.executable, "-m", "kami_catalog", "seed", str(SAMPLE)],
        env=platform.env_for("catalog"),
        check=True,
    )


async def list_offers(platform: Platform, operator: Person) -> tuple[Person, list[dict[str, Any]]]:
    seller = await approved_seller(platform, operator, "演示卡铺")
    await funded_deposit(seller, 500_000)
    found = await until(
        lambda: operator.call("catalog", "GET", "/search", params={"limit": 50}),
        lambda r: r.status_code == 200 and bool(_items(r.json())),
        what="the seeded products in search",
    )
    offers = []
    for product in _items(found.json())[:OFFERS]:
        face_value = product.get("face_value") or 1000
        listed = await seller.call(
            "catalog",
            "POST",
            "/offers",
            json={
                "product_id": product["product_id"],
                "unit_price": max(1, face_value * 95 // 100),  # 5% under face value
                "delivery_mode": "auto",
                "max_quantity_per_order": 5,
            },
        )
        listed.raise_for_status()
        offer_id = listed.json()["offer_id"]
        content = "\n".join(f"DEMO-{offer_id[:8]}-{n:04d}" for n in range(KEYS_PER_OFFER))
        await until(
            functools.partial(import_keys, seller, offer_id, content),
            lambda r: r.status_code in (200, 201),
            what="inventory to learn the offer",
        )
        price = max(1, face_value * 95 // 100)
        offers.append({"offer_id": offer_id, "name": product["name"], "unit_price_fen": price})
    return seller, offers


async def import_keys(seller: Person, offer_id: str, content: str) -> httpx.Response:
    return await seller.call(
        "inventory",
        "POST",
        f"/offers/{offer_id}/imports",
        json={"import_id": f"demo-{offer_id}", "format": "txt", "content": content},
    )


def _items(page: dict[str, Any]) -> list[dict[str, Any]]:
    """Products delivered automatically (the search's delivery filter is by offers)."""
    return [item for item in page["items"] if item["delivery_mode"] == "auto"]


async def seed_market(platform: Platform) -> None:
    operator = await operator_of(platform, DEMO_OPERATOR_PHONE)
    seller, offers = await list_offers(platform, operator)
    buyer = await funded_buyer(platform, 100_000, phone=DEMO_BUYER_PHONE)
    wallet = (await buyer.call("payment", "GET", "/wallet")).json()
    print(
        json.dumps(
            {
                "password (every demo account)": PASSWORD,
                "payment password (buyer)": PAYMENT_PASSWORD,
                "operator": {"phone": operator.phone},
                "seller": {"phone": seller.phone, "user_id": seller.user_id},
                "buyer": {
                    "phone": buyer.phone,
                    "user_id": buyer.user_id,
                    "wallet_fen": wallet["balance"],
                },
                "offers": offers,
            },
            ensure_ascii=False,
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed the local platform with demo data.")
    parser.add_argument("step", choices=["catalogue", "market"])
    step = parser.parse_args().step
    platform = Platform(os.environ["KAMI_KAFKA_BOOTSTRAP"], os.environ["KAMI_MONGODB_URI"])
    if step == "catalogue":
        seed_catalogue(platform)
    else:
        asyncio.run(seed_market(platform))


if __name__ == "__main__":
    main()
