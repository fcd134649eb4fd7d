"""What operators see of a purchase: every service's `/metrics` counts it
with the right values, and its JSON logs carry its ids but none of its secrets."""

from __future__ import annotations

import json
import re
from typing import Any

from kami_actors import PASSWORD, Person, resident_id, sign_up
from kami_events.mongo import connect
from kami_local import Platform
from kami_market import (
    PAYMENT_PASSWORD,
    Offer,
    funded_buyer,
    list_offer_with_keys,
    order_state,
    pay_by_wallet,
    place_order,
    until,
)
from tests.e2e.invariants import read_events
from tests.e2e.metrics import Scrape, scrape_all, until_metrics

PURCHASE_SERVICES = ("inventory", "ordering", "payment", "delivery")
PUBLISHED = {
    "ordering": ("OrderPlaced", "OrderReserved", "OrderPaid", "OrderDelivered", "OrderCompleted"),
    "inventory": ("KeyReserved", "KeysSold"),
    "payment": ("PaymentConfirmed", "FundsSettled"),
    "delivery": ("KeyDelivered", "ArrivalConfirmed"),
}
HANDLED = {
    "ordering": ("KeyReserved", "PaymentConfirmed", "KeyDelivered", "ArrivalConfirmed"),
    "inventory": ("OrderPlaced", "OrderPaid"),
    "payment": ("OrderReserved", "OrderDelivered"),
    "delivery": ("OrderPaid",),
}
ACCOUNT_TYPES = (
    "buyer_wallet",
    "channel_clearing",
    "escrow",
    "seller_balance",
    "seller_deposit",
    "seller_receivable",
    "platform_fees",
    "platform_promotions",
)


async def buy_and_confirm(buyer: Person, offer: Offer) -> str:
    order_id = await place_order(buyer, offer)
    await order_state(buyer, order_id, "RESERVED")
    paid = await pay_by_wallet(buyer, order_id)
    assert paid.status_code in (200, 201), paid.text
    await order_state(buyer, order_id, "DELIVERED")
    arrival = await buyer.call("delivery", "POST", f"/orders/{order_id}/arrival")
    assert arrival.status_code in (200, 201, 202), arrival.text
    await order_state(buyer, order_id, "COMPLETED")
    return order_id


async def settlement_of(platform: Platform, order_id: str) -> dict[str, Any]:
    audit = await read_events(platform)
    [settled] = [e for e in audit.of("FundsSettled") if e["payload"]["order_id"] == order_id]
    return dict(settled["payload"])


async def test_every_service_reports_a_purchase_in_its_metrics(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=2, unit_price=950)
    buyer = await funded_buyer(platform, 5000)
    # Payment's ledger gauges as of now (the trial balance sets them too).
    trial = await operator.call("payment", "GET", "/ledger/trial-balance")
    assert trial.status_code == 200, trial.text
    before = await scrape_all(platform, PURCHASE_SERVICES)

    order_id = await buy_and_confirm(buyer, offer)
    settled = await settlement_of(platform, order_id)
    assert settled["gross"] == 950

    def delta(scrapes: dict[str, Scrape], service: str, name: str, **labels: str) -> float:
        return scrapes[service].value(name, **labels) - before[service].value(name, **labels)

    def mismatches(after: dict[str, Scrape]) -> list[str]:
        found: list[str] = []

        def expect(what: str, value: float, wanted: float) -> None:
            if value != wanted:
                found.append(f"{what}: {value} (expected {wanted})")

        # The saga: the order counted once, in COMPLETED, with its duration.
        expect(
            "orders COMPLETED",
            delta(after, "ordering", "kami_saga_orders", state="COMPLETED"),
            1,
        )
        expect("orders in all states", delta(after, "ordering", "kami_saga_orders"), 1)
        expect(
            "saga durations (completed)",
            delta(after, "ordering", "kami_saga_duration_seconds_count", outcome="completed"),
            1,
        )
        expect(
            "orders placed (auto)",
            delta(after, "ordering", "kami_orders_placed_total", delivery_mode="auto"),
            1,
        )
        # Events of the purchase: published by their producer, handled by their consumers.
        for service, event_types in PUBLISHED.items():
            for event_type in event_types:
                expect(
                    f"{service} published {event_type}",
                    delta(after, service, "kami_events_published_total", event_type=event_type),
                    1,
                )
        for service, event_types in HANDLED.items():
            for event_type in event_types:
                expect(
                    f"{service} handled {event_type}",
                    delta(
                        after,
                        service,
                        "kami_events_consumed_total",
                        event_type=event_type,
                        outcome="handled",
                    ),
                    1,
                )
        # The keys of the offer by state.
        for state, count in {"available": 1, "reserved": 0, "sold": 1}.items():
            expect(
                f"offer keys {state}",
                after["inventory"].value(
                    "kami_inventory_keys", offer_id=offer.offer_id, state=state
                ),
                count,
            )
        # The money: the buyer's wallet paid 950 (debit), the seller got the net
        # and the platform the fee (credits); escrow is back to where it was.
        ledger = "kami_ledger_balance_fen"
        expect("wallet", delta(after, "payment", ledger, account_type="buyer_wallet"), 950)
        expect("escrow", delta(after, "payment", ledger, account_type="escrow"), 0)
        expect(
            "seller balance",
            delta(after, "payment", ledger, account_type="seller_balance"),
            -settled["net"],
        )
        expect(
            "platform fees",
            delta(after, "payment", ledger, account_type="platform_fees"),
            -settled["platform_fee"],
        )
        expect("ledger total", after["payment"].value(ledger), 0)
        # HTTP latency by route template.
        expect(
            "POST /orders 201",
            delta(
                after,
                "ordering",
                "kami_http_request_duration_seconds_count",
                method="POST",
                route="/orders",
                status="201",
            ),
            1,
        )
        # Everything consumed and published by now.
        for service in PURCHASE_SERVICES:
            lags = after[service].series("kami_consumer_lag_messages", service=service)
            if not lags:
                found.append(f"{service}: no consumer lag series")
            for labels, lag in lags.items():
                expect(f"{service} lag {dict(labels)}", lag, 0)
            expect(
                f"{service} outbox",
                after[service].value("kami_outbox_unpublished_commits", service=service),
                0,
            )
        return found

    after = await until_metrics(platform, PURCHASE_SERVICES, mismatches)

    # The ledger gauges are the trial balance, and it sums to zero.
    trial = await operator.call("payment", "GET", "/ledger/trial-balance")
    totals = trial.json()["totals"]
    assert trial.json()["total"] == 0
    for account_type in ACCOUNT_TYPES:
        gauge = after["payment"].value("kami_ledger_balance_fen", account_type=account_type)
        assert gauge == totals.get(account_type, 0), account_type
    # The latency of the order's own route, never one series per order.
    routes = {
        dict(labels)["route"]
        for labels in after["ordering"].series(
            "kami_http_request_duration_seconds_count", service="ordering"
        )
    }
    assert "/orders/{order_id}" in routes
    assert not any(order_id in route for route in routes)
    # FastStream's own Kafka metrics sit beside ours.
    received = after["inventory"].value(
        "kami_kafka_received_messages_total", app_name="kami-inventory"
    )
    assert received > before["inventory"].value(
        "kami_kafka_received_messages_total", app_name="kami-inventory"
    )
    assert after["payment"].series("kami_payment_deposits_below_minimum")


async def seller_with_id_number(platform: Platform, operator: Person, id_number: str) -> Person:
    seller = await sign_up(platform)
    verified = await seller.call(
        "identity", "POST", "/me/real-name", json={"legal_name": "李四", "id_number": id_number}
    )
    assert verified.status_code == 200, verified.text
    await seller.refresh()
    approved = await operator.call(
        "identity", "POST", f"/users/{seller.user_id}/seller-approval", json={"shop_name": "密铺"}
    )
    assert approved.status_code == 200, approved.text
    await seller.refresh()
    return seller


async def sms_codes(platform: Platform) -> set[str]:
    """Every one-time code sent so far (the simulated carrier's inbox)."""
    client = connect(platform.mongodb_uri, app_name="kami-e2e-sms")
    try:
        sink = client[f"{platform.database_prefix}_identity_sms_sink"]["messages"]
        texts = [doc["text"] async for doc in sink.find({}, {"text": 1})]
    finally:
        await client.close()
    return {code for text in texts for code in re.findall(r"(?<!\d)\d{6}(?!\d)", text)}


async def test_a_purchase_leaves_json_logs_with_its_ids_and_no_secret(
    platform: Platform, operator: Person
) -> None:
    id_number = resident_id()
    seller = await seller_with_id_number(platform, operator, id_number)
    offer = await list_offer_with_keys(platform, operator, keys=2, seller=seller)
    buyer = await funded_buyer(platform, 5000)
    order_id = await buy_and_confirm(buyer, offer)
    vault = await buyer.call("delivery", "GET", "/vault", params={"order_id": order_id})
    [key] = vault.json()["keys"]
    revealed = await buyer.call("delivery", "POST", f"/vault/{key['key_id']}/reveal")
    assert revealed.status_code == 200, revealed.text
    await buyer.call("ordering", "GET", f"/orders/{order_id}")

    secrets = {
        "password": [PASSWORD],
        "payment password": [PAYMENT_PASSWORD],
        "card keys": [*offer.keys, revealed.json()["secret"]],
        "ID number": [id_number],
        "tokens": [
            token
            for person in (buyer, seller, operator)
            for token in (person.access_token, person.refresh_token)
        ],
        # The platform's own keys (signing key, master keys, gateway secrets...).
        "configured secrets": [
            line
            for name, value in platform.secrets().items()
            if "PUBLIC" not in name
            for line in value.splitlines()
            if len(line) >= 16 and "PRIVATE KEY" not in line
        ],
    }
    codes = await sms_codes(platform)
    assert codes, "no one-time code was sent"

    lines_about_the_order: dict[str, int] = {}
    for service in platform.ports:
        path = platform.log_file(service)
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        for what, values in secrets.items():
            for value in values:
                assert value not in text, f"{service}'s log holds a {what}"
        for code in codes:
            assert not re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", text), (
                f"{service}'s log holds a one-time code"
            )
        for number, line in enumerate(text.splitlines(), start=1):
            record = json.loads(line)  # every line is one JSON object
            assert record["service"] == service, f"{path}:{number}"
            assert {"timestamp", "level", "logger", "message"} <= record.keys(), f"{path}:{number}"
            if record.get("order_id") == order_id or record.get("correlation_id") == order_id:
                lines_about_the_order[service] = lines_about_the_order.get(service, 0) + 1

    # The consumers bound the order's ids around its messages; the HTTP access
    # line of GET /orders/{order_id} carries it too.
    for service in ("ordering", "delivery"):
        assert lines_about_the_order.get(service), (service, lines_about_the_order)
    ordering_log = platform.log_file("ordering").read_text()
    assert any(
        json.loads(line).get("order_id") == order_id and json.loads(line).get("method") == "GET"
        for line in ordering_log.splitlines()
    )

    # The buyer's answer to a request says which request it was.
    answer = await until(
        lambda: buyer.call("ordering", "GET", f"/orders/{order_id}"),
        lambda r: r.status_code == 200,
        what="the order",
    )
    assert len(answer.headers["x-request-id"]) == 32
