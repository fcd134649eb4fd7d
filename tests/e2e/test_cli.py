"""The `kami` CLI against every service running as its own process (the
platform fixture, whose processes `kami serve` started), as a seller, an
operator and support would use it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from kami_actors import PASSWORD, Person
from kami_events.catalogue.ordering import CompletedBy, OrderCompleted
from kami_events.catalogue.payment import PaymentChannel, PaymentConfirmed
from kami_events.mongo import connect
from kami_events.store import CommitContext, MongoEventStore
from kami_local import Platform
from kami_market import (
    funded_buyer,
    list_offer_with_keys,
    order_state,
    pay_by_wallet,
    place_order,
)
from tests.kami_command import kami


def env_of(platform: Platform, **more: str) -> dict[str, str]:
    env = {
        "KAMI_KAFKA_BOOTSTRAP": platform.kafka_bootstrap,
        "KAMI_MONGODB_URI": platform.mongodb_uri,
        "KAMI_DATABASE_PREFIX": platform.database_prefix,
        "KAMI_TOPIC_PREFIX": platform.topic_prefix or "kami",
    }
    for service in platform.ports:
        env[f"KAMI_{service.upper()}_URL"] = platform.url(service)
    return env | more


async def test_a_seller_logs_in_and_imports_a_key_file_in_chunks(
    platform: Platform, operator: Person, tmp_path: Path
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=1)
    seller = offer.seller
    env = env_of(platform, KAMI_CONFIG_DIR=str(tmp_path / "config"))

    logged_in = await kami("login", "--phone", seller.phone, "--password", PASSWORD, env=env)
    assert logged_in.code == 0, logged_in
    saved = tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["user_id"] == seller.user_id

    existing = offer.keys[0]
    lines = [
        "key,expires_at",  # 1: the header
        "CLI-KEY-0001,2099-12-31",  # 2
        "CLI-KEY-0002,",  # 3: the product's validity
        "CLI-KEY-0003,2000-01-01",  # 4: expired
        "CLI-KEY-0004,not-a-date",  # 5: bad expiry
        "",  # 6: empty
        "CLI-KEY-0005,2099-12-31",  # 7
        f"{existing},2099-12-31",  # 8: already in the pool
        "CLI-KEY-0006,2099-12-31",  # 9
    ]
    key_file = tmp_path / "keys.csv"
    key_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = ["keys", "import", str(key_file), "--offer", offer.offer_id, "--chunk-lines", "3"]

    first = await kami(*command, env=env)
    assert first.code == 0, first
    assert "4 imported, 1 duplicates, 3 rejected, in 3 chunks" in first.stdout
    rejected = {
        int(row.split()[1]): row
        for row in first.stdout.splitlines()
        if row.startswith("│") and row.split()[1].isdigit()
    }
    assert set(rejected) == {4, 5, 6, 8}
    assert "expired" in rejected[4] and "bad_expiry" in rejected[5]
    assert "empty" in rejected[6] and "duplicate_in_pool" in rejected[8]
    assert "importing keys.csv" in first.stderr  # the progress bar

    stock = await seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock")
    assert stock.json()["available"] == 1 + 4

    # The same command again (say, after a dropped connection) imports nothing twice.
    again = await kami(*command, env=env)
    assert again.code == 0, again
    assert "4 imported, 1 duplicates, 3 rejected, in 3 chunks (3 already imported" in again.stdout
    stock = await seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock")
    assert stock.json()["available"] == 1 + 4

    elsewhere = await kami("keys", "import", str(key_file), "--offer", "no-such-offer", env=env)
    assert elsewhere.code == 1
    assert "lines 1-9 refused: 404 offer_not_found" in elsewhere.stderr


async def test_an_operator_follows_a_purchase_and_audits_the_money(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=2, unit_price=950)
    buyer = await funded_buyer(platform, 5000)
    order_id = await place_order(buyer, offer)
    await order_state(buyer, order_id, "RESERVED")
    paid = await pay_by_wallet(buyer, order_id)
    assert paid.status_code in (200, 201), paid.text
    await order_state(buyer, order_id, "DELIVERED")
    arrival = await buyer.call("delivery", "POST", f"/orders/{order_id}/arrival")
    assert arrival.status_code in (200, 201, 202), arrival.text
    await order_state(buyer, order_id, "COMPLETED")
    env = env_of(platform, KAMI_TOKEN=operator.access_token)

    shown = await kami("orders", "show", order_id, env=env)
    assert shown.code == 0, shown
    assert f"order {order_id}: COMPLETED, 1 x 950 = 950 fen" in shown.stdout
    for event in ("OrderPlaced", "KeyReserved", "PaymentConfirmed", "KeyDelivered"):
        assert event in shown.stdout
    as_json = json.loads((await kami("orders", "show", order_id, "--json", env=env)).stdout)
    producers = {event["producer"] for event in as_json["timeline"]}
    assert {"ordering", "inventory", "payment", "delivery"} <= producers

    missing = await kami("orders", "show", "no-such-order", env=env)
    assert missing.code == 1 and "404 order_not_found" in missing.stderr

    stuck = await kami("sagas", "stuck", "--json", env=env)
    assert stuck.code == 0, stuck
    assert order_id not in {saga["order_id"] for saga in json.loads(stuck.stdout)["sagas"]}

    checked = await kami("ledger", "check", env=env)
    assert checked.code == 0, checked
    assert "trial balance: total 0" in checked.stdout
    assert "ledger ok" in checked.stdout

    dead = await kami("dlq", "list", "--json", env=env)
    assert dead.code == 0, dead
    assert isinstance(json.loads(dead.stdout), list)

    running = await kami("projections", "rebuild", "catalog", env=env)
    assert running.code == 1
    assert f"catalog is running at {platform.url('catalog')}: stop it first" in running.stderr


async def test_ledger_check_fails_on_money_that_reached_nobody(
    platform: Platform, operator: Person
) -> None:
    """Event stores where a completed order's captured money was never settled."""
    prefix = f"{platform.database_prefix}_forged"
    client = connect(platform.mongodb_uri, app_name="kami-e2e-forger")
    try:
        context = CommitContext(correlation_id="o-forged")
        await MongoEventStore(client[f"{prefix}_payment"], producer="payment").append(
            "payment.payment",
            "p-forged",
            0,
            [
                PaymentConfirmed(
                    payment_id="p-forged",
                    order_id="o-forged",
                    buyer_id="b-1",
                    amount=950,
                    channel=PaymentChannel.WALLET,
                    channel_reference="wallet-p-forged",
                )
            ],
            context,
        )
        await MongoEventStore(client[f"{prefix}_ordering"], producer="ordering").append(
            "ordering.order",
            "o-forged",
            0,
            [
                OrderCompleted(
                    order_id="o-forged",
                    buyer_id="b-1",
                    seller_id="s-1",
                    offer_id="f-1",
                    completed_by=CompletedBy.BUYER_CONFIRMED,
                    total=950,
                )
            ],
            context,
        )
    finally:
        await client.close()
    env = env_of(platform, KAMI_TOKEN=operator.access_token, KAMI_DATABASE_PREFIX=prefix)

    checked = await kami("ledger", "check", env=env)
    assert checked.code == 1, checked
    assert (
        "discrepancy: order o-forged (COMPLETED): its money must end with the seller: "
        "captured 950, settled 0, returned 0" in checked.stderr
    )
    assert "1 discrepancies" in checked.stderr
