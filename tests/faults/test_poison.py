"""A poison message on every partition of every topic: each consumer that
reads it moves it to its dead-letter topic (saying where it came from) and
its partition keeps flowing — the valid events behind it are handled.

Poisons, one per partition, in turn: bytes that are not JSON, JSON that is
not an envelope, an envelope of an event type nobody knows, and a real event
of that topic whose payload breaks its schema — each dead-lettered at once,
since retrying cannot mend it. And on the orders' topic a valid `OrderPaid`
for an order that never existed: a reader that cannot apply it retries it a
bounded number of times, then dead-letters it. Behind each, the test puts a
valid event on the same partition: a copy of one already there (the inbox
makes it a duplicate), and a purchase, a new offer, a new buyer and a deposit
top-up send new events over most partitions.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from kami_actors import Person, sign_up
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.ordering import OrderPaid
from kami_events.envelope import Envelope
from kami_events.serialization import encode
from kami_market import funded_deposit, list_offer_with_keys
from tests.faults.auditor import KafkaRecord, partitions_of, read_topics
from tests.faults.harness import (
    FaultsPlatform,
    ScenarioLog,
    audit_platform,
    committed_topics,
    wait_quiescent,
)
from tests.faults.shopping import Market, check_purchases, purchase

KINDS = ("not json", "not an envelope", "unknown event type", "payload breaks its schema")


@dataclass(frozen=True)
class Poison:
    kind: str
    partition: TopicPartition
    offset: int
    event_id: str | None


def poison_value(kind: str, sample: dict[str, Any] | None) -> tuple[bytes, str | None]:
    """The bytes of one poison and its event id, if it has one."""
    if kind == "not json":
        return b"\x00\xff{{ this is not json", None
    if kind == "not an envelope":
        return json.dumps({"hello": "world", "items": [1, 2, 3]}).encode(), None
    event_id = str(uuid4())
    if kind == "unknown event type" or sample is None:
        envelope = {
            "event_id": event_id,
            "event_type": "NoSuchEventAnywhere",
            "schema_version": 1,
            "payload": {"anything": True},
        }
        return json.dumps(envelope).encode(), event_id
    broken = dict(sample) | {"event_id": event_id}
    broken["payload"] = {name: None for name in sample["payload"]}  # every field null
    return json.dumps(broken).encode(), event_id


def order_paid_for_no_order() -> tuple[bytes, bytes, str]:
    """A well-formed `OrderPaid` (key, value, event id) for an order nobody placed."""
    order_id = f"ghost-{uuid4()}"
    envelope = Envelope.wrap(
        OrderPaid(
            order_id=order_id,
            buyer_id=f"ghost-buyer-{uuid4()}",
            seller_id=f"ghost-seller-{uuid4()}",
            offer_id=f"ghost-offer-{uuid4()}",
            payment_id=f"ghost-payment-{uuid4()}",
            product_id=f"ghost-product-{uuid4()}",
            quantity=1,
            key_ids=[f"ghost-key-{uuid4()}"],
            amount=100,
            delivery_mode=DeliveryMode.AUTO,
        ),
        producer="ordering",
        aggregate_id=order_id,
        aggregate_version=3,
        correlation_id=order_id,
        occurred_at=datetime.now(UTC),
    )
    return envelope.kafka_key, encode(envelope), str(envelope.event_id)


async def produce(bootstrap: str, sends: list[tuple[TopicPartition, bytes, bytes]]) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        offsets = []
        for tp, key, value in sends:
            sent = await producer.send_and_wait(tp.topic, value, key=key, partition=tp.partition)
            offsets.append(sent.offset)
        return offsets
    finally:
        await producer.stop()


@pytest.mark.timeout(600)
async def test_a_poison_message_on_every_partition_is_dead_lettered_and_the_partition_flows(
    faulty: FaultsPlatform, operator: Person, market: Market, scenario: ScenarioLog
) -> None:
    rng = scenario.rng
    await purchase(rng.choice(market.buyers), market.offer, "complete")
    await wait_quiescent(faulty, operator, scenario)
    existing = await read_topics(faulty.kafka_bootstrap, str(faulty.topic_prefix))
    on_partition: dict[TopicPartition, list[KafkaRecord]] = defaultdict(list)
    for record in existing:
        if record.envelope is not None:
            on_partition[TopicPartition(record.topic, record.partition)].append(record)
    partitions = await partitions_of(faulty.kafka_bootstrap, str(faulty.topic_prefix))
    sends: list[tuple[TopicPartition, bytes, bytes]] = []
    planned: list[tuple[str, TopicPartition, str | None]] = []
    copies: list[tuple[TopicPartition, bytes, bytes]] = []
    for n, tp in enumerate(partitions):
        kind = KINDS[(n + rng.randrange(len(KINDS))) % len(KINDS)]
        records = on_partition.get(tp, [])
        sample = records[-1].envelope if records else None
        value, event_id = poison_value(kind, sample)
        sends.append((tp, f"poison-{n}".encode(), value))
        planned.append((kind, tp, event_id))
        if records:  # a valid event right behind it: a copy of the last one there
            last = records[-1]
            copies.append((tp, (last.key or "").encode(), json.dumps(last.envelope).encode()))
    orders = next(tp for tp in partitions if tp.topic.endswith(".ordering.order.v1"))
    ghost_key, ghost_value, ghost_id = order_paid_for_no_order()
    sends.append((orders, ghost_key, ghost_value))
    planned.append(("valid event no handler can apply", orders, ghost_id))
    faulty.injected_event_ids.update(event_id for _, _, event_id in planned if event_id)
    offsets = await produce(faulty.kafka_bootstrap, sends)
    poisons = [
        Poison(kind, tp, offset, event_id)
        for (kind, tp, event_id), offset in zip(planned, offsets, strict=True)
    ]
    await produce(faulty.kafka_bootstrap, copies)
    scenario.count("poison messages", len(poisons))
    scenario.note(
        f"poisoned {len(poisons)} partitions of {len({p.partition.topic for p in poisons})} "
        f"topics ({', '.join(sorted({p.kind for p in poisons}))}); "
        f"{len(copies)} valid copies behind"
    )

    # New events over the topics, behind the poison.
    buyer = await sign_up(faulty)
    offer = await list_offer_with_keys(faulty, operator, keys=3, unit_price=500, max_quantity=1)
    await funded_deposit(offer.seller, 150_000)
    done = await asyncio.gather(
        purchase(rng.choice(market.buyers), offer, "complete"),
        purchase(rng.choice(market.buyers), market.offer, "cancel"),
        purchase(rng.choice(market.buyers), market.offer, "deliver"),
    )
    check_purchases(list(done))
    scenario.note(
        f"new buyer {buyer.user_id}, new offer {offer.offer_id}, "
        f"purchases {[p.state for p in done]}"
    )
    await wait_quiescent(faulty, operator, scenario)

    # Every group reading a poisoned partition got past it, and dead-lettered it.
    dead = await read_topics(faulty.kafka_bootstrap, str(faulty.topic_prefix), dead_letters=True)
    dead_lettered: dict[tuple[str, str, int, int], KafkaRecord] = {}
    for record in dead:
        h = record.headers
        dead_lettered[
            (
                h["dlq_consumer"],
                h["dlq_source_topic"],
                int(h["dlq_source_partition"]),
                int(h["dlq_source_offset"]),
            )
        ] = record
    readers: dict[TopicPartition, list[str]] = defaultdict(list)
    problems = []
    for service in faulty.services:
        committed = await committed_topics(faulty, faulty.group_of(service))
        for tp, offset in committed.items():
            readers[tp].append(service)
            for poison in poisons:
                if poison.partition == tp and offset <= poison.offset:
                    problems.append(f"{service} is stuck at {tp.topic}[{tp.partition}]@{offset}")
    unread = sorted({p.partition.topic for p in poisons if not readers[p.partition]})
    for poison in poisons:
        tp = poison.partition
        for service in readers[tp]:
            key = (service, tp.topic, tp.partition, poison.offset)
            if key not in dead_lettered:
                # A valid event is handled, or ignored, by a reader it means nothing to.
                if poison.kind in KINDS:
                    problems.append(f"{service} did not dead-letter the {poison.kind} at {tp}")
            else:
                scenario.count("dead letters")
                attempts = int(dead_lettered[key].headers["dlq_attempts"])
                # Undecodable: never retried. Valid but failing: retried, within bounds.
                if poison.kind in KINDS and attempts != 0:
                    problems.append(f"{service} retried an undecodable poison {attempts} times")
                if poison.kind not in KINDS and not 1 < attempts <= 10:
                    problems.append(f"{service} tried the failing {poison.kind} {attempts} times")
    ghost = poisons[-1]
    if not any(
        (service, ghost.partition.topic, ghost.partition.partition, ghost.offset) in dead_lettered
        for service in readers[ghost.partition]
    ):
        problems.append("no reader of the orders' topic dead-lettered the OrderPaid of no order")
    assert problems == [], "\n".join(problems)
    scenario.note(
        f"{scenario.counts.get('dead letters', 0)} dead letters, one per poison and reader; "
        f"every reader past its poison; topics nobody reads: {unread}"
    )
    await audit_platform(faulty, operator, scenario)
