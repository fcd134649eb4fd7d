"""Each order's own timeline, read back from Kafka after the run.

Every event of a purchase carries the order id as its `correlation_id` and
the time its service decided it (`occurred_at`); the Kafka message's own
timestamp says when the service's outbox relay published it. From those,
per order:

- payment→delivery: `PaymentConfirmed` → `KeyDelivered` (both occurred_at);
- order→delivery: `OrderPlaced` → `KeyDelivered` (includes the buyer's own
  time to pay);
- the delivery lane's wait: `OrderPaid` → `KeyDelivered`, the interval
  `kami_delivery_queue_wait_seconds` observes;
- the hops of payment→delivery, split at each publish.

Reading the topics (not `GET /orders/{id}/timeline`, which ordering answers
from the same `occurred_at`s) costs the platform nothing: on FerretDB each
timeline request scans ordering's timeline collection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

# The events of a purchase the figures use.
WANTED = frozenset(
    {
        "OrderPlaced",
        "KeyReserved",
        "PaymentConfirmed",
        "OrderPaid",
        "KeyDelivered",
        "OrderCancelled",
        "OrderRefundRequested",
        "OrderRefunded",
        "DeliveryFailed",
    }
)


@dataclass(frozen=True)
class Seen:
    occurred_at: float  # epoch seconds, the deciding service's clock
    published_at: float  # epoch seconds, the Kafka message timestamp (the relay's send)


@dataclass
class OrderTimeline:
    order_id: str
    events: dict[str, Seen] = field(default_factory=dict)

    def add(self, event_type: str, seen: Seen) -> None:
        # A re-published event keeps its first sighting.
        first = self.events.get(event_type)
        if first is None or seen.published_at < first.published_at:
            self.events[event_type] = seen

    def between(self, start: str, end: str) -> float | None:
        """Seconds from `start` to `end` by their occurred_at, if both happened."""
        a, b = self.events.get(start), self.events.get(end)
        if a is None or b is None:
            return None
        return b.occurred_at - a.occurred_at

    def hops(self) -> dict[str, float] | None:
        """payment→delivery split where each event left its service, or None
        when a part is missing."""
        confirmed = self.events.get("PaymentConfirmed")
        paid = self.events.get("OrderPaid")
        delivered = self.events.get("KeyDelivered")
        if confirmed is None or paid is None or delivered is None:
            return None
        return {
            "payment: commit + relay publish": confirmed.published_at - confirmed.occurred_at,
            "Kafka → ordering: consume, decide": paid.occurred_at - confirmed.published_at,
            "ordering: commit + relay publish": paid.published_at - paid.occurred_at,
            "Kafka → delivery: consume, queue, reveal": delivered.occurred_at - paid.published_at,
        }


def timelines_of(records: Iterable[tuple[bytes | None, int]]) -> dict[str, OrderTimeline]:
    """Timelines from raw Kafka values and their timestamps (ms), keeping
    only the purchase events named in `WANTED`."""
    timelines: dict[str, OrderTimeline] = {}
    for value, timestamp_ms in records:
        if not value:
            continue
        try:
            envelope = json.loads(value)
        except ValueError:
            continue
        if not isinstance(envelope, dict):
            continue
        event_type = envelope.get("event_type")
        order_id = envelope.get("correlation_id")
        occurred = envelope.get("occurred_at")
        if event_type not in WANTED or not isinstance(order_id, str):
            continue
        if not isinstance(occurred, str):
            continue
        seen = Seen(datetime.fromisoformat(occurred).timestamp(), timestamp_ms / 1000)
        timelines.setdefault(order_id, OrderTimeline(order_id)).add(str(event_type), seen)
    return timelines


async def read_namespace(
    bootstrap: str, topic_prefix: str, *, timeout: float = 180.0
) -> dict[str, OrderTimeline]:
    """Every purchase event of the namespace's topics, from offset 0 to the
    end offsets as of now (no consumer group: nothing is committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(
            t
            for t in await admin.list_topics()
            if t.startswith(f"{topic_prefix}.") and ".dead-letter." not in t and ".bench." not in t
        )
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    records: list[tuple[bytes | None, int]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: Mapping[TopicPartition, int] = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"reading the run's events took over {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                records.extend((m.value, m.timestamp) for m in messages)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return timelines_of(records)
