"""What the handlers need from the outside world, and the records they trade.

Every Mongo adapter in this package implements one of these; the unit tests
implement them in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from kami_delivery.domain.delivery import OrderFacts
from kami_delivery.domain.keys import CardSecret, UnavailableStatus
from kami_delivery.domain.manual import ManualTask, TaskStatus
from kami_delivery.domain.queue import QueuedDelivery
from kami_events.catalogue.common import DeliveryMode

# -- inventory -------------------------------------------------------------


class InventoryUnavailable(Exception):
    """Inventory could not answer (down, timing out, or answering nonsense).
    Not a verdict on the keys: the delivery is retried, never failed for it."""


@dataclass(frozen=True)
class RevealedKey:
    key_id: str
    secret: CardSecret
    expires_at: datetime | None


@dataclass(frozen=True)
class Revealed:
    keys: tuple[RevealedKey, ...]
    unavailable: Mapping[str, UnavailableStatus]


class Inventory(Protocol):
    async def reveal(self, order_id: str, key_ids: Sequence[str]) -> Revealed:
        """The plaintext of the order's keys, or why some cannot be had.
        Raises `InventoryUnavailable` when inventory cannot say."""


# -- the vault -------------------------------------------------------------


class Sealer(Protocol):
    def seal(self, secret: CardSecret, *, context: str) -> bytes: ...

    def open(self, sealed: bytes, *, context: str) -> CardSecret: ...


@dataclass(frozen=True)
class VaultEntry:
    """One delivered key in its owner's vault. `sealed` is the AES-256-GCM
    ciphertext; the plaintext is never stored."""

    key_id: str
    owner_id: str
    order_id: str
    delivery_id: str
    offer_id: str
    product_id: str
    seller_id: str
    mode: DeliveryMode
    sealed: bytes
    masked: str
    expires_at: datetime | None
    stored_at: datetime
    # Stashed entries become visible with the delivery's `KeyDelivered`.
    visible: bool = False
    voided: bool = False

    @property
    def seal_context(self) -> str:
        return seal_context(self.owner_id, self.order_id, self.key_id)


def seal_context(owner_id: str, order_id: str, key_id: str) -> str:
    """The associated data a key is sealed under: a ciphertext copied onto
    another buyer's, order's or key's entry does not open."""
    return f"kami-vault/v1/{owner_id}/{order_id}/{key_id}"


class Vault(Protocol):
    async def stash(self, entries: Sequence[VaultEntry]) -> list[str]:
        """Store hidden entries; an entry already stored for the same
        delivery is left as it is. Returns the key ids already held by
        *another* delivery (a key must never reach two orders)."""

    async def publish(self, delivery_id: str, key_ids: Sequence[str]) -> None:
        """Make the delivered entries visible to their owner."""

    async def discard_hidden(
        self,
        delivery_id: str,
        *,
        keep: Sequence[str] = (),
        among: Sequence[str] | None = None,
    ) -> int:
        """Delete the delivery's never-published entries (a lost race, a
        failure), except `keep`; only those in `among` when it is given."""

    async def void(self, order_id: str, key_ids: Sequence[str]) -> int:
        """Hide voided keys for good and destroy their ciphertext."""

    async def get(self, key_id: str) -> VaultEntry | None: ...

    async def list_for(
        self, owner_id: str, *, order_id: str | None = None, limit: int = 100
    ) -> list[VaultEntry]:
        """The owner's visible, unvoided keys, newest first."""


# -- the priority lane and manual tasks ------------------------------------


class DeliveryQueue(Protocol):
    async def enqueue(self, job: QueuedDelivery, *, now: datetime) -> bool:
        """Queue the job; False if this delivery is already queued (or was)."""

    async def claim(self, now: datetime, lease_until: datetime) -> QueuedDelivery | None:
        """The highest-priority, oldest due job, leased to the caller; a job
        whose lease ran out (its worker died) is due again."""

    async def complete(
        self, delivery_id: str, outcome: str, now: datetime, *, attempts: int | None = None
    ) -> None:
        """The job leaves the lane; `attempts`, the attempt the caller claimed
        (None: read from the job)."""

    async def retry_at(self, delivery_id: str, at: datetime, error: str) -> None: ...

    async def park(self, delivery_id: str, error: str, now: datetime) -> None:
        """Give up retrying: an operator looks at parked jobs."""

    async def counts(self) -> dict[str, int]: ...


class ManualTasks(Protocol):
    async def open(self, task: ManualTask) -> bool:
        """Record the task; False if it was already open."""

    async def get(self, delivery_id: str) -> ManualTask | None: ...

    async def for_seller(
        self, seller_id: str, status: TaskStatus, *, limit: int = 100
    ) -> list[ManualTask]: ...

    async def overdue(self, now: datetime, *, limit: int = 100) -> list[ManualTask]: ...

    async def close(self, delivery_id: str, status: TaskStatus, now: datetime) -> None: ...


# -- read models of other services' events ---------------------------------


class OrderState(StrEnum):
    """The order's saga state as far as delivery cares. It only moves forward,
    so a stray replay of an older event cannot move it back."""

    PLACED = "placed"
    PAID = "paid"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"

    def replaces(self) -> frozenset[OrderState]:
        """The states this one may follow."""
        return _PREDECESSORS[self]


_PREDECESSORS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.PLACED: frozenset(),
    OrderState.PAID: frozenset({OrderState.PLACED}),
    OrderState.CANCELLED: frozenset({OrderState.PLACED}),
    # A chargeback can refund an order after it completed.
    OrderState.COMPLETED: frozenset({OrderState.PLACED, OrderState.PAID}),
    OrderState.REFUNDED: frozenset({OrderState.PLACED, OrderState.PAID, OrderState.COMPLETED}),
}


@dataclass(frozen=True)
class OrderRecord:
    order_id: str
    buyer_id: str
    seller_id: str
    offer_id: str
    product_id: str
    quantity: int
    mode: DeliveryMode
    buyer_fields: Mapping[str, str] = field(default_factory=dict)
    state: OrderState = OrderState.PLACED

    def facts(self, key_ids: Sequence[str] = ()) -> OrderFacts:
        return OrderFacts(
            order_id=self.order_id,
            buyer_id=self.buyer_id,
            seller_id=self.seller_id,
            offer_id=self.offer_id,
            product_id=self.product_id,
            quantity=self.quantity,
            mode=self.mode,
            key_ids=tuple(key_ids),
            buyer_fields=dict(self.buyer_fields),
        )


class Orders(Protocol):
    async def record_placed(self, order: OrderRecord) -> None: ...

    async def get(self, order_id: str) -> OrderRecord | None: ...

    async def set_state(self, order_id: str, state: OrderState) -> None: ...

    async def record_refund_request(
        self, order_id: str, refund_id: str, void_key_ids: Sequence[str]
    ) -> None: ...

    async def void_key_ids(self, order_id: str, refund_id: str) -> list[str]:
        """The keys the refund `refund_id` asked to void."""


@dataclass(frozen=True)
class BuyerProfile:
    user_id: str
    delivery_priority: int = 0
    phone_masked: str | None = None


class Buyers(Protocol):
    async def record_priority(self, user_id: str, priority: int, tier: str, version: int) -> None:
        """Keep the tier of the user's latest `IdentityVerified` (by stream version)."""

    async def record_phone(self, user_id: str, phone_masked: str) -> None: ...

    async def get(self, user_id: str) -> BuyerProfile | None: ...


class Offers(Protocol):
    async def record_sla(self, offer_id: str, sla_minutes: int | None) -> None: ...

    async def sla_minutes(self, offer_id: str) -> int | None: ...

    async def record_seller(self, offer_id: str, seller_id: str) -> None: ...

    async def seller_of(self, offer_id: str) -> str | None: ...


# -- notifications and audit -----------------------------------------------


class MessageKind(StrEnum):
    KEYS_DELIVERED = "keys_delivered"
    DELIVERY_FAILED = "delivery_failed"
    MANUAL_DELIVERY_REQUESTED = "manual_delivery_requested"
    # After-sales pointed the buyer back to the vault ("not received").
    DELIVERY_REMINDER = "delivery_reminder"
    # Keys of the seller's pool were taken off sale (near expiry, expired).
    KEYS_BLOCKED = "keys_blocked"
    # After-sales replaced a faulty key with another from the pool.
    KEY_REPLACED = "key_replaced"


@dataclass(frozen=True)
class SiteMessage:
    message_id: str
    user_id: str
    kind: MessageKind
    title: str
    body: str
    order_id: str
    created_at: datetime
    read_at: datetime | None = None


class SiteMessages(Protocol):
    async def post(self, message: SiteMessage) -> None:
        """Idempotent by `message_id`."""

    async def list_for(
        self, user_id: str, *, unread_only: bool, limit: int
    ) -> list[SiteMessage]: ...

    async def mark_read(self, user_id: str, message_id: str, now: datetime) -> bool: ...


class SmsSender(Protocol):
    async def send(self, message_id: str, user_id: str, phone_masked: str, text: str) -> None:
        """Hand a text to the carrier for the user's verified phone, idempotently
        by `message_id`; raise if it was not accepted. Never given a secret."""


@dataclass(frozen=True)
class RevealRecord:
    """One audited look at plaintext keys (never the keys themselves)."""

    audit_id: str
    user_id: str
    action: str  # "reveal" or "export"
    key_ids: tuple[str, ...]
    order_ids: tuple[str, ...]
    at: datetime
    export_format: str | None = None
    client: str | None = None


class RevealAudit(Protocol):
    async def record(self, entry: RevealRecord) -> None: ...
