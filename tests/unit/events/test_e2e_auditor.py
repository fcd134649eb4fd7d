"""The DESIGN §9 (1) auditor of the e2e suite (`tests/e2e/invariants.py`) on
made-up event streams: a replacement allocation counts as the new key's
reservation, and what it must still catch."""

from __future__ import annotations

from typing import Any

from tests.e2e.invariants import Audit, check_keys_sold_once


def event(event_type: str, **payload: Any) -> tuple[str, dict[str, Any]]:
    return event_type, {"event_type": event_type, "payload": payload}


def audit_of(*events: tuple[str, dict[str, Any]]) -> Audit:
    audit = Audit()
    for event_type, envelope in events:
        audit.events.setdefault(event_type, []).append(envelope)
    return audit


PURCHASE = (
    event("KeyReserved", order_id="o-1", key_ids=["k-1"]),
    event("KeysSold", order_id="o-1", key_ids=["k-1"]),
    event("KeyDelivered", order_id="o-1", key_ids=["k-1"], mode="auto"),
)


def replacement(new: str = "k-9", order_id: str = "o-1", allocated_to: str = "o-1") -> Any:
    return (
        event("ReplacementKeysAllocated", order_id=allocated_to, key_ids=[new]),
        event("KeysVoided", order_id=allocated_to, key_ids=["k-1"]),
        event("KeyReplaced", order_id=order_id, key_ids=[new], replaced_key_ids=["k-1"]),
    )


def test_a_replacement_allocated_to_the_order_passes() -> None:
    audit = audit_of(*PURCHASE, *replacement())
    check_keys_sold_once(audit)
    assert audit.problems == []


def test_a_replacement_key_not_allocated_to_that_order_is_caught() -> None:
    audit = audit_of(*PURCHASE, *replacement(allocated_to="o-2"))
    check_keys_sold_once(audit)
    assert "key k-9 delivered to o-1, not reserved for it" in audit.problems


def test_a_replacement_key_another_order_holds_is_caught() -> None:
    other = (
        event("KeyReserved", order_id="o-2", key_ids=["k-2"]),
        event("KeysSold", order_id="o-2", key_ids=["k-2"]),
        event("KeyDelivered", order_id="o-2", key_ids=["k-2"], mode="auto"),
    )
    audit = audit_of(*PURCHASE, *other, *replacement(new="k-2"))
    check_keys_sold_once(audit)
    assert "key k-2 delivered to o-2 and o-1" in audit.problems
    assert "key k-2 sold to o-2 and o-1" in audit.problems


def test_an_order_given_back_a_key_it_had_or_a_faulty_key_left_working_is_caught() -> None:
    again = event("KeyReplaced", order_id="o-1", key_ids=["k-1"], replaced_key_ids=["k-7"])
    audit = audit_of(*PURCHASE, again)
    check_keys_sold_once(audit)
    assert any("got a key twice" in p for p in audit.problems)
    assert "key k-7 of o-1 was replaced, not voided" in audit.problems
