"""An auditor of DESIGN §9 that trusts none of the services' code.

After a run it reads what the platform left behind — every service's event
store (`<prefix>_<service>.events` and its `events_outbox`), every Kafka
topic of the run, payment's ledger journal and trial balance, inventory's
key states — and checks the promises from those records alone:

- stores: every stream's versions are contiguous from 1, every commit's `_id`
  and events agree with it, positions are unique, tombstones carry nothing;
- outbox: each store's checkpoint is at or past its highest position and no
  claim is pending, so every commit was published;
- Kafka: every stored event is on its topic at least once, keyed by its
  aggregate, in its stream's order (duplicates are allowed, losses are not),
  and no consumer dead-lettered a real event (its effect was never applied);
- keys (§9.1): no key delivered twice or to an order it was not reserved for
  (or allocated to as a replacement), a replaced key voided, never reserved
  for two orders at once or sold to an order that did not hold it, and for
  every offer available + reserved + sold + blocked + voided = imported,
  agreeing with inventory's own key states and last `StockChanged`;
- money (§9.2): the journal sums to zero, each account's lines chain
  (contiguous `seq`, `balance_after` = running sum), guarded accounts and
  deposits never go negative, the trial balance endpoint agrees (payment's
  events carry no postings, so the journal itself is summed); each order's
  money is judged as `kami ledger check` judges it (`kami_cli.ledger`: no
  refund beyond the capture, delivery settled to the seller — a partial claim
  may give part back — or refund of all of it), and besides: no payment
  confirmed twice, a refunded order keeps no working key, a finished order's
  escrow is empty;
- sagas (§9.3): every order is terminal, or in a state whose deadline has
  not passed yet, and every refund ordering requested was carried out;
- coupons (docs/commerce.md): an order's use of a coupon is held once, then at
  most released or redeemed once; the uses left standing (held minus
  released, so held or redeemed) never exceed the coupon's total limit, nor
  any buyer's its per-buyer limit (as `CouponIssued` set them); a flash
  sale's keys held or sold (orders at its price that did not end cancelled or
  refunded undelivered) within its stock cap and per-buyer limit;
- resellers: each approved reseller's prepaid balance (the wallet of its
  identity user) is not below zero and is what its journal lines sum to, and
  its `reseller_margin` account is only ever credited.

`read_snapshot` does the I/O; `audit` is pure, so its checks are unit tested
on forged records (`tests/faults/test_auditor.py`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kami_cli import ledger
from kami_events.envelope import Envelope
from kami_events.mongo import connect
from kami_local import Platform

VOID_STREAM = "~void"
CHECKPOINT_ID = "checkpoint"
KEY_STATES = ("available", "reserved", "sold", "blocked", "voided")
# Accounts whose natural balance (as their holder reads it) is the negated
# signed balance: what the platform owes (payment's ledger conventions).
DEBIT_NORMAL = frozenset({"channel_clearing", "seller_receivable", "platform_promotions"})
NEVER_NEGATIVE = frozenset({"buyer_wallet", "escrow", "seller_balance", "seller_deposit"})
ORDER_STATE_OF = {
    "OrderPlaced": "PLACED",
    "OrderReserved": "RESERVED",
    "OrderPaid": "PAID",
    "OrderDelivered": "DELIVERED",
    "OrderCompleted": "COMPLETED",
    "OrderCancelled": "CANCELLED",
    "OrderRefunded": "REFUNDED",
}
TERMINAL = frozenset({"COMPLETED", "CANCELLED", "REFUNDED"})
# The payment events `kami_cli.ledger` follows an order's money by.
MONEY_EVENTS = (
    "PaymentConfirmed",
    "PaymentFailed",
    "FundsSettled",
    "PaymentRefunded",
    "PaymentReversed",
)

Doc = dict[str, Any]


# -- what the auditor reads ------------------------------------------------------


@dataclass
class StoreDump:
    """One service's event store: its commit documents and its outbox."""

    service: str
    commits: list[Doc] = field(default_factory=list)
    outbox: list[Doc] = field(default_factory=list)


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    envelope: Doc | None  # None: not a JSON envelope (a poison message)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def event_id(self) -> str | None:
        return str(self.envelope["event_id"]) if self.envelope else None


@dataclass
class Snapshot:
    topic_prefix: str
    stores: dict[str, StoreDump]
    kafka: list[KafkaRecord]
    ledger_lines: list[Doc]
    ledger_movements: list[Doc]
    trial_balance: Doc | None
    # inventory's `keys` collection: offer id -> state -> count
    key_states: dict[str, Counter[str]]
    taken_at: datetime
    # The run's dead-letter topics: what a consumer gave up on.
    dead_letters: list[KafkaRecord] = field(default_factory=list)


@dataclass
class AuditReport:
    problems: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def summary(self) -> str:
        shown = ", ".join(f"{name} {value}" for name, value in sorted(self.counts.items()))
        return f"{len(self.problems)} problems; {shown}"


# -- reading ----------------------------------------------------------------------


async def read_snapshot(
    platform: Platform, *, operator_token: str | None, kafka: bool = True
) -> Snapshot:
    """Everything the audit needs, read from the servers and payment's API."""
    taken_at = datetime.now(UTC)
    client = connect(platform.mongodb_uri, app_name="kami-faults-auditor")
    stores: dict[str, StoreDump] = {}
    try:
        for service in platform.ports:
            database = client[f"{platform.database_prefix}_{service}"]
            dump = StoreDump(service)
            dump.commits = [doc async for doc in database["events"].find({})]
            dump.outbox = [doc async for doc in database["events_outbox"].find({})]
            stores[service] = dump
        payment = client[f"{platform.database_prefix}_payment"]
        lines = [doc async for doc in payment["ledger_lines"].find({})]
        movements = [doc async for doc in payment["ledger_movements"].find({})]
        inventory = client[f"{platform.database_prefix}_inventory"]
        key_states: dict[str, Counter[str]] = defaultdict(Counter)
        async for key in inventory["keys"].find({}, {"offer_id": 1, "status": 1}):
            key_states[key["offer_id"]][key["status"]] += 1
    finally:
        await client.close()
    trial_balance = None
    if operator_token is not None:
        async with httpx.AsyncClient(base_url=platform.url("payment"), timeout=30) as http:
            answer = await http.get(
                "/ledger/trial-balance", headers={"Authorization": f"Bearer {operator_token}"}
            )
        answer.raise_for_status()
        trial_balance = answer.json()
    prefix = platform.topic_prefix or "kami"
    records = await read_topics(platform.kafka_bootstrap, prefix) if kafka else []
    dead = await read_topics(platform.kafka_bootstrap, prefix, dead_letters=True) if kafka else []
    return Snapshot(
        topic_prefix=prefix,
        stores=stores,
        kafka=records,
        ledger_lines=lines,
        ledger_movements=movements,
        trial_balance=trial_balance,
        key_states=dict(key_states),
        taken_at=taken_at,
        dead_letters=dead,
    )


async def read_topics(
    bootstrap: str, prefix: str, *, dead_letters: bool = False
) -> list[KafkaRecord]:
    """Every record of the run's event topics (or of its dead-letter topics),
    from offset 0 to the end offsets read when it starts."""
    partitions = await partitions_of(bootstrap, prefix, dead_letters=dead_letters)
    if not partitions:
        return []
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="kami-faults-auditor"
    )
    await reader.start()
    records: list[KafkaRecord] = []
    try:
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        starts = await reader.beginning_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > starts[tp]}
        for tp in pending:
            reader.seek(tp, starts[tp])
        while pending:
            batch = await reader.getmany(*pending, timeout_ms=5000, max_records=2000)
            if not batch:
                raise TimeoutError(f"Kafka stopped answering while reading {sorted(pending)}")
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        continue
                    records.append(
                        KafkaRecord(
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=message.offset,
                            key=message.key.decode(errors="replace") if message.key else None,
                            envelope=_envelope(message.value),
                            headers={
                                name: value.decode(errors="replace")
                                for name, value in message.headers or ()
                            },
                        )
                    )
                if await reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await reader.stop()
    return records


async def partitions_of(
    bootstrap: str, prefix: str, *, dead_letters: bool = False
) -> list[TopicPartition]:
    """The partitions of the run's event topics (or of its dead-letter topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="kami-faults-auditor")
    await admin.start()
    try:
        topics = sorted(
            topic
            for topic in await admin.list_topics()
            if topic.startswith(f"{prefix}.") and (".dead-letter." in topic) == dead_letters
        )
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in sorted(topic["partitions"], key=lambda p: int(p["partition"]))
    ]


def _envelope(value: bytes | None) -> Doc | None:
    try:
        document = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("event_id"), str):
        return None
    return document


# -- the audit ----------------------------------------------------------------------


@dataclass
class Events:
    """Every stored event (tombstones aside), by type, in store order."""

    by_type: dict[str, list[Doc]] = field(default_factory=dict)
    stored: list[tuple[str, Doc]] = field(default_factory=list)  # (service, envelope)

    def of(self, *event_types: str) -> list[Doc]:
        return [e for t in event_types for e in self.by_type.get(t, [])]

    def of_aggregate(self, aggregate_type: str) -> list[Doc]:
        return [e for _, e in self.stored if e["aggregate_type"] == aggregate_type]


def audit(snapshot: Snapshot, *, ignore_event_ids: Iterable[str] = ()) -> AuditReport:
    """Every check on one snapshot; `ignore_event_ids` are events a test put on
    Kafka itself (they are in no store)."""
    report = AuditReport()
    events = _stored_events(snapshot, report)
    check_stores(snapshot, report)
    check_outbox(snapshot, report)
    check_kafka(snapshot, events, report, set(ignore_event_ids))
    check_dead_letters(snapshot, report, set(ignore_event_ids))
    check_keys_delivered_once(events, report)
    check_key_accounting(snapshot, events, report)
    check_ledger(snapshot, events, report)
    check_order_money(snapshot, events, report)
    check_sagas(snapshot, events, report)
    check_coupons(events, report)
    check_flash_sales(events, report)
    check_resellers(snapshot, events, report)
    return report


def _stored_events(snapshot: Snapshot, report: AuditReport) -> Events:
    events = Events()
    by_type: dict[str, list[Doc]] = defaultdict(list)
    for service, store in snapshot.stores.items():
        for commit in sorted(store.commits, key=lambda c: int(c["position"])):
            if commit["stream_id"] == VOID_STREAM:
                continue
            for envelope in commit["events"]:
                by_type[envelope["event_type"]].append(envelope)
                events.stored.append((service, envelope))
    events.by_type = dict(by_type)
    report.counts["events stored"] = len(events.stored)
    return events


def check_stores(snapshot: Snapshot, report: AuditReport) -> None:
    """Streams contiguous from version 1; commits consistent; positions unique."""
    for service, store in snapshot.stores.items():
        positions = Counter(int(c["position"]) for c in store.commits)
        for position, times in positions.items():
            if times > 1:
                report.problem(f"{service}: position {position} taken by {times} commits")
        streams: dict[str, list[Doc]] = defaultdict(list)
        for commit in store.commits:
            if commit["stream_id"] == VOID_STREAM:
                report.counts["tombstones"] += 1
                if commit["events"]:
                    report.problem(f"{service}: tombstone {commit['_id']} carries events")
                continue
            streams[commit["stream_id"]].append(commit)
        report.counts["streams"] += len(streams)
        report.counts["commits"] += sum(len(c) for c in streams.values())
        for stream_id, commits in streams.items():
            expected = 1
            for commit in sorted(commits, key=lambda c: int(c["version"])):
                version, last = int(commit["version"]), int(commit["last_version"])
                where = f"{service} {stream_id}"
                if version != expected:
                    report.problem(f"{where}: version {version} follows {expected - 1}")
                if commit["_id"] != f"{stream_id}@{version:010d}":
                    report.problem(f"{where}: commit {commit['_id']} holds version {version}")
                versions = [int(e["aggregate_version"]) for e in commit["events"]]
                if versions != list(range(version, last + 1)):
                    report.problem(f"{where}: commit {version}..{last} holds versions {versions}")
                for envelope in commit["events"]:
                    if f"{envelope['aggregate_type']}/{envelope['aggregate_id']}" != stream_id:
                        report.problem(f"{where}: holds an event of another stream")
                    if envelope["producer"] != service:
                        report.problem(
                            f"{where}: holds an event produced by {envelope['producer']}"
                        )
                expected = last + 1


def check_outbox(snapshot: Snapshot, report: AuditReport) -> None:
    """Every commit published: checkpoint ≥ highest position, no claim pending."""
    for service, store in snapshot.stores.items():
        if not store.commits:
            continue
        highest = max(int(c["position"]) for c in store.commits)
        checkpoint = next(
            (int(d["position"]) for d in store.outbox if d["_id"] == CHECKPOINT_ID), 0
        )
        if checkpoint < highest:
            report.problem(
                f"{service}: outbox checkpoint {checkpoint} is behind position {highest}: "
                f"{highest - checkpoint} positions unpublished"
            )
        pending = sorted(
            int(d["position"])
            for d in store.outbox
            if d["_id"] != CHECKPOINT_ID and int(d["position"]) > checkpoint
        )
        if pending:
            report.problem(f"{service}: outbox claims pending past the checkpoint: {pending[:10]}")


def check_kafka(snapshot: Snapshot, events: Events, report: AuditReport, ignore: set[str]) -> None:
    """Every stored event on its topic at least once, keyed by its aggregate,
    its stream's events first seen in version order."""
    seen: dict[str, list[KafkaRecord]] = defaultdict(list)
    for record in snapshot.kafka:
        if record.envelope is None:
            report.counts["kafka records not an envelope"] += 1
            continue
        seen[str(record.event_id)].append(record)
    report.counts["kafka records"] = len(snapshot.kafka)
    stored_ids: set[str] = set()
    first_seen: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for service, envelope in events.stored:
        event_id = str(envelope["event_id"])
        stored_ids.add(event_id)
        topic = _topic(snapshot.topic_prefix, envelope["aggregate_type"])
        copies = [r for r in seen.get(event_id, []) if r.topic == topic]
        if not copies:
            report.problem(
                f"{service}: {envelope['event_type']} {event_id} "
                f"({envelope['aggregate_type']}/{envelope['aggregate_id']} "
                f"v{envelope['aggregate_version']}) never reached {topic}"
            )
            continue
        if len(copies) > 1:
            report.counts["kafka duplicates"] += len(copies) - 1
        for copy in copies:
            if copy.key != envelope["aggregate_id"]:
                report.problem(f"{event_id} on {topic} keyed {copy.key!r}")
        first = min(copies, key=lambda r: r.offset)
        first_seen[f"{envelope['aggregate_type']}/{envelope['aggregate_id']}"].append(
            (int(envelope["aggregate_version"]), first.partition, first.offset)
        )
    for stream_id, sightings in first_seen.items():
        in_version_order = [(p, o) for _, p, o in sorted(sightings)]
        partitions = {p for p, _ in in_version_order}
        if len(partitions) > 1:
            report.problem(f"{stream_id}: its events are spread over partitions {partitions}")
        elif in_version_order != sorted(in_version_order):
            report.problem(f"{stream_id}: its events reached Kafka out of version order")
    foreign = [
        r
        for r in snapshot.kafka
        if r.envelope is not None and r.event_id not in stored_ids and r.event_id not in ignore
    ]
    for record in foreign[:20]:
        report.problem(
            f"{record.topic}[{record.partition}]@{record.offset}: event {record.event_id} "
            "is in no event store"
        )


def check_dead_letters(snapshot: Snapshot, report: AuditReport, ignore: set[str]) -> None:
    """No consumer gave up on a real event: a dead letter is an effect never
    applied. Only what a test put on the topics itself may be there (bytes
    that are no envelope, or the events it names)."""
    report.counts["dead letters"] = len(snapshot.dead_letters)
    for record in snapshot.dead_letters:
        if record.envelope is None or record.event_id in ignore:
            continue
        h = record.headers
        report.problem(
            f"{h.get('dlq_consumer')} dead-lettered {record.envelope.get('event_type')} "
            f"{record.event_id} from {h.get('dlq_source_topic')} after "
            f"{h.get('dlq_attempts')} attempts: {h.get('dlq_error_type')} "
            f"{h.get('dlq_error_message', '')[:200]}"
        )


def _topic(prefix: str, aggregate_type: str) -> str:
    return f"{prefix}.{aggregate_type}.v1"


def check_keys_delivered_once(events: Events, report: AuditReport) -> None:
    """§9.1: no key delivered to two orders, nor twice to one (an order's keys
    are those of its `KeyDelivered` and its after-sales `KeyReplaced`); a key
    from a pool goes only to the order inventory reserved it for, or allocated
    it to as a replacement; a replaced key is voided for its order."""
    owner: dict[str, str] = {}
    delivered_orders: Counter[str] = Counter()
    of_order: dict[str, list[str]] = defaultdict(list)
    reserved_for: dict[str, set[str]] = defaultdict(set)
    for envelope in events.of("KeyReserved", "ReplacementKeysAllocated"):
        for key_id in envelope["payload"]["key_ids"]:
            reserved_for[key_id].add(envelope["payload"]["order_id"])
    for envelope in events.of("KeyDelivered", "KeyReplaced"):
        payload = envelope["payload"]
        order_id, key_ids = payload["order_id"], payload["key_ids"]
        if envelope["event_type"] == "KeyDelivered":
            delivered_orders[order_id] += 1
        of_order[order_id].extend(key_ids)
        for key_id in key_ids:
            if owner.setdefault(key_id, order_id) != order_id:
                report.problem(f"key {key_id} delivered to {owner[key_id]} and {order_id}")
            if payload.get("mode", "auto") == "auto" and order_id not in reserved_for[key_id]:
                report.problem(f"key {key_id} delivered to {order_id}, never reserved for it")
    for order_id, key_ids in of_order.items():
        if len(set(key_ids)) != len(key_ids):
            report.problem(f"order {order_id} got a key twice: {key_ids}")
    for order_id, times in delivered_orders.items():
        if times > 1:
            report.problem(f"order {order_id} was delivered {times} times")
    voided_for: dict[str, set[str | None]] = defaultdict(set)
    for envelope in events.of("KeysVoided"):
        for key_id in envelope["payload"]["key_ids"]:
            voided_for[key_id].add(envelope["payload"].get("order_id"))
    for envelope in events.of("KeyReplaced"):
        order_id = envelope["payload"]["order_id"]
        for key_id in envelope["payload"]["replaced_key_ids"]:
            if order_id not in voided_for[key_id]:
                report.problem(f"key {key_id} of {order_id} was replaced, never voided")
    report.counts["keys delivered"] = len(owner)


def check_key_accounting(snapshot: Snapshot, events: Events, report: AuditReport) -> None:
    """Each pool replayed from inventory's events: legal moves only, and
    available + reserved + sold + blocked + voided = imported, as inventory's
    key states and its last StockChanged say too."""
    pools: dict[str, list[Doc]] = defaultdict(list)
    for envelope in events.of_aggregate("inventory.pool"):
        pools[envelope["aggregate_id"]].append(envelope)
    for offer_id, history in pools.items():
        imported = 0
        state: dict[str, str] = {}  # key id -> state; keys never named are available
        holder: dict[str, str] = {}  # key id -> order holding it
        last_stock: Doc | None = None
        for envelope in sorted(history, key=lambda e: int(e["aggregate_version"])):
            kind, payload = envelope["event_type"], envelope["payload"]
            keys = payload.get("key_ids", [])
            order_id = payload.get("order_id")
            if kind == "KeysImported":
                imported += int(payload["imported"])
            elif kind == "KeyReserved":
                for key_id in keys:
                    if state.get(key_id, "available") != "available":
                        report.problem(
                            f"offer {offer_id}: key {key_id} reserved for {order_id} while "
                            f"{state[key_id]} for {holder.get(key_id)}"
                        )
                    state[key_id], holder[key_id] = "reserved", order_id
            elif kind == "KeysSold":
                for key_id in keys:
                    if state.get(key_id) != "reserved" or holder.get(key_id) != order_id:
                        report.problem(
                            f"offer {offer_id}: key {key_id} sold to {order_id} while "
                            f"{state.get(key_id, 'available')} for {holder.get(key_id)}"
                        )
                    state[key_id] = "sold"
            elif kind == "ReplacementKeysAllocated":
                # Held only while inventory's handler ran: sold straight from the pool.
                for key_id in keys:
                    if state.get(key_id, "available") != "available":
                        report.problem(
                            f"offer {offer_id}: key {key_id} allocated to {order_id} as a "
                            f"replacement while {state[key_id]} for {holder.get(key_id)}"
                        )
                    state[key_id], holder[key_id] = "sold", order_id
            elif kind == "KeysReleased":
                for key_id in keys:
                    if state.get(key_id) not in ("reserved", "sold"):
                        report.problem(
                            f"offer {offer_id}: key {key_id} released while "
                            f"{state.get(key_id, 'available')}"
                        )
                    state[key_id] = "available"
                    holder.pop(key_id, None)
            elif kind == "KeysBlocked":
                for key_id in keys:
                    if state.get(key_id, "available") != "available":
                        report.problem(
                            f"offer {offer_id}: key {key_id} blocked while {state[key_id]}"
                        )
                    state[key_id] = "blocked"
            elif kind == "KeysVoided":
                for key_id in keys:
                    state[key_id] = "voided"
            elif kind == "StockChanged":
                last_stock = payload
        counts = Counter(state.values())
        counts["available"] = imported - sum(n for s, n in counts.items() if s != "available")
        if counts["available"] < 0:
            report.problem(f"offer {offer_id}: more keys moved than the {imported} imported")
        report.counts["keys imported"] += imported
        held = snapshot.key_states.get(offer_id)
        if held is not None:
            if sum(held.values()) != imported:
                report.problem(
                    f"offer {offer_id}: inventory holds {sum(held.values())} keys, "
                    f"its events imported {imported}"
                )
            for name in KEY_STATES:
                if held.get(name, 0) != counts.get(name, 0):
                    report.problem(
                        f"offer {offer_id}: {held.get(name, 0)} keys {name} in inventory, "
                        f"{counts.get(name, 0)} by its events ({dict(held)} vs {dict(counts)})"
                    )
        if last_stock is not None and (last_stock["available"], last_stock["reserved"]) != (
            counts["available"],
            counts["reserved"],
        ):
            report.problem(
                f"offer {offer_id}: last StockChanged says {last_stock['available']} available "
                f"/ {last_stock['reserved']} reserved, its events {counts['available']} / "
                f"{counts['reserved']}"
            )


def natural(account: str, signed: int) -> int:
    kind = account.partition(":")[0]
    return signed if kind in DEBIT_NORMAL else -signed


def check_ledger(snapshot: Snapshot, events: Events, report: AuditReport) -> None:
    """§9.2 from the journal itself: zero sum, chained accounts, no guarded
    account below zero, balanced movements, the trial balance agreeing."""
    postings = [line for line in snapshot.ledger_lines if line.get("kind") == "posting"]
    report.counts["ledger lines"] = len(postings)
    total = sum(int(line["amount"]) for line in postings)
    in_flight = sum(1 for m in snapshot.ledger_movements if m["state"] == "pending")
    report.counts["movements in flight"] = in_flight
    if in_flight:
        report.problem(f"{in_flight} ledger movements still pending")
    elif total != 0:
        report.problem(f"the journal sums to {total}, not zero")
    by_account: dict[str, list[Doc]] = defaultdict(list)
    for line in postings:
        by_account[line["account"]].append(line)
    for account, lines in by_account.items():
        running = 0
        for expected_seq, line in enumerate(sorted(lines, key=lambda x: int(x["seq"])), 1):
            if int(line["seq"]) != expected_seq:
                report.problem(f"{account}: line seq {line['seq']} where {expected_seq} belongs")
                break
            running += int(line["amount"])
            if int(line["balance_after"]) != running:
                report.problem(
                    f"{account}: line {expected_seq} says balance {line['balance_after']}, "
                    f"its lines sum to {running}"
                )
                break
            kind = account.partition(":")[0]
            if kind in NEVER_NEGATIVE and natural(account, running) < 0:
                report.problem(
                    f"{account} went to {natural(account, running)} at line {expected_seq}"
                )
            if kind == "seller_receivable" and natural(account, running) < 0:
                report.problem(f"{account}: the seller is owed {-natural(account, running)}")
            if kind == "platform_promotions" and natural(account, running) < 0:
                # Only a promotion paid at settlement is ever taken back.
                report.problem(f"{account}: more promotion taken back than paid")
    by_movement: dict[str, int] = defaultdict(int)
    for line in postings:
        by_movement[line["movement_id"]] += int(line["amount"])
    for movement in snapshot.ledger_movements:
        if movement["state"] == "applied":
            landed_sum = by_movement.get(movement["_id"])
            if landed_sum != 0:
                report.problem(f"movement {movement['_id']}: its lines sum to {landed_sum}")
            landed = {
                line["account"] for line in postings if line["movement_id"] == movement["_id"]
            }
            planned = {p["account"] for p in movement["postings"]}
            if landed != planned:
                report.problem(f"movement {movement['_id']} applied to {landed}, planned {planned}")
    for problem in _deposit_balances(events):
        report.problem(problem)
    trial = snapshot.trial_balance
    if trial is not None:
        if trial["total"] != 0:
            report.problem(f"payment's trial balance totals {trial['total']}: {trial}")
        recomputed: Counter[str] = Counter()
        for line in postings:
            recomputed[line["account"].partition(":")[0]] += int(line["amount"])
        for kind, amount in trial["totals"].items():
            if recomputed.get(kind, 0) != amount and not in_flight:
                report.problem(
                    f"trial balance says {kind} {amount}, the journal {recomputed.get(kind, 0)}"
                )


def _deposit_balances(events: Events) -> list[str]:
    """`DepositChanged` balances never negative (a shortfall is a receivable)."""
    return [
        f"deposit of {e['payload']['seller_id']} announced at {e['payload']['balance']}"
        for e in events.of("DepositChanged")
        if e["payload"]["balance"] < 0
    ]


def order_histories(events: Events) -> dict[str, list[Doc]]:
    histories: dict[str, list[Doc]] = defaultdict(list)
    for _, envelope in events.stored:
        if envelope["aggregate_type"] == "ordering.order":
            histories[envelope["aggregate_id"]].append(envelope)
    for history in histories.values():
        history.sort(key=lambda e: int(e["aggregate_version"]))
    return dict(histories)


def as_envelope(document: Doc) -> Envelope[Any]:
    """A stored envelope as `kami_cli.ledger` reads it, without validating it
    against the services' event classes: the auditor judges what was stored,
    even a record the code would refuse (and its tests forge only the payload
    fields the checks read)."""
    return Envelope[Any].model_construct(
        event_id=document["event_id"],
        event_type=document["event_type"],
        schema_version=document["schema_version"],
        occurred_at=document["occurred_at"],
        producer=document["producer"],
        correlation_id=document["correlation_id"],
        aggregate_type=document["aggregate_type"],
        aggregate_id=document["aggregate_id"],
        aggregate_version=int(document["aggregate_version"]),
        payload=SimpleNamespace(**document["payload"]),
    )


def check_order_money(snapshot: Snapshot, events: Events, report: AuditReport) -> None:
    """Each order's money as `kami ledger check` judges it (`kami_cli.ledger`:
    settled to the seller — less what a partial claim gave back — or all of it
    back with the buyer, never both, never neither, never more back than
    captured), and what that check does not look at: no payment confirmed
    twice, a completed order delivered keys, an order refunded in full has
    ended and keeps no key that still works, a finished order's escrow is
    empty."""
    confirmations: Counter[str] = Counter()
    payment_of: dict[str, str] = {}
    for envelope in events.of("PaymentConfirmed", "PaymentFailed"):
        payload = envelope["payload"]
        if envelope["event_type"] == "PaymentConfirmed":
            confirmations[payload["payment_id"]] += 1
        payment_of[payload["order_id"]] = payload["payment_id"]
    for payment_id, times in confirmations.items():
        if times > 1:
            report.problem(f"payment {payment_id} confirmed {times} times")
    money = ledger.money_by_order(as_envelope(e) for e in events.of(*MONEY_EVENTS))
    states = ledger.final_states(as_envelope(e) for e in events.of_aggregate("ordering.order"))
    for problem in ledger.audit_orders(money, states).problems:
        report.problem(problem)
    delivered_keys: dict[str, set[str]] = defaultdict(set)
    for envelope in events.of("KeyDelivered", "KeyReplaced"):
        delivered_keys[envelope["payload"]["order_id"]].update(envelope["payload"]["key_ids"])
    voided = {k for e in events.of("KeysVoided") for k in e["payload"]["key_ids"]}
    escrow: Counter[str] = Counter()
    for line in snapshot.ledger_lines:
        if line.get("kind") == "posting" and line["account"].startswith("escrow:"):
            escrow[line["account"].partition(":")[2]] += int(line["amount"])
    outcomes: Counter[str] = Counter()
    for order_id, m in money.items():
        if m.captured == 0:
            continue
        state = states.get(order_id)
        if state == "COMPLETED":
            outcomes["delivered, partly refunded" if m.returned else "delivered"] += 1
            if not delivered_keys[order_id]:
                report.problem(f"order {order_id}: its money went to the seller, no key to it")
        elif state in ("REFUNDED", "CANCELLED"):
            outcomes["refunded"] += 1
            still_valid = delivered_keys[order_id] - voided
            if m.returned == m.captured and still_valid:
                report.problem(
                    f"order {order_id} refunded in full but keeps keys {sorted(still_valid)}"
                )
        elif m.returned == m.captured:
            # kami_cli.ledger leaves orders in flight unjudged; at rest, all
            # the money back means the order ended.
            report.problem(f"order {order_id} refunded in full but {state}")
        else:
            settled_early = m.settled == m.captured and not m.returned
            outcomes["delivered" if settled_early else "in flight"] += 1
        paid_by = payment_of.get(order_id)
        if state in TERMINAL and paid_by is not None and escrow[paid_by] != 0:
            report.problem(
                f"{state} order {order_id}: escrow of {paid_by} still holds "
                f"{natural('escrow:', escrow[paid_by])}"
            )
    for name, count in outcomes.items():
        report.counts[f"payments {name}"] = count


def check_sagas(snapshot: Snapshot, events: Events, report: AuditReport) -> None:
    """§9.3: every order terminal, or still within the deadline of its state;
    every refund ordering requested carried out."""
    now = snapshot.taken_at
    by_state: Counter[str] = Counter()
    for order_id, history in order_histories(events).items():
        state, deadline = None, None
        requested: dict[str, Doc] = {}
        for envelope in history:
            kind, payload = envelope["event_type"], envelope["payload"]
            if payload.get("ends_order", True) is not False:  # a partial refund goes on
                state = ORDER_STATE_OF.get(kind, state)
            if kind in ("OrderPlaced", "OrderReserved"):
                deadline = payload["payment_deadline"]
            elif kind == "OrderPaid":
                deadline = payload.get("delivery_deadline")
            elif kind == "OrderDelivered":
                deadline = payload["guarantee_ends_at"]
            elif kind == "OrderRefundRequested":
                requested[payload["refund_id"]] = payload
            elif kind == "OrderRefunded":
                requested.pop(payload["refund_id"], None)
        by_state[str(state)] += 1
        if requested:
            report.problem(f"order {order_id} ({state}): refunds {sorted(requested)} never done")
        if state in TERMINAL:
            continue
        if state == "PLACED":
            report.problem(f"order {order_id} still PLACED: inventory never answered")
        elif deadline is None or _instant(deadline) <= now:
            report.problem(f"order {order_id} still {state} past its deadline {deadline}")
    for name, count in by_state.items():
        report.counts[f"orders {name}"] = count


def check_coupons(events: Events, report: AuditReport) -> None:
    """No coupon used beyond its limits: per order, `CouponHeld` once, then at
    most one `CouponReleased` or `CouponRedeemed`; the uses still standing
    (held, not released) within `max_uses` and, per buyer, `uses_per_buyer`."""
    terms = {e["aggregate_id"]: e["payload"] for e in events.of("CouponIssued")}
    report.counts["coupons"] = len(terms)
    buyer_of = {e["aggregate_id"]: e["payload"].get("buyer_id") for e in events.of("OrderPlaced")}
    standing: Counter[str] = Counter()
    by_buyer: Counter[tuple[str, str]] = Counter()
    uses = 0
    for order_id, history in order_histories(events).items():
        trail = [
            e
            for e in history
            if e["event_type"] in ("CouponHeld", "CouponReleased", "CouponRedeemed")
        ]
        if not trail:
            continue
        kinds = [e["event_type"] for e in trail]
        code = str(trail[0]["payload"]["coupon_id"])
        uses += 1
        if kinds[0] != "CouponHeld" or len(kinds) > 2 or kinds.count("CouponHeld") != 1:
            report.problem(f"order {order_id}: its coupon use went {kinds}")
            continue
        if any(e["payload"]["coupon_id"] != code for e in trail):
            report.problem(f"order {order_id}: its coupon events name different coupons")
        if code not in terms:
            report.problem(f"order {order_id} used coupon {code}, which was never issued")
        if kinds[-1] != "CouponReleased":
            standing[code] += 1
            by_buyer[(code, str(buyer_of.get(order_id)))] += 1
    report.counts["coupon uses"] = uses
    for code, count in standing.items():
        limit = terms.get(code, {}).get("max_uses")
        if limit is not None and count > int(limit):
            report.problem(f"coupon {code}: {count} uses stand, its total limit is {limit}")
    _check_per_buyer(by_buyer, terms, "uses_per_buyer", "coupon", "holds or used", report)


def check_flash_sales(events: Events, report: AuditReport) -> None:
    """No flash sale sold beyond its stock cap or a buyer's limit: the keys of
    orders placed at its price, less those of orders that gave them back
    (cancelled, or refunded without a delivery)."""
    sales = {e["payload"]["flash_sale_id"]: e["payload"] for e in events.of("FlashSaleScheduled")}
    report.counts["flash sales"] = len(sales)
    standing: Counter[str] = Counter()
    by_buyer: Counter[tuple[str, str]] = Counter()
    for history in order_histories(events).values():
        placed = next((e for e in history if e["event_type"] == "OrderPlaced"), None)
        if placed is None or not placed["payload"].get("flash_sale_id"):
            continue
        types = [e["event_type"] for e in history]
        states = [ORDER_STATE_OF[t] for t in types if t in ORDER_STATE_OF]
        if states[-1] in ("CANCELLED", "REFUNDED") and "OrderDelivered" not in types:
            continue
        sale_id = str(placed["payload"]["flash_sale_id"])
        quantity = int(placed["payload"].get("quantity", 1))
        standing[sale_id] += quantity
        by_buyer[(sale_id, str(placed["payload"].get("buyer_id")))] += quantity
    for sale_id, count in standing.items():
        cap = sales.get(sale_id, {}).get("stock_cap")
        if cap is None:
            report.problem(f"orders at the price of flash sale {sale_id}, never scheduled")
        elif count > int(cap):
            report.problem(f"flash sale {sale_id}: {count} keys held or sold, its cap is {cap}")
    _check_per_buyer(by_buyer, sales, "max_per_buyer", "flash sale", "holds or bought", report)


def _check_per_buyer(
    by_buyer: Counter[tuple[str, str]],
    terms: dict[str, Any],
    limit_field: str,
    what: str,
    verb: str,
    report: AuditReport,
) -> None:
    """Each buyer's standing count of a coupon or flash sale within its per-buyer limit."""
    for (item, buyer), count in by_buyer.items():
        limit = terms.get(item, {}).get(limit_field)
        if limit is not None and count > int(limit):
            report.problem(f"{what} {item}: buyer {buyer} {verb} {count}, its limit is {limit}")


def check_resellers(snapshot: Snapshot, events: Events, report: AuditReport) -> None:
    """Each reseller's prepaid balance (`buyer_wallet:<its user>`) is the sum
    of its journal lines and not below zero; `reseller_margin:<id>` is only
    ever credited (a credit is a negative signed amount)."""
    approved = {
        e["payload"]["reseller_id"]: e["payload"]["user_id"] for e in events.of("ResellerApproved")
    }
    report.counts["resellers"] = len(approved)
    lines_of: dict[str, list[Doc]] = defaultdict(list)
    for line in snapshot.ledger_lines:
        if line.get("kind") == "posting":
            lines_of[line["account"]].append(line)
    for reseller_id, user_id in approved.items():
        wallet = f"buyer_wallet:{user_id}"
        lines = sorted(lines_of.get(wallet, []), key=lambda x: int(x["seq"]))
        summed = natural(wallet, sum(int(line["amount"]) for line in lines))
        if summed < 0:
            report.problem(f"reseller {reseller_id}: its prepaid balance is {summed}")
        if lines and natural(wallet, int(lines[-1]["balance_after"])) != summed:
            report.problem(
                f"reseller {reseller_id}: its prepaid balance says "
                f"{natural(wallet, int(lines[-1]['balance_after']))}, its lines sum to {summed}"
            )
        for line in lines_of.get(f"reseller_margin:{reseller_id}", []):
            if int(line["amount"]) > 0:
                report.problem(
                    f"reseller_margin:{reseller_id} debited {line['amount']} "
                    f"(movement {line['movement_id']})"
                )


def _instant(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def describe(report: AuditReport, limit: int = 40) -> str:
    lines = report.problems[:limit]
    if len(report.problems) > limit:
        lines.append(f"... and {len(report.problems) - limit} more")
    return "\n".join(lines)


def counts_line(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
