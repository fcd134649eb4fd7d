"""In-memory versions of delivery's ports, behaving as the Mongo adapters do."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import count

from kami_delivery.adapters.cipher import VaultCipher
from kami_delivery.adapters.ports import (
    BuyerProfile,
    InventoryUnavailable,
    OrderRecord,
    OrderState,
    Revealed,
    RevealedKey,
    RevealRecord,
    SiteMessage,
    VaultEntry,
)
from kami_delivery.domain.delivery import Delivery
from kami_delivery.domain.keys import CardSecret, UnavailableStatus
from kami_delivery.domain.manual import ManualTask, TaskStatus
from kami_delivery.domain.queue import QueuedDelivery, RetryPolicy
from kami_delivery.handlers import DeliveryDeps, DeliveryPolicy
from kami_events.repository import AggregateRepository
from kami_events.testing import InMemoryEventStore, ManualClock

VAULT_KEY = bytes(range(32))
VAULT_KEY_B64 = base64.b64encode(VAULT_KEY).decode()


class FakeInventory:
    """Keys by id: a secret (available to reveal) or an unavailable status."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.unavailable: dict[str, UnavailableStatus] = {}
        self.expires_at: datetime | None = None
        self.down = False
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def stock(self, **secrets: str) -> None:
        self.secrets.update(secrets)

    async def reveal(self, order_id: str, key_ids: Sequence[str]) -> Revealed:
        self.calls.append((order_id, tuple(key_ids)))
        await asyncio.sleep(0)  # a network call lets other tasks run
        if self.down:
            raise InventoryUnavailable("inventory did not answer: ConnectError")
        keys = tuple(
            RevealedKey(k, CardSecret(self.secrets[k]), self.expires_at)
            for k in key_ids
            if k in self.secrets and k not in self.unavailable
        )
        unavailable = {k: s for k, s in self.unavailable.items() if k in key_ids}
        for k in key_ids:
            if k not in self.secrets and k not in unavailable:
                unavailable[k] = UnavailableStatus.UNKNOWN
        return Revealed(keys, unavailable)


class FakeVault:
    def __init__(self) -> None:
        self.entries: dict[str, VaultEntry] = {}

    async def stash(self, entries: Sequence[VaultEntry]) -> list[str]:
        await asyncio.sleep(0)  # a database write lets other tasks run
        for entry in entries:
            self.entries.setdefault(entry.key_id, entry)
        return [e.key_id for e in entries if self.entries[e.key_id].delivery_id != e.delivery_id]

    async def publish(self, delivery_id: str, key_ids: Sequence[str]) -> None:
        await asyncio.sleep(0)
        for key_id in key_ids:
            entry = self.entries.get(key_id)
            if entry and entry.delivery_id == delivery_id:
                self.entries[key_id] = dataclasses.replace(entry, visible=True)

    async def discard_hidden(
        self,
        delivery_id: str,
        *,
        keep: Sequence[str] = (),
        among: Sequence[str] | None = None,
    ) -> int:
        doomed = [
            k
            for k, e in self.entries.items()
            if e.delivery_id == delivery_id
            and not e.visible
            and k not in keep
            and (among is None or k in among)
        ]
        for k in doomed:
            del self.entries[k]
        return len(doomed)

    async def void(self, order_id: str, key_ids: Sequence[str]) -> int:
        voided = 0
        for key_id in key_ids:
            entry = self.entries.get(key_id)
            if entry and entry.order_id == order_id and not entry.voided:
                self.entries[key_id] = dataclasses.replace(entry, voided=True, sealed=b"")
                voided += 1
        return voided

    async def get(self, key_id: str) -> VaultEntry | None:
        return self.entries.get(key_id)

    async def list_for(
        self, owner_id: str, *, order_id: str | None = None, limit: int = 100
    ) -> list[VaultEntry]:
        found = [
            e
            for e in self.entries.values()
            if e.owner_id == owner_id
            and e.visible
            and not e.voided
            and (order_id is None or e.order_id == order_id)
        ]
        return sorted(found, key=lambda e: (-e.stored_at.timestamp(), e.key_id))[:limit]

    def visible_ids(self, owner_id: str) -> set[str]:
        return {k for k, e in self.entries.items() if e.owner_id == owner_id and e.visible}


@dataclasses.dataclass
class _Job:
    job: QueuedDelivery
    status: str = "queued"
    available_at: datetime | None = None
    lease_until: datetime | None = None
    outcome: str | None = None
    error: str | None = None


class FakeQueue:
    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}

    async def enqueue(self, job: QueuedDelivery, *, now: datetime) -> bool:
        if job.delivery_id in self.jobs:
            return False
        self.jobs[job.delivery_id] = _Job(job, available_at=now)
        return True

    async def claim(self, now: datetime, lease_until: datetime) -> QueuedDelivery | None:
        due = [
            j
            for j in self.jobs.values()
            if (j.status == "queued" and j.available_at is not None and j.available_at <= now)
            or (j.status == "working" and j.lease_until is not None and j.lease_until <= now)
        ]
        if not due:
            return None
        chosen = min(due, key=lambda j: (-j.job.priority, j.job.enqueued_at))
        chosen.status, chosen.lease_until = "working", lease_until
        chosen.job = dataclasses.replace(chosen.job, attempts=chosen.job.attempts + 1)
        return chosen.job

    async def complete(
        self, delivery_id: str, outcome: str, now: datetime, *, attempts: int | None = None
    ) -> None:
        job = self.jobs[delivery_id]
        job.status, job.outcome, job.lease_until = "done", outcome, None

    async def retry_at(self, delivery_id: str, at: datetime, error: str) -> None:
        job = self.jobs[delivery_id]
        job.status, job.available_at, job.error, job.lease_until = "queued", at, error, None

    async def park(self, delivery_id: str, error: str, now: datetime) -> None:
        job = self.jobs[delivery_id]
        job.status, job.error, job.lease_until = "parked", error, None

    async def counts(self) -> dict[str, int]:
        return {
            s: sum(1 for j in self.jobs.values() if j.status == s)
            for s in ("queued", "working", "parked")
        }


class FakeManualTasks:
    def __init__(self) -> None:
        self.tasks: dict[str, ManualTask] = {}

    async def open(self, task: ManualTask) -> bool:
        if task.delivery_id in self.tasks:
            return False
        self.tasks[task.delivery_id] = task
        return True

    async def get(self, delivery_id: str) -> ManualTask | None:
        return self.tasks.get(delivery_id)

    async def for_seller(
        self, seller_id: str, status: TaskStatus, *, limit: int = 100
    ) -> list[ManualTask]:
        found = [
            t for t in self.tasks.values() if t.order.seller_id == seller_id and t.status is status
        ]
        return sorted(found, key=lambda t: t.deadline)[:limit]

    async def overdue(self, now: datetime, *, limit: int = 100) -> list[ManualTask]:
        return [
            t for t in self.tasks.values() if t.status is TaskStatus.OPEN and t.deadline <= now
        ][:limit]

    async def close(self, delivery_id: str, status: TaskStatus, now: datetime) -> None:
        task = self.tasks[delivery_id]
        if task.status is TaskStatus.OPEN:
            self.tasks[delivery_id] = dataclasses.replace(task, status=status)


class FakeOrders:
    def __init__(self) -> None:
        self.orders: dict[str, OrderRecord] = {}
        self.refunds: dict[tuple[str, str], list[str]] = {}

    async def record_placed(self, order: OrderRecord) -> None:
        self.orders.setdefault(order.order_id, order)

    async def get(self, order_id: str) -> OrderRecord | None:
        return self.orders.get(order_id)

    async def set_state(self, order_id: str, state: OrderState) -> None:
        order = self.orders.get(order_id)
        if order is not None and order.state in state.replaces():
            self.orders[order_id] = dataclasses.replace(order, state=state)

    async def record_refund_request(
        self, order_id: str, refund_id: str, void_key_ids: Sequence[str]
    ) -> None:
        if order_id in self.orders:
            self.refunds.setdefault((order_id, refund_id), list(void_key_ids))

    async def void_key_ids(self, order_id: str, refund_id: str) -> list[str]:
        return list(self.refunds.get((order_id, refund_id), []))


class FakeBuyers:
    def __init__(self) -> None:
        self.profiles: dict[str, BuyerProfile] = {}
        self.versions: dict[str, int] = {}

    async def record_priority(self, user_id: str, priority: int, tier: str, version: int) -> None:
        if self.versions.get(user_id, 0) >= version:
            return
        self.versions[user_id] = version
        current = self.profiles.get(user_id, BuyerProfile(user_id))
        self.profiles[user_id] = dataclasses.replace(current, delivery_priority=priority)

    async def record_phone(self, user_id: str, phone_masked: str) -> None:
        current = self.profiles.get(user_id, BuyerProfile(user_id))
        self.profiles[user_id] = dataclasses.replace(current, phone_masked=phone_masked)

    async def get(self, user_id: str) -> BuyerProfile | None:
        return self.profiles.get(user_id)


class FakeOffers:
    def __init__(self) -> None:
        self.sla: dict[str, int | None] = {}
        self.sellers: dict[str, str] = {}

    async def record_sla(self, offer_id: str, sla_minutes: int | None) -> None:
        self.sla[offer_id] = sla_minutes

    async def sla_minutes(self, offer_id: str) -> int | None:
        return self.sla.get(offer_id)

    async def record_seller(self, offer_id: str, seller_id: str) -> None:
        self.sellers[offer_id] = seller_id

    async def seller_of(self, offer_id: str) -> str | None:
        return self.sellers.get(offer_id)


class FakeMessages:
    def __init__(self) -> None:
        self.posted: dict[str, SiteMessage] = {}

    async def post(self, message: SiteMessage) -> None:
        self.posted.setdefault(message.message_id, message)

    async def list_for(self, user_id: str, *, unread_only: bool, limit: int) -> list[SiteMessage]:
        found = [
            m
            for m in self.posted.values()
            if m.user_id == user_id and (not unread_only or m.read_at is None)
        ]
        return sorted(found, key=lambda m: m.created_at, reverse=True)[:limit]

    async def mark_read(self, user_id: str, message_id: str, now: datetime) -> bool:
        message = self.posted.get(message_id)
        if message is None or message.user_id != user_id:
            return False
        self.posted[message_id] = dataclasses.replace(message, read_at=now)
        return True

    def for_user(self, user_id: str) -> list[SiteMessage]:
        return [m for m in self.posted.values() if m.user_id == user_id]


class FakeSms:
    def __init__(self) -> None:
        self.sent: dict[str, tuple[str, str, str]] = {}
        self.fail = False

    async def send(self, message_id: str, user_id: str, phone_masked: str, text: str) -> None:
        if self.fail:
            raise ConnectionError("carrier unreachable")
        self.sent.setdefault(message_id, (user_id, phone_masked, text))


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[RevealRecord] = []

    async def record(self, entry: RevealRecord) -> None:
        self.records.append(entry)


@dataclasses.dataclass
class World:
    """Delivery wired to fakes, plus handles on every fake."""

    deps: DeliveryDeps
    clock: ManualClock
    store: InMemoryEventStore
    inventory: FakeInventory
    vault: FakeVault
    queue: FakeQueue
    manual_tasks: FakeManualTasks
    orders: FakeOrders
    buyers: FakeBuyers
    offers: FakeOffers
    messages: FakeMessages
    sms: FakeSms
    audit: FakeAudit

    def events(self, event_type: type | None = None) -> list[object]:
        payloads = [e.payload for e in self.store.committed]
        return [p for p in payloads if event_type is None or isinstance(p, event_type)]


def world(*, max_attempts: int = 3, manual_sla: timedelta = timedelta(minutes=30)) -> World:
    clock = ManualClock()
    store = InMemoryEventStore(producer="delivery", clock=clock)
    ids = count(1)
    w = World(
        deps=None,  # type: ignore[arg-type]  # set below
        clock=clock,
        store=store,
        inventory=FakeInventory(),
        vault=FakeVault(),
        queue=FakeQueue(),
        manual_tasks=FakeManualTasks(),
        orders=FakeOrders(),
        buyers=FakeBuyers(),
        offers=FakeOffers(),
        messages=FakeMessages(),
        sms=FakeSms(),
        audit=FakeAudit(),
    )
    w.deps = DeliveryDeps(
        deliveries=AggregateRepository(store, Delivery),
        inventory=w.inventory,
        sealer=VaultCipher(VAULT_KEY),
        vault=w.vault,
        queue=w.queue,
        manual_tasks=w.manual_tasks,
        orders=w.orders,
        buyers=w.buyers,
        offers=w.offers,
        messages=w.messages,
        sms=w.sms,
        audit=w.audit,
        policy=DeliveryPolicy(
            manual_sla=manual_sla,
            lease=timedelta(minutes=1),
            retry=RetryPolicy(
                max_attempts=max_attempts,
                base_delay=timedelta(seconds=1),
                max_delay=timedelta(seconds=30),
            ),
        ),
        clock=clock,
        new_id=lambda: f"id-{next(ids)}",
    )
    return w
