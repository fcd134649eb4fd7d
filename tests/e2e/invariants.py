"""An auditor of DESIGN §9 (1) and (2), independent of the services' code:
it reads their event stores and asks payment for its trial balance."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kami_actors import Person
from kami_cli.ledger import audit_orders, check_trial_balance, final_states, money_by_order
from kami_events.mongo import connect
from kami_events.serialization import decode_document
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
    or back with the buyer, never both, never neither — judged by the same
    per-order audit as `kami ledger check` (kami_cli.ledger says how,
    partial after-sales claims included)."""
    audit.problems.extend(check_trial_balance(trial_balance))
    envelopes = [
        decode_document(raw)
        for raw_events in audit.events.values()
        for raw in raw_events
        if raw["aggregate_type"] == "ordering.order" or raw["event_type"] in MONEY_EVENTS
    ]
    ordering = [e for e in envelopes if e.aggregate_type == "ordering.order"]
    payment = [e for e in envelopes if e.event_type in MONEY_EVENTS]
    audit.problems.extend(audit_orders(money_by_order(payment), final_states(ordering)).problems)


MONEY_EVENTS = frozenset(
    {"PaymentConfirmed", "PaymentFailed", "FundsSettled", "PaymentRefunded", "PaymentReversed"}
)


async def assert_invariants(
    platform: Platform, operator: Person, *, settle_seconds: float = 60.0
) -> Audit:
    """The audit, repeated until it passes or `settle_seconds` go by: the
    services may still be acting on the test's last events (payment settling
    an order ordering has already completed). A real breach persists."""
    deadline = asyncio.get_running_loop().time() + settle_seconds
    while True:
        audit = await read_events(platform)
        check_keys_sold_once(audit)
        # A movement's lines are applied one after the other: the books
        # balance again within seconds unless money is really missing.
        response = await until(
            lambda: operator.call("payment", "GET", "/ledger/trial-balance"),
            lambda r: r.status_code == 200 and r.json()["total"] == 0,
            timeout=30,
            what="the ledger to balance",
        )
        check_money(audit, response.json())
        if not audit.problems or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(1.0)
    assert audit.problems == [], "\n".join(audit.problems)
    return audit
