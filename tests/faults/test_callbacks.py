"""A payment channel that misbehaves as real ones do: notifications
duplicated, arriving at once from several deliveries, out of order (a
chargeback before the payment it reverses), or late — after the order was
cancelled. Money is captured once, and what Kami cannot keep goes back.

The test plays the channel: the buyer pays at the simulated Alipay with its
notification held back (`deliver=false`), then the test signs that
notification itself with the channel's secret (Alipay's form-encoded format,
`kami_payment.adapters.gateways.alipay` documents it) and posts it to
`POST /callbacks/alipay` as often and in whatever order it likes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from kami_actors import Person
from kami_market import PAYMENT_PASSWORD, Offer, list_offer_with_keys
from tests.faults.auditor import read_snapshot
from tests.faults.harness import FaultsPlatform, ScenarioLog, answered, audit_platform, persist
from tests.faults.shopping import Market, state_in

CHANNEL = "alipay"


def signed_payment_notice(secret: str, trade: dict[str, Any]) -> bytes:
    """What Alipay-like posts when a trade was paid, signed HMAC-SHA256 over
    the sorted `k=v` pairs (sign and sign_type excluded)."""
    amount = int(trade["amount"])
    paid_at = datetime.fromisoformat(trade["paid_at"]).astimezone(UTC)
    fields = {
        "notify_type": "trade_status_sync",
        "notify_id": f"{trade['gateway_trade_no']}-paid",
        "out_trade_no": trade["out_trade_no"],
        "trade_no": trade["gateway_trade_no"],
        "trade_status": "TRADE_SUCCESS",
        "total_amount": f"{amount // 100}.{amount % 100:02d}",
        "receipt_amount": f"{amount // 100}.{amount % 100:02d}",
        "gmt_payment": paid_at.strftime("%Y-%m-%d %H:%M:%S"),
        "app_id": "kami-local",
        "charset": "utf-8",
        "version": "1.0",
        "notify_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "sign_type": "HMAC-SHA256",
    }
    content = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "sign_type")
    fields["sign"] = hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields).encode()


async def post_notice(platform: FaultsPlatform, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.url("payment"), timeout=30) as channel:
        return await channel.post(
            f"/callbacks/{CHANNEL}",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )


async def reserved(buyer: Person, offer: Offer) -> str:
    placed = await persist(
        buyer,
        "ordering",
        "POST",
        "/orders",
        json={"offer_id": offer.offer_id, "quantity": 1},
        headers={"Idempotency-Key": f"cb-{id(buyer)}-{datetime.now(UTC).timestamp()}"},
        done=answered(201),
        what="an order",
    )
    order_id = str(placed.json()["order_id"])
    await persist(
        buyer, "ordering", "GET", f"/orders/{order_id}", done=state_in("RESERVED"), what="reserved"
    )
    return order_id


async def paid_at_channel(buyer: Person, order_id: str, *, notify: bool = False) -> dict[str, Any]:
    """The buyer starts an Alipay payment and pays it in the channel's app;
    the channel's notification is held back. Returns the channel's trade."""
    intent = await persist(
        buyer,
        "payment",
        "POST",
        "/payments",
        json={"order_id": order_id, "channel": CHANNEL},
        done=answered(200, 201),
        what=f"an Alipay intent for {order_id}",
    )
    trade_no = intent.json()["pay"]["gateway_trade_no"]
    paid = await buyer.call(
        "payment",
        "POST",
        f"/simulator/{CHANNEL}/pay/{trade_no}",
        params={"deliver": str(notify).lower()},
    )
    assert paid.status_code == 200, paid.text
    return dict(paid.json()["trade"])


async def confirmations(platform: FaultsPlatform, order_ids: set[str]) -> dict[str, int]:
    snapshot = await read_snapshot(platform, operator_token=None, kafka=False)
    found = {order_id: 0 for order_id in order_ids}
    for commit in snapshot.stores["payment"].commits:
        for envelope in commit["events"]:
            if (
                envelope["event_type"] == "PaymentConfirmed"
                and envelope["payload"]["order_id"] in found
            ):
                found[envelope["payload"]["order_id"]] += 1
    return found


@pytest.mark.timeout(400)
async def test_duplicated_concurrent_and_reordered_callbacks_capture_once(
    faulty: FaultsPlatform, operator: Person, market: Market, scenario: ScenarioLog
) -> None:
    rng = scenario.rng
    secret = faulty.secrets()["KAMI_PAYMENT_ALIPAY_SECRET"]
    offer = await list_offer_with_keys(faulty, operator, keys=6, unit_price=700, max_quantity=1)
    buyers = rng.sample(market.buyers, 4)
    order_ids = list(await asyncio.gather(*(reserved(b, offer) for b in buyers)))
    owner = dict(zip(order_ids, buyers, strict=True))
    trades = dict(
        zip(
            order_ids,
            await asyncio.gather(*(paid_at_channel(owner[o], o) for o in order_ids)),
            strict=True,
        )
    )
    scenario.note(f"{len(order_ids)} orders paid at the channel, notifications held back")

    # Out of order: one trade is charged back before Kami heard it was paid.
    charged_back = rng.choice(order_ids)
    reversal = await owner[charged_back].call(
        "payment",
        "POST",
        f"/simulator/{CHANNEL}/chargeback/{trades[charged_back]['gateway_trade_no']}",
        json={},
    )
    assert reversal.status_code == 200, reversal.text
    assert reversal.json()["callback"]["status_code"] == 200, reversal.text
    scenario.note(f"chargeback of {charged_back} delivered before its payment notification")

    # Every payment notification three times, shuffled, all at once; then once more, late.
    deliveries = [signed_payment_notice(secret, trades[o]) for o in order_ids for _ in range(3)]
    rng.shuffle(deliveries)
    answers = await asyncio.gather(*(post_notice(faulty, body) for body in deliveries))
    assert [(a.status_code, a.text) for a in answers] == [(200, "success")] * len(deliveries)
    scenario.count("callbacks delivered", len(deliveries))
    scenario.note(f"{len(deliveries)} payment notifications posted concurrently, shuffled")

    ends: dict[str, str] = {}
    for order_id in order_ids:
        want = ("REFUNDED",) if order_id == charged_back else ("DELIVERED",)
        view = await persist(
            owner[order_id],
            "ordering",
            "GET",
            f"/orders/{order_id}",
            done=state_in(*want, "CANCELLED"),
            what=f"{order_id} settled",
        )
        ends[order_id] = view.json()["state"]
    for body in rng.sample(deliveries, 3):
        late = await post_notice(faulty, body)
        assert (late.status_code, late.text) == (200, "success")
    scenario.note(f"3 notifications repeated late; orders: {ends}")
    assert ends == {o: ("REFUNDED" if o == charged_back else "DELIVERED") for o in order_ids}
    refunded = (await owner[charged_back].call("ordering", "GET", f"/orders/{charged_back}")).json()
    assert [r["reason"] for r in refunded["refunds"]] == ["chargeback"]
    assert await confirmations(faulty, set(order_ids)) == {o: 1 for o in order_ids}
    await audit_platform(faulty, operator, scenario)


@pytest.mark.timeout(400)
async def test_payments_arriving_after_cancellation_are_refunded_once(
    faulty: FaultsPlatform, operator: Person, market: Market, scenario: ScenarioLog
) -> None:
    rng = scenario.rng
    secret = faulty.secrets()["KAMI_PAYMENT_ALIPAY_SECRET"]
    offer = await list_offer_with_keys(faulty, operator, keys=6, unit_price=800, max_quantity=1)
    paid_first, cancelled_first, by_wallet = rng.sample(market.buyers, 3)

    # Paid at the channel, notification lost; then the buyer cancels the order.
    order_a = await reserved(paid_first, offer)
    trade_a = await paid_at_channel(paid_first, order_a)
    cancelled = await paid_first.call("ordering", "POST", f"/orders/{order_a}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    scenario.note(f"{order_a}: paid at the channel, notification lost, cancelled by the buyer")

    # Cancelled first; the buyer pays at the channel afterwards (the trade may be closed already).
    order_b = await reserved(cancelled_first, offer)
    intent_b = await persist(
        cancelled_first,
        "payment",
        "POST",
        "/payments",
        json={"order_id": order_b, "channel": CHANNEL},
        done=answered(200, 201),
        what="an intent",
    )
    cancelled = await cancelled_first.call("ordering", "POST", f"/orders/{order_b}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    await asyncio.sleep(rng.uniform(0.0, 1.5))
    trade_no_b = intent_b.json()["pay"]["gateway_trade_no"]
    late_pay = await cancelled_first.call(
        "payment", "POST", f"/simulator/{CHANNEL}/pay/{trade_no_b}"
    )
    assert late_pay.status_code in (200, 409), late_pay.text
    scenario.note(
        f"{order_b}: cancelled, then paid at the channel: "
        + (
            "accepted (trade still open)"
            if late_pay.status_code == 200
            else "refused (trade closed)"
        )
    )

    # Cancelled, then paid from the wallet: refused, nothing moves.
    order_c = await reserved(by_wallet, offer)
    cancelled = await by_wallet.call("ordering", "POST", f"/orders/{order_c}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    await persist(
        by_wallet,
        "ordering",
        "GET",
        f"/orders/{order_c}",
        done=state_in("CANCELLED"),
        what="cancelled",
    )
    wallet_before = (await by_wallet.call("payment", "GET", "/wallet")).json()["balance"]
    refused = await persist(
        by_wallet,
        "payment",
        "POST",
        "/payments",
        json={"order_id": order_c, "channel": "wallet", "payment_password": PAYMENT_PASSWORD},
        done=lambda r: r.status_code != 409 or r.json()["error"]["code"] != "order_not_reserved",
        what="payment's answer",
    )
    assert refused.status_code == 409, refused.text
    scenario.note(
        f"{order_c}: cancelled, then a wallet payment refused ({refused.json()['error']['code']})"
    )

    # A's notification arrives at last, twice, concurrently.
    late = await asyncio.gather(
        *(post_notice(faulty, signed_payment_notice(secret, trade_a)) for _ in range(2))
    )
    assert [(r.status_code, r.text) for r in late] == [(200, "success")] * 2

    view_a = await persist(
        paid_first,
        "ordering",
        "GET",
        f"/orders/{order_a}",
        done=state_in("REFUNDED"),
        what="A refunded",
    )
    assert [(r["reason"], r["amount"]) for r in view_a.json()["refunds"]] == [("late_payment", 800)]
    ends_b = ("REFUNDED",) if late_pay.status_code == 200 else ("CANCELLED",)
    view_b = await persist(
        cancelled_first,
        "ordering",
        "GET",
        f"/orders/{order_b}",
        done=state_in(*ends_b),
        what="B settled",
    )
    assert view_b.json()["refunded_amount"] == view_b.json()["paid_amount"]
    assert (await by_wallet.call("payment", "GET", "/wallet")).json()["balance"] == wallet_before
    scenario.note(f"ends: A {view_a.json()['state']}, B {view_b.json()['state']}, C CANCELLED")
    assert (await confirmations(faulty, {order_a}))[order_a] == 1
    await audit_platform(faulty, operator, scenario)
