"""An auditor of DESIGN §9 (1) and (2), independent of the services' code:
it reads their event stores and asks payment for its trial balance."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kami_actors import Person
from kami_events.mongo import connect
from kami_local import Platform
from kami_market import until


@dataclass
class Audit:
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return self.events.get(event_type, [])


async def read_events(platform: Platform) -> Audit:
    audit = Audit()
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    client = connect(platform.mongodb_uri, app_name="kami-e2e-auditor")
    try:
        for service in platform.ports:
            commits = client[f"{platform.database_prefix}_{service}"]["events"]
            async for commit in commits.find({}, {"events": 1}).sort("position", 1):
                for envelope in commit["events"]:
                    by_type[envelope["event_type"]].append(envelope)
    finally:
        await client.close()
    audit.events = dict(by_type)
    return audit


def check_keys_sold_once(audit: Audit) -> None:
    """§9.1: no key is delivered to two orders, and no order gets a key twice.
    An order's keys are those of its `KeyDelivered` and of its `KeyReplaced`
    (after-sales replacements)."""
    owner: dict[str, str] = {}
    of_order: dict[str, list[str]] = defaultdict(list)
    deliveries = [*audit.of("KeyDelivered"), *audit.of("KeyReplaced")]
    for envelope in deliveries:
        order_id = envelope["payload"]["order_id"]
        key_ids = envelope["payload"]["key_ids"]
        of_order[order_id].extend(key_ids)
        for key_id in key_ids:
            if owner.setdefault(key_id, order_id) != order_id:
                audit.problems.append(f"key {key_id} delivered to {owner[key_id]} and {order_id}")
    for order_id, key_ids in of_order.items():
        if len(set(key_ids)) != len(key_ids):
            audit.problems.append(f"order {order_id} got a key twice: {key_ids}")
    delivered_orders = [e["payload"]["order_id"] for e in audit.of("KeyDelivered")]
    if len(delivered_orders) != len(set(delivered_orders)):
        audit.problems.append("an order was delivered twice")
    # Whatever was delivered was reserved for that very order by inventory
    # (it is marked sold on OrderPaid, which may still be on its way), or
    # allocated to it by inventory as a replacement.
    reserved_for: dict[str, set[str]] = defaultdict(set)
    for envelope in [*audit.of("KeyReserved"), *audit.of("ReplacementKeysAllocated")]:
        for key_id in envelope["payload"]["key_ids"]:
            reserved_for[key_id].add(envelope["payload"]["order_id"])
    from_pools = {
        key_id
        for envelope in deliveries
        if envelope["payload"].get("mode", "auto") == "auto"
        for key_id in envelope["payload"]["key_ids"]
    }
    for key_id, order_id in owner.items():
        # Keys a seller delivered by hand never were in a pool.
        if key_id in from_pools and order_id not in reserved_for[key_id]:
            audit.problems.append(f"key {key_id} delivered to {order_id}, not reserved for it")
    # A key is sold to one order at most (a replacement allocation sells it).
    sold: dict[str, str] = {}
    for envelope in [*audit.of("KeysSold"), *audit.of("ReplacementKeysAllocated")]:
        order_id = envelope["payload"]["order_id"]
        for key_id in envelope["payload"]["key_ids"]:
            if sold.setdefault(key_id, order_id) != order_id:
                audit.problems.append(f"key {key_id} sold to {sold[key_id]} and {order_id}")
    # A key that was replaced was voided for its order: it never works twice.
    voided: dict[str, set[str]] = defaultdict(set)
    for envelope in audit.of("KeysVoided"):
        for key_id in envelope["payload"]["key_ids"]:
            voided[key_id].add(envelope["payload"].get("order_id") or "")
    for envelope in audit.of("KeyReplaced"):
        order_id = envelope["payload"]["order_id"]
        for key_id in envelope["payload"]["replaced_key_ids"]:
            if order_id not in voided[key_id]:
                audit.problems.append(f"key {key_id} of {order_id} was replaced, not voided")


def check_money(audit: Audit, trial_balance: dict[str, Any]) -> None:
    """§9.2: the ledger sums to zero; each order's money ends with the seller
    or back with the buyer, never both, never neither — except that an upheld
    after-sales claim may give part of a completed order back (the seller
    keeps the rest): then escrow's refunds and the settlement add up to it."""
    total = trial_balance.get("total")
    if total != 0:
        audit.problems.append(f"ledger does not sum to zero: {trial_balance}")
    captured: dict[str, int] = defaultdict(int)
    for envelope in audit.of("PaymentConfirmed"):
        captured[envelope["payload"]["order_id"]] += envelope["payload"]["amount"]
    refunded: dict[str, int] = defaultdict(int)
    # Refunds out of escrow: money that never reached the seller.
    from_escrow: dict[str, int] = defaultdict(int)
    for envelope in audit.of("PaymentRefunded"):
        payload = envelope["payload"]
        refunded[payload["order_id"]] += payload["amount"]
        if payload["source"] == "escrow":
            from_escrow[payload["order_id"]] += payload["amount"]
    settled: dict[str, int] = defaultdict(int)
    for envelope in audit.of("FundsSettled"):
        settled[envelope["payload"]["order_id"]] += envelope["payload"]["gross"]
    final_state = final_order_states(audit)
    for order_id, amount in captured.items():
        state = final_state.get(order_id)
        back_to_buyer = refunded[order_id]
        if back_to_buyer > amount:
            audit.problems.append(f"order {order_id}: refunded {back_to_buyer} > captured {amount}")
        if state == "completed":
            # All of it went to the seller, less what escrow gave back (a
            # partial claim before settlement); a refund after settlement was
            # drawn back from the seller.
            if settled[order_id] + from_escrow[order_id] != amount:
                audit.problems.append(
                    f"completed order {order_id}: captured {amount}, settled "
                    f"{settled[order_id]}, refunded {back_to_buyer} "
                    f"({from_escrow[order_id]} from escrow)"
                )
        elif state in ("refunded", "cancelled") and back_to_buyer != amount:
            audit.problems.append(
                f"{state} order {order_id}: captured {amount} but refunded {back_to_buyer}"
            )


def final_order_states(audit: Audit) -> dict[str, str]:
    ends = {
        "OrderCompleted": "completed",
        "OrderRefunded": "refunded",
        "OrderCancelled": "cancelled",
        "OrderDelivered": "delivered",
        "OrderPaid": "paid",
    }
    state: dict[str, str] = {}
    latest: dict[str, int] = {}
    for event_type, name in ends.items():
        for envelope in audit.of(event_type):
            if envelope["payload"].get("ends_order") is False:
                continue  # a partial compensation: the order went on
            order_id = envelope["aggregate_id"]
            version = envelope["aggregate_version"]
            if version > latest.get(order_id, 0):
                latest[order_id] = version
                state[order_id] = name
    return state


async def assert_invariants(platform: Platform, operator: Person) -> Audit:
    audit = await read_events(platform)
    check_keys_sold_once(audit)
    # The books are read while payment may still be applying a movement's
    # lines: a real imbalance persists, a passing one balances within seconds.
    response = await until(
        lambda: operator.call("payment", "GET", "/ledger/trial-balance"),
        lambda r: r.status_code == 200 and r.json()["total"] == 0,
        timeout=30,
        what="the ledger to balance",
    )
    check_money(audit, response.json())
    assert audit.problems == [], "\n".join(audit.problems)
    return audit
