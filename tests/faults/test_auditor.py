"""The auditor on forged records (no servers): a healthy purchase passes, and
each breach of DESIGN §9 it exists to catch is named."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from tests.faults.auditor import (
    CHECKPOINT_ID,
    VOID_STREAM,
    AuditReport,
    KafkaRecord,
    Snapshot,
    StoreDump,
    audit,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PREFIX = "kami-test"
ORDER, OFFER, PAYMENT, DELIVERY = "order-1", "offer-1", "payment-1", "delivery-1"
BUYER, SELLER = "buyer-1", "seller-1"


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


class World:
    """Event stores, Kafka and ledger of a small platform, written by hand."""

    def __init__(self) -> None:
        self.stores = {s: StoreDump(s) for s in ("ordering", "inventory", "payment", "delivery")}
        self.versions: Counter[str] = Counter()
        self.kafka: list[KafkaRecord] = []
        self.lines: list[dict[str, Any]] = []
        self.movements: list[dict[str, Any]] = []
        self.key_states: dict[str, Counter[str]] = {}

    def emit(
        self,
        service: str,
        aggregate_type: str,
        aggregate_id: str,
        *events: tuple[str, dict[str, Any]],
    ) -> None:
        stream = f"{aggregate_type}/{aggregate_id}"
        store = self.stores[service]
        first = self.versions[stream] + 1
        envelopes = []
        for offset, (event_type, payload) in enumerate(events):
            envelope = {
                "event_id": str(uuid4()),
                "event_type": event_type,
                "schema_version": 1,
                "occurred_at": NOW.isoformat(),
                "producer": service,
                "aggregate_type": aggregate_type,
                "aggregate_id": aggregate_id,
                "aggregate_version": first + offset,
                "correlation_id": payload.get("order_id", aggregate_id),
                "payload": payload,
            }
            envelopes.append(envelope)
            self.kafka.append(
                KafkaRecord(
                    f"{PREFIX}.{aggregate_type}.v1", 0, len(self.kafka), aggregate_id, envelope
                )
            )
        self.versions[stream] += len(events)
        store.commits.append(
            {
                "_id": f"{stream}@{first:010d}",
                "stream_id": stream,
                "version": first,
                "last_version": first + len(events) - 1,
                "position": len(store.commits) + 1,
                "events": envelopes,
            }
        )
        store.outbox = [{"_id": CHECKPOINT_ID, "position": len(store.commits)}]

    def move(
        self, movement_id: str, *postings: tuple[str, int], order_id: str | None = None
    ) -> None:
        self.movements.append(
            {
                "_id": movement_id,
                "state": "applied",
                "postings": [{"account": a, "amount": n} for a, n in postings],
            }
        )
        for account, amount in postings:
            mine = [line for line in self.lines if line["account"] == account]
            balance = (mine[-1]["balance_after"] if mine else 0) + amount
            self.lines.append(
                {
                    "_id": f"{movement_id}|{account}",
                    "kind": "posting",
                    "movement_id": movement_id,
                    "account": account,
                    "seq": len(mine) + 1,
                    "amount": amount,
                    "balance_after": balance,
                    "order_id": order_id,
                }
            )

    def snapshot(self) -> Snapshot:
        totals: Counter[str] = Counter()
        for line in self.lines:
            totals[line["account"].partition(":")[0]] += line["amount"]
        return Snapshot(
            topic_prefix=PREFIX,
            stores=copy.deepcopy(self.stores),
            kafka=list(self.kafka),
            ledger_lines=copy.deepcopy(self.lines),
            ledger_movements=copy.deepcopy(self.movements),
            trial_balance={"totals": dict(totals), "total": sum(totals.values())},
            key_states=copy.deepcopy(self.key_states),
            taken_at=NOW + timedelta(minutes=1),
        )


def ids(**extra: Any) -> dict[str, Any]:
    return {"order_id": ORDER, "buyer_id": BUYER, "seller_id": SELLER, "offer_id": OFFER} | extra


def purchased(*, complete: bool = True) -> World:
    """One key of three bought from the wallet, delivered, settled (and completed)."""
    world = World()
    world.emit(
        "inventory", "inventory.pool", OFFER, ("KeysImported", {"offer_id": OFFER, "imported": 3})
    )
    world.emit("ordering", "ordering.order", ORDER, ("OrderPlaced", ids(payment_deadline=at(15))))
    world.emit(
        "inventory",
        "inventory.pool",
        OFFER,
        ("KeyReserved", {"offer_id": OFFER, "order_id": ORDER, "key_ids": ["k1"]}),
        ("StockChanged", {"offer_id": OFFER, "available": 2, "reserved": 1}),
    )
    world.emit("ordering", "ordering.order", ORDER, ("OrderReserved", ids(payment_deadline=at(15))))
    world.move("top-up:1", ("channel_clearing:alipay", 1000), (f"buyer_wallet:{BUYER}", -1000))
    world.move("pay:1", (f"buyer_wallet:{BUYER}", 300), (f"escrow:{PAYMENT}", -300), order_id=ORDER)
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        ("PaymentConfirmed", {"payment_id": PAYMENT, "order_id": ORDER, "amount": 300}),
    )
    world.emit("ordering", "ordering.order", ORDER, ("OrderPaid", ids(delivery_deadline=at(30))))
    world.emit(
        "inventory",
        "inventory.pool",
        OFFER,
        ("KeysSold", {"offer_id": OFFER, "order_id": ORDER, "key_ids": ["k1"]}),
        ("StockChanged", {"offer_id": OFFER, "available": 2, "reserved": 0}),
    )
    world.emit(
        "delivery",
        "delivery.delivery",
        DELIVERY,
        ("KeyDelivered", {"order_id": ORDER, "key_ids": ["k1"], "mode": "auto"}),
    )
    world.emit(
        "ordering", "ordering.order", ORDER, ("OrderDelivered", ids(guarantee_ends_at=at(15)))
    )
    world.move(
        "settle:1",
        (f"escrow:{PAYMENT}", 300),
        (f"seller_balance:{SELLER}", -285),
        ("platform_fees:platform", -15),
        order_id=ORDER,
    )
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        ("FundsSettled", {"payment_id": PAYMENT, "order_id": ORDER, "gross": 300}),
    )
    if complete:
        world.emit("ordering", "ordering.order", ORDER, ("OrderCompleted", ids()))
    world.key_states[OFFER] = Counter({"available": 2, "sold": 1})
    return world


def problems(world: World | Snapshot, **options: Any) -> list[str]:
    snapshot = world.snapshot() if isinstance(world, World) else world
    return audit(snapshot, **options).problems


def one_problem_about(world: World | Snapshot, *words: str) -> None:
    found = problems(world)
    assert len(found) >= 1, "the auditor saw nothing wrong"
    assert any(all(w in p for w in words) for p in found), found


def test_a_healthy_purchase_passes_and_is_counted() -> None:
    report: AuditReport = audit(purchased().snapshot())
    assert report.problems == []
    assert report.counts["orders COMPLETED"] == 1
    assert report.counts["payments delivered"] == 1
    assert report.counts["keys delivered"] == 1
    assert report.counts["events stored"] == report.counts["kafka records"]


def test_a_key_delivered_to_two_orders() -> None:
    world = purchased()
    world.emit(
        "delivery",
        "delivery.delivery",
        "delivery-2",
        ("KeyDelivered", {"order_id": "order-2", "key_ids": ["k1"], "mode": "auto"}),
    )
    one_problem_about(world, "k1", "delivered to", ORDER, "order-2")


def test_a_key_reserved_for_two_orders_at_once() -> None:
    world = purchased()
    world.emit(
        "inventory",
        "inventory.pool",
        OFFER,
        ("KeyReserved", {"offer_id": OFFER, "order_id": "order-2", "key_ids": ["k1"]}),
    )
    one_problem_about(world, "k1", "reserved for order-2 while sold")


def test_a_sold_key_blocked() -> None:
    world = purchased()
    world.emit(
        "inventory",
        "inventory.pool",
        OFFER,
        ("KeysBlocked", {"offer_id": OFFER, "key_ids": ["k1"], "reason": "near_expiry"}),
    )
    one_problem_about(world, "k1 blocked while sold")


def test_keys_that_do_not_add_up_to_what_was_imported() -> None:
    world = purchased()
    world.key_states[OFFER] = Counter({"available": 3, "sold": 1})
    one_problem_about(world, OFFER, "inventory holds 4 keys", "imported 3")


def test_a_last_stock_figure_that_disagrees_with_the_events() -> None:
    world = purchased()
    world.emit(
        "inventory",
        "inventory.pool",
        OFFER,
        ("StockChanged", {"offer_id": OFFER, "available": 3, "reserved": 0}),
    )
    one_problem_about(world, "last StockChanged says 3 available")


def test_an_event_lost_on_its_way_to_kafka_but_not_a_duplicate() -> None:
    world = purchased()
    snapshot = world.snapshot()
    snapshot.kafka.append(snapshot.kafka[3])  # re-published: fine
    assert problems(snapshot) == []
    assert audit(snapshot).counts["kafka duplicates"] == 1
    lost = snapshot.kafka.pop(5)
    one_problem_about(snapshot, str(lost.event_id), "never reached")


def test_events_on_kafka_out_of_their_stream_order() -> None:
    snapshot = purchased().snapshot()
    orders = [n for n, r in enumerate(snapshot.kafka) if r.key == ORDER]
    a, b = orders[0], orders[1]
    first, second = snapshot.kafka[a], snapshot.kafka[b]
    snapshot.kafka[a] = KafkaRecord(first.topic, 0, second.offset, first.key, first.envelope)
    snapshot.kafka[b] = KafkaRecord(second.topic, 0, first.offset, second.key, second.envelope)
    one_problem_about(snapshot, f"ordering.order/{ORDER}", "out of version order")


def test_an_event_on_kafka_that_no_store_holds() -> None:
    snapshot = purchased().snapshot()
    ghost = copy.deepcopy(snapshot.kafka[0].envelope)
    assert ghost is not None
    ghost["event_id"] = "ghost"
    snapshot.kafka.append(KafkaRecord(snapshot.kafka[0].topic, 0, 999, OFFER, ghost))
    one_problem_about(snapshot, "ghost", "in no event store")
    assert problems(snapshot, ignore_event_ids={"ghost"}) == []


def test_a_real_event_a_consumer_gave_up_on() -> None:
    snapshot = purchased().snapshot()
    real = snapshot.kafka[2]
    headers = {"dlq_consumer": "ordering", "dlq_error_type": "AutoReconnect", "dlq_attempts": "5"}
    snapshot.dead_letters = [
        KafkaRecord("kami-test.ordering.dead-letter.v1", 0, 0, real.key, real.envelope, headers),
        KafkaRecord("kami-test.ordering.dead-letter.v1", 0, 1, "x", None, headers),  # poison bytes
    ]
    found = problems(snapshot)
    assert len(found) == 1 and "ordering dead-lettered" in found[0] and "AutoReconnect" in found[0]
    assert problems(snapshot, ignore_event_ids={str(real.event_id)}) == []


def test_a_gap_in_a_stream() -> None:
    snapshot = purchased().snapshot()
    commits = snapshot.stores["ordering"].commits
    commits.remove(next(c for c in commits if c["version"] == 2))
    one_problem_about(snapshot, f"ordering.order/{ORDER}", "version 3 follows 1")


def test_commits_the_outbox_never_published() -> None:
    snapshot = purchased().snapshot()
    store = snapshot.stores["payment"]
    store.outbox = [
        {"_id": CHECKPOINT_ID, "position": 1},
        {"_id": "000000000000003", "position": 3},
    ]
    found = problems(snapshot)
    assert any("checkpoint 1 is behind position 2" in p for p in found), found
    assert any("claims pending past the checkpoint: [3]" in p for p in found), found


def test_a_tombstone_that_carries_events() -> None:
    snapshot = purchased().snapshot()
    snapshot.stores["payment"].commits.append(
        {
            "_id": "~void@9",
            "stream_id": VOID_STREAM,
            "version": 0,
            "last_version": 0,
            "position": 9,
            "events": [{}],
        }
    )
    snapshot.stores["payment"].outbox = [{"_id": CHECKPOINT_ID, "position": 9}]
    one_problem_about(snapshot, "tombstone", "carries events")


def test_a_journal_that_does_not_sum_to_zero() -> None:
    world = purchased()
    world.lines[-1]["amount"] -= 1
    world.lines[-1]["balance_after"] -= 1
    one_problem_about(world, "the journal sums to -1")


def test_an_account_whose_lines_do_not_chain() -> None:
    world = purchased()
    wallet = [line for line in world.lines if line["account"] == f"buyer_wallet:{BUYER}"]
    wallet[-1]["balance_after"] += 50
    one_problem_about(world, f"buyer_wallet:{BUYER}", "line 2 says balance")


def test_a_deposit_below_zero() -> None:
    world = purchased()
    world.move("draw:1", (f"seller_deposit:{SELLER}", 100), ("channel_clearing:alipay", -100))
    one_problem_about(world, f"seller_deposit:{SELLER} went to -100")


def test_a_deposit_announced_below_zero() -> None:
    world = purchased()
    world.emit(
        "payment",
        "payment.deposit",
        SELLER,
        ("DepositChanged", {"seller_id": SELLER, "balance": -5, "minimum": 100}),
    )
    one_problem_about(world, f"deposit of {SELLER} announced at -5")


def test_money_that_went_both_to_the_seller_and_back_to_the_buyer() -> None:
    world = purchased()  # settled in full: escrow has nothing left to give back
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        (
            "PaymentRefunded",
            {"order_id": ORDER, "amount": 100, "destination": "wallet", "source": "escrow"},
        ),
    )
    one_problem_about(world, ORDER, "(COMPLETED): its money must end with the seller")


def test_a_partial_claim_on_a_completed_order_is_delivery_with_part_back() -> None:
    world = purchased()
    world.emit("ordering", "ordering.order", ORDER, ("OrderRefundRequested", ids(refund_id="r1")))
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        (
            "PaymentRefunded",
            {"order_id": ORDER, "amount": 100, "destination": "wallet", "source": "seller_deposit"},
        ),
    )
    # A partial compensation: the order stays COMPLETED.
    world.emit(
        "ordering",
        "ordering.order",
        ORDER,
        ("OrderRefunded", ids(refund_id="r1", ends_order=False)),
    )
    report = audit(world.snapshot())
    assert report.problems == []
    assert report.counts["payments delivered, partly refunded"] == 1
    assert report.counts["orders COMPLETED"] == 1


def test_a_refund_larger_than_the_capture() -> None:
    world = purchased()
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        (
            "PaymentRefunded",
            {"order_id": ORDER, "amount": 400, "destination": "wallet", "source": "seller_deposit"},
        ),
    )
    one_problem_about(world, ORDER, "returned more than captured", "returned 400")


def test_a_refunded_order_that_keeps_its_keys() -> None:
    world = purchased(complete=False)
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        (
            "PaymentRefunded",
            {"order_id": ORDER, "amount": 300, "destination": "wallet", "source": "seller_deposit"},
        ),
    )
    world.emit("ordering", "ordering.order", ORDER, ("OrderRefunded", ids(refund_id="r1")))
    assert problems(world) == [f"order {ORDER} refunded in full but keeps keys ['k1']"]


def replaced(world: World, *, new: str = "k2", void: bool = True) -> World:
    """The buyer's faulty k1 replaced by `new` from the pool (after-sales)."""
    replacement = {"offer_id": OFFER, "order_id": ORDER, "ticket_id": "t1"}
    voided = {"offer_id": OFFER, "key_ids": ["k1"], "reason": "claim_upheld", "order_id": ORDER}
    world.emit(
        "inventory",
        "inventory.pool",
        OFFER,
        ("ReplacementKeysAllocated", replacement | {"key_ids": [new], "replaced_key_ids": ["k1"]}),
        *([("KeysVoided", voided)] if void else []),
        ("StockChanged", {"offer_id": OFFER, "available": 1, "reserved": 0}),
    )
    world.emit(
        "delivery",
        "delivery.delivery",
        DELIVERY,
        ("KeyReplaced", {"order_id": ORDER, "key_ids": [new], "replaced_key_ids": ["k1"]}),
    )
    world.key_states[OFFER] = Counter({"available": 1, "sold": 2 - void, "voided": int(void)})
    return world


def test_a_replacement_from_the_pool_passes() -> None:
    report = audit(replaced(purchased()).snapshot())
    assert report.problems == []
    assert report.counts["keys delivered"] == 2


def test_a_replaced_key_left_working() -> None:
    one_problem_about(replaced(purchased(), void=False), "k1", ORDER, "replaced, never voided")


def test_a_replacement_with_a_key_already_sold() -> None:
    world = replaced(purchased(), new="k1")
    found = problems(world)
    assert any(f"key k1 allocated to {ORDER} as a replacement while sold" in p for p in found)
    assert any(f"order {ORDER} got a key twice" in p for p in found), found


def test_a_refund_in_full_keeps_no_replacement_key() -> None:
    world = replaced(purchased(complete=False))
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        (
            "PaymentRefunded",
            {"order_id": ORDER, "amount": 300, "destination": "wallet", "source": "seller_deposit"},
        ),
    )
    world.emit("ordering", "ordering.order", ORDER, ("OrderRefunded", ids(refund_id="r1")))
    assert problems(world) == [f"order {ORDER} refunded in full but keeps keys ['k2']"]


def test_an_order_refunded_in_full_that_never_ended() -> None:
    world = purchased(complete=False)
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        (
            "PaymentRefunded",
            {"order_id": ORDER, "amount": 300, "destination": "wallet", "source": "seller_deposit"},
        ),
    )
    assert problems(world) == [f"order {ORDER} refunded in full but in flight (OrderDelivered)"]


def test_a_payment_confirmed_twice() -> None:
    world = purchased()
    world.emit(
        "payment",
        "payment.payment",
        PAYMENT,
        ("PaymentConfirmed", {"payment_id": PAYMENT, "order_id": ORDER, "amount": 300}),
    )
    one_problem_about(world, PAYMENT, "confirmed 2 times")


@pytest.mark.parametrize(("deadline_in", "stuck"), [(15, False), (-1, True)])
def test_a_saga_is_terminal_or_within_its_deadline(deadline_in: float, stuck: bool) -> None:
    world = World()
    world.emit(
        "inventory", "inventory.pool", OFFER, ("KeysImported", {"offer_id": OFFER, "imported": 1})
    )
    world.emit(
        "ordering",
        "ordering.order",
        ORDER,
        ("OrderPlaced", ids(payment_deadline=at(deadline_in))),
        ("OrderReserved", ids(payment_deadline=at(deadline_in))),
    )
    world.emit(
        "inventory",
        "inventory.pool",
        OFFER,
        ("KeyReserved", {"offer_id": OFFER, "order_id": ORDER, "key_ids": ["k1"]}),
    )
    world.key_states[OFFER] = Counter({"reserved": 1})
    world_snapshot = world.snapshot()
    world_snapshot.taken_at = NOW
    found = problems(world_snapshot)
    assert (found != []) == stuck, found
    if stuck:
        assert any("still RESERVED past its deadline" in p for p in found), found


def test_a_saga_left_placed_and_a_refund_never_carried_out() -> None:
    world = purchased()
    world.emit(
        "ordering",
        "ordering.order",
        "order-2",
        ("OrderPlaced", ids(order_id="order-2", payment_deadline=at(15))),
    )
    world.emit("ordering", "ordering.order", ORDER, ("OrderRefundRequested", ids(refund_id="r-9")))
    found = problems(world)
    assert any("order-2 still PLACED" in p for p in found), found
    assert any("refunds ['r-9'] never done" in p for p in found), found


def with_coupon(
    world: World, code: str = "SAVE1", *, max_uses: int = 1, per_buyer: int = 1
) -> None:
    world.emit(
        "ordering",
        "ordering.coupon",
        code,
        ("CouponIssued", {"coupon_id": code, "max_uses": max_uses, "uses_per_buyer": per_buyer}),
    )


def coupon_order(
    world: World, order_id: str, buyer: str, *events: str, code: str = "SAVE1"
) -> None:
    world.emit(
        "ordering",
        "ordering.order",
        order_id,
        ("OrderPlaced", ids(order_id=order_id, buyer_id=buyer, payment_deadline=at(15))),
        *((event, ids(order_id=order_id, buyer_id=buyer, coupon_id=code)) for event in events),
    )


def test_coupon_uses_within_their_limits_pass_and_are_counted() -> None:
    world = purchased()
    with_coupon(world, max_uses=2)
    coupon_order(world, "order-c1", "buyer-a", "CouponHeld", "CouponReleased")
    coupon_order(world, "order-c2", "buyer-a", "CouponHeld", "CouponRedeemed")
    coupon_order(world, "order-c3", "buyer-b", "CouponHeld")
    report = audit(world.snapshot())
    assert not [p for p in report.problems if "coupon" in p], report.problems
    assert report.counts["coupons"] == 1
    assert report.counts["coupon uses"] == 3
    assert audit(purchased().snapshot()).counts["coupons"] == 0


def test_a_coupon_used_beyond_its_total_limit() -> None:
    world = purchased()
    with_coupon(world, max_uses=1, per_buyer=1)
    coupon_order(world, "order-c1", "buyer-a", "CouponHeld", "CouponRedeemed")
    coupon_order(world, "order-c2", "buyer-b", "CouponHeld")
    one_problem_about(world, "coupon SAVE1", "2 uses stand", "total limit is 1")


def test_a_coupon_used_beyond_a_buyers_limit() -> None:
    world = purchased()
    with_coupon(world, max_uses=5, per_buyer=1)
    coupon_order(world, "order-c1", "buyer-a", "CouponHeld")
    coupon_order(world, "order-c2", "buyer-a", "CouponHeld", "CouponRedeemed")
    one_problem_about(world, "coupon SAVE1", "buyer buyer-a", "its limit is 1")


def test_a_coupon_use_released_after_its_redemption() -> None:
    world = purchased()
    with_coupon(world)
    coupon_order(world, "order-c1", "buyer-a", "CouponHeld", "CouponRedeemed", "CouponReleased")
    one_problem_about(world, "order-c1", "coupon use went")


def approved_reseller(world: World, reseller: str = "reseller-1", user: str = "user-r") -> None:
    world.emit(
        "payment",
        "payment.payment",
        f"approve-{reseller}",
        ("ResellerApproved", {"reseller_id": reseller, "user_id": user}),
    )


def test_a_reseller_prepaid_balance_and_margin_that_add_up_pass() -> None:
    world = purchased()
    approved_reseller(world)
    world.move("top-up:r", ("channel_clearing:alipay", 500), ("buyer_wallet:user-r", -500))
    world.move("pay:r", ("buyer_wallet:user-r", 300), ("reseller_margin:reseller-1", -300))
    report = audit(world.snapshot())
    assert not [p for p in report.problems if "reseller" in p], report.problems
    assert report.counts["resellers"] == 1
    assert audit(purchased().snapshot()).counts["resellers"] == 0


def test_a_reseller_margin_debited_and_a_prepaid_balance_below_zero() -> None:
    world = purchased()
    approved_reseller(world)
    world.move("pay:r", ("buyer_wallet:user-r", 300), ("reseller_margin:reseller-1", -300))
    world.move("back:r", ("reseller_margin:reseller-1", 100), ("platform_fees:platform", -100))
    one_problem_about(world, "reseller reseller-1", "prepaid balance is -300")
    one_problem_about(world, "reseller_margin:reseller-1 debited 100")


def flash_order(world: World, order_id: str, buyer: str, *ended: str, quantity: int = 1) -> None:
    world.emit(
        "ordering",
        "ordering.order",
        order_id,
        (
            "OrderPlaced",
            ids(
                order_id=order_id,
                buyer_id=buyer,
                flash_sale_id="sale-1",
                quantity=quantity,
                payment_deadline=at(15),
            ),
        ),
        *(
            (event, ids(order_id=order_id, buyer_id=buyer, guarantee_ends_at=at(15)))
            for event in ended
        ),
    )


def with_flash_sale(world: World, cap: int, per_buyer: int) -> None:
    world.emit(
        "ordering",
        "ordering.offer_pricing",
        OFFER,
        (
            "FlashSaleScheduled",
            {
                "offer_id": OFFER,
                "flash_sale_id": "sale-1",
                "stock_cap": cap,
                "max_per_buyer": per_buyer,
            },
        ),
    )


def test_a_flash_sale_within_its_cap_passes_and_is_counted() -> None:
    world = purchased()
    with_flash_sale(world, cap=1, per_buyer=1)
    flash_order(world, "order-f1", "buyer-a", "OrderCancelled")
    flash_order(world, "order-f2", "buyer-a")
    report = audit(world.snapshot())
    assert not [p for p in report.problems if "flash sale" in p], report.problems
    assert report.counts["flash sales"] == 1
    assert audit(purchased().snapshot()).counts["flash sales"] == 0


def test_a_flash_sale_sold_beyond_its_cap_and_a_buyers_limit() -> None:
    world = purchased()
    with_flash_sale(world, cap=2, per_buyer=1)
    flash_order(world, "order-f1", "buyer-a", "OrderDelivered")
    flash_order(world, "order-f2", "buyer-a")
    flash_order(world, "order-f3", "buyer-b")
    one_problem_about(world, "flash sale sale-1", "3 keys held or sold", "cap is 2")
    one_problem_about(world, "flash sale sale-1", "buyer buyer-a", "limit is 1")
