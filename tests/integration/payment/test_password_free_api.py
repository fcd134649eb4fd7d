"""Password-free small payments and the bounded password checks, on the real
servers over payment's HTTP API."""

from __future__ import annotations

import asyncio

from kami_events.catalogue.identity import Role
from kami_web.passwords import Argon2Parameters, CheckPoolLimits, PasswordHasher
from tests.integration.payment.conftest import PIN, PaymentHarness
from tests.integration.payment.test_payment_api import purchase, reserved


async def test_a_small_payment_without_the_password_end_to_end(payment: PaymentHarness) -> None:
    buyer = "buyer-pf-1"
    headers = payment.auth(buyer, Role.BUYER)
    await payment.funded_wallet(buyer, 10_000)
    off = await payment.client.get("/wallet/password-free", headers=headers)
    assert off.status_code == 200 and off.json()["enabled"] is False
    too_high = await payment.client.put(
        "/wallet/password-free",
        json={
            "enabled": True,
            "per_payment_limit": 20_001,
            "daily_cap": 30_000,
            "payment_password": PIN,
        },
        headers=headers,
    )
    assert (too_high.status_code, too_high.json()["error"]["code"]) == (
        422,
        "password_free_limit_too_high",
    )
    no_password = await payment.client.put(
        "/wallet/password-free",
        json={"enabled": True, "per_payment_limit": 2_000, "daily_cap": 3_000},
        headers=headers,
    )
    assert (no_password.status_code, no_password.json()["error"]["code"]) == (
        422,
        "payment_password_required",
    )
    on = await payment.client.put(
        "/wallet/password-free",
        json={
            "enabled": True,
            "per_payment_limit": 2_000,
            "daily_cap": 3_000,
            "payment_password": PIN,
        },
        headers=headers,
    )
    assert on.status_code == 200, on.text
    assert (on.json()["enabled"], on.json()["per_payment_limit"]) == (True, 2_000)

    small = await reserved(payment, purchase(1_500, buyer=buyer))
    paid = await payment.pay(buyer, small.order_id, "wallet")
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["second_factor_waived"]) == ("confirmed", True)
    envelopes = await payment.app.state.runtime.store.load("payment.payment", small.payment_id)
    assert envelopes[-1].payload.second_factor_waived is True
    journal = payment.app.state.runtime.db["ledger_movements"]
    movement = await journal.find_one({"meta.payment_id": small.payment_id})
    assert movement is not None and movement["meta"]["second_factor_waived"] == 1

    over_cap = await reserved(payment, purchase(1_600, buyer=buyer))
    refused = await payment.pay(buyer, over_cap.order_id, "wallet")
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        422,
        "payment_password_required",
    )
    assert "daily cap of 3000 fen" in refused.json()["error"]["message"]
    with_pin = await payment.pay(buyer, over_cap.order_id, "wallet", payment_password=PIN)
    assert with_pin.status_code == 200 and with_pin.json()["second_factor_waived"] is False
    setting = (await payment.client.get("/wallet/password-free", headers=headers)).json()
    assert setting["spent_today"] == 1_500

    turned_off = await payment.client.put(
        "/wallet/password-free", json={"enabled": False}, headers=headers
    )
    assert turned_off.status_code == 200 and turned_off.json()["enabled"] is False


async def test_racing_small_payments_stay_within_the_cap(payment: PaymentHarness) -> None:
    buyer = "buyer-pf-2"
    await payment.funded_wallet(buyer, 20_000)
    on = await payment.client.put(
        "/wallet/password-free",
        json={
            "enabled": True,
            "per_payment_limit": 2_000,
            "daily_cap": 5_000,
            "payment_password": PIN,
        },
        headers=payment.auth(buyer, Role.BUYER),
    )
    assert on.status_code == 200, on.text
    orders = [await reserved(payment, purchase(2_000, buyer=buyer)) for _ in range(4)]

    responses = await asyncio.gather(*(payment.pay(buyer, o.order_id, "wallet") for o in orders))

    assert sorted(r.status_code for r in responses) == [200, 200, 422, 422]
    wallet = await payment.client.get("/wallet", headers=payment.auth(buyer, Role.BUYER))
    assert wallet.json()["balance"] == 16_000


async def test_a_burst_past_the_pool_gets_429_with_retry_after(payment: PaymentHarness) -> None:
    buyer = "buyer-pf-3"
    await payment.funded_wallet(buyer, 5_000)
    order = await reserved(payment, purchase(1_000, buyer=buyer))
    # A pool of one thread and no queue, whose one place another check holds.
    payment.service.hasher = PasswordHasher(
        Argon2Parameters(time_cost=1, memory_cost_kib=8, parallelism=1),
        CheckPoolLimits(concurrency=1, max_queued=0),
    )

    async with payment.service.hasher.admitted():
        busy = await payment.pay(buyer, order.order_id, "wallet", payment_password=PIN)

    assert busy.status_code == 429, busy.text
    assert busy.json()["error"]["code"] == "payment_password_checks_busy"
    assert int(busy.headers["retry-after"]) >= 1
    assert await payment.payment_events(order.payment_id) == ["PaymentInitiated"]
    again = await payment.pay(buyer, order.order_id, "wallet", payment_password=PIN)
    assert again.status_code == 200 and again.json()["status"] == "confirmed"
