"""Delivery's use cases: load, decide, save.

Event handlers (called by `consumers`), the priority lane's worker step,
the seller's manual delivery, the SLA poller, and the buyer's vault. Each
takes `DeliveryDeps` (wired in `app`, faked in unit tests) and the input it
acts on.

The order of effects in a delivery is what keeps it safe without
transactions:

1. the sealed keys are *stashed* in the vault, hidden;
2. the outcome is appended to the delivery's stream (version 0 → 1: only one
   outcome ever gets in, however many workers or redeliveries race);
3. the stashed keys are *published* (made visible).

A crash between 2 and 3 is repaired by delivery's own consumer of
`KeyDelivered` (`announce_delivery`), which publishes the keys again and
sends the notifications: the effects of a delivery are driven by its
committed event, at least once, each one idempotent. A replacement key
(after-sales) goes the same way: stashed, `KeyReplaced`, published, with
`announce_replacement` as the repair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import uuid4

from kami_delivery.adapters.issuers import IssuerDirectory, Verdict
from kami_delivery.adapters.ports import (
    Buyers,
    DeliveryQueue,
    Inventory,
    InventoryUnavailable,
    ManualTasks,
    MessageKind,
    Offers,
    OrderRecord,
    Orders,
    OrderState,
    RevealAudit,
    RevealRecord,
    Sealer,
    SiteMessage,
    SiteMessages,
    SmsSender,
    Vault,
    VaultEntry,
    seal_context,
)
from kami_delivery.domain.delivery import (
    Delivery,
    DeliveryStatus,
    OrderFacts,
    delivery_id_for,
)
from kami_delivery.domain.keys import (
    CardSecret,
    UnavailableStatus,
    failure_for,
    redact_secrets,
)
from kami_delivery.domain.manual import ManualTask, TaskStatus
from kami_delivery.domain.queue import QueuedDelivery, RetryPolicy
from kami_delivery.domain.rejections import Conflict, Forbidden, Gone, NotFound
from kami_delivery.metrics import (
    DELIVERY_OUTCOMES,
    INVENTORY_FAILURES,
    NOTIFICATIONS,
    PLAINTEXT_ACCESS,
    QUEUE_WAIT,
)
from kami_events.catalogue.aftersales import Resolution, TicketResolved
from kami_events.catalogue.catalog import OfferListed
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import (
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
    KeyReplaced,
)
from kami_events.catalogue.identity import IdentityVerified, PhoneVerified
from kami_events.catalogue.inventory import BlockReason, KeysBlocked, ReplacementKeysAllocated
from kami_events.catalogue.ordering import (
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderRefundRequested,
)
from kami_events.clock import Clock
from kami_events.envelope import Envelope
from kami_events.repository import AggregateRepository
from kami_events.store import CommitContext, ConcurrencyError

log = logging.getLogger(__name__)


class UnknownOrder(Exception):
    """`OrderPaid` for an order whose `OrderPlaced` was never seen. They share a
    partition, so this is a consistency problem: the message is retried and
    then dead-lettered for an operator, never guessed at."""


class ReplacementUndeliverable(Exception):
    """Inventory allocated replacement keys for an order that delivery cannot
    hand to the buyer: inventory withholds them, one already sits in another
    order's vault, or the order has no completed delivery. Never delivered
    half-way nor guessed at: the message is retried, then dead-lettered for
    an operator (the after-sales ticket waits meanwhile)."""


@dataclass(frozen=True)
class DeliveryPolicy:
    manual_sla: timedelta
    lease: timedelta
    retry: RetryPolicy


@dataclass
class DeliveryDeps:
    deliveries: AggregateRepository[Delivery]
    inventory: Inventory
    sealer: Sealer
    vault: Vault
    queue: DeliveryQueue
    manual_tasks: ManualTasks
    orders: Orders
    buyers: Buyers
    offers: Offers
    messages: SiteMessages
    sms: SmsSender
    audit: RevealAudit
    policy: DeliveryPolicy
    clock: Clock
    new_id: Callable[[], str] = field(default=lambda: str(uuid4()))
    # Each product's issuer, asked whether a delivered key is still redeemable.
    issuers: IssuerDirectory = field(default_factory=IssuerDirectory)
    # Services that may ask about a buyer's keys: verdicts, and free text
    # cleared of them (never the keys themselves).
    verify_services: frozenset[str] = frozenset({"aftersales"})


def _context(
    order_id: str, causation_id: str | None, traceparent: str | None = None
) -> CommitContext:
    return CommitContext(
        correlation_id=order_id, causation_id=causation_id, traceparent=traceparent
    )


def _extra(order_id: str) -> dict[str, str]:
    return {"correlation_id": order_id}


# -- read models of other services' events ---------------------------------------


async def record_order_placed(deps: DeliveryDeps, event: OrderPlaced) -> None:
    await deps.orders.record_placed(
        OrderRecord(
            order_id=event.order_id,
            buyer_id=event.buyer_id,
            seller_id=event.seller_id,
            offer_id=event.offer_id,
            product_id=event.product_id,
            quantity=event.quantity,
            mode=event.delivery_mode,
            buyer_fields=dict(event.buyer_fields),
        )
    )


async def record_order_state(deps: DeliveryDeps, order_id: str, state: OrderState) -> None:
    await deps.orders.set_state(order_id, state)


async def record_refund_request(deps: DeliveryDeps, event: OrderRefundRequested) -> None:
    await deps.orders.record_refund_request(event.order_id, event.refund_id, event.void_key_ids)


async def hide_refunded_keys(deps: DeliveryDeps, event: OrderRefunded) -> None:
    """The refund is done: the keys it voided, and the keys that replaced any
    of them (ordering names only the keys it knows), leave the buyer's vault."""
    void_key_ids = await deps.orders.void_key_ids(event.order_id, event.refund_id)
    if void_key_ids:
        delivery = await deps.deliveries.get(delivery_id_for(event.order_id))
        if delivery is not None:
            void_key_ids = delivery.with_replacements(void_key_ids)
        hidden = await deps.vault.void(event.order_id, void_key_ids)
        log.info(
            "refund %s of order %s voided %d vault key(s)",
            event.refund_id,
            event.order_id,
            hidden,
            extra=_extra(event.order_id),
        )
    if event.ends_order:  # a partial compensation leaves the order (and arrival) open
        await deps.orders.set_state(event.order_id, OrderState.REFUNDED)


async def record_tier(deps: DeliveryDeps, event: IdentityVerified, version: int) -> None:
    await deps.buyers.record_priority(
        event.user_id, event.delivery_priority, event.tier.value, version
    )


async def record_phone(deps: DeliveryDeps, event: PhoneVerified) -> None:
    await deps.buyers.record_phone(event.user_id, event.phone_masked)


async def record_offer(deps: DeliveryDeps, event: OfferListed) -> None:
    await deps.offers.record_sla(event.offer_id, event.manual_delivery_sla_minutes)
    await deps.offers.record_seller(event.offer_id, event.seller_id)


# -- a paid order ------------------------------------------------------------------


async def accept_paid_order(deps: DeliveryDeps, envelope: Envelope[OrderPaid]) -> None:
    """`OrderPaid`: queue an automatic delivery in the priority lane, or open a
    manual delivery for the seller. Quick and idempotent: both are keyed by
    the delivery id, so a redelivered `OrderPaid` changes nothing."""
    paid = envelope.payload
    record = await deps.orders.get(paid.order_id)
    if record is None:
        raise UnknownOrder(f"OrderPaid for {paid.order_id} before its OrderPlaced")
    order = record.facts(paid.key_ids)
    await deps.orders.set_state(paid.order_id, OrderState.PAID)
    if paid.delivery_mode is DeliveryMode.AUTO:
        buyer = await deps.buyers.get(paid.buyer_id)
        job = QueuedDelivery(
            delivery_id=order.delivery_id,
            order=order,
            priority=buyer.delivery_priority if buyer else 0,
            enqueued_at=envelope.occurred_at,
            causation_id=str(envelope.event_id),
            traceparent=envelope.traceparent,
            # Read here with the priority, not again by the worker: a phone
            # verified in the seconds between gets no text for this order
            # (the vault and the site message still tell the buyer).
            buyer_has_phone=bool(buyer and buyer.phone_masked),
            delivery_deadline=paid.delivery_deadline,
        )
        if await deps.queue.enqueue(job, now=deps.clock()):
            log.info(
                "order %s queued for delivery at priority %d",
                order.order_id,
                job.priority,
                extra=_extra(order.order_id),
            )
        return

    sla_minutes = await deps.offers.sla_minutes(paid.offer_id)
    task = ManualTask.open(
        order,
        paid_at=envelope.occurred_at,
        deadline=paid.delivery_deadline,
        sla=timedelta(minutes=sla_minutes) if sla_minutes else deps.policy.manual_sla,
    )
    await deps.manual_tasks.open(task)
    await deps.messages.post(
        SiteMessage(
            message_id=f"{task.delivery_id}:manual-requested",
            user_id=order.seller_id,
            kind=MessageKind.MANUAL_DELIVERY_REQUESTED,
            title="An order awaits your delivery",
            body=(
                f"Order {order.order_id} ({order.quantity} key(s)) was paid. Deliver it by "
                f"{task.deadline.isoformat()} under Seller › Deliveries, or it is refunded."
            ),
            order_id=order.order_id,
            created_at=deps.clock(),
        )
    )


# -- the priority lane ----------------------------------------------------------------


async def deliver_next(deps: DeliveryDeps) -> bool:
    """Take the most urgent due job from the lane and work it; False if none is due."""
    now = deps.clock()
    job = await deps.queue.claim(now, now + deps.policy.lease)
    if job is None:
        return False
    if job.attempts > deps.policy.retry.max_attempts:
        await _park(deps, job, f"claimed {job.attempts} times without finishing")
        return True
    try:
        await _deliver_queued(deps, job)
    except Exception as exc:
        log.exception(
            "delivery of order %s failed unexpectedly",
            job.order.order_id,
            extra=_extra(job.order.order_id),
        )
        await _retry_or_park(deps, job, f"{type(exc).__name__}: {exc}"[:300])
    return True


async def _conclude(
    deps: DeliveryDeps,
    order: OrderFacts,
    decide: Callable[[Delivery], None],
    context: CommitContext,
    *,
    loaded: Delivery | None = None,
) -> Delivery | None:
    """Load the delivery, let `decide` give it its outcome, save. Returns None
    when another writer (a racing worker, the seller, the SLA poller) had
    concluded it first. A `ConcurrencyError` is retried on a fresh load: it
    also arises when the store's commit position collided, which says
    nothing about this delivery. `loaded`: the delivery as the caller loaded
    it, decided on at first (a writer since makes the save fail and reload)."""
    for attempt in range(5):
        if attempt == 0 and loaded is not None:
            delivery = loaded
        else:
            delivery = await deps.deliveries.get(order.delivery_id) or Delivery.for_order(order)
        if delivery.concluded:
            return None
        decide(delivery)
        try:
            await deps.deliveries.save(delivery, context)
        except ConcurrencyError:
            continue
        return delivery
    raise ConcurrencyError(f"delivery {order.delivery_id} kept changing under a save")


async def _deliver_queued(deps: DeliveryDeps, job: QueuedDelivery) -> None:
    order = job.order
    # Loaded once: `_conclude` decides on it, and reloads only if a save fails.
    delivery = await deps.deliveries.get(job.delivery_id)
    if delivery is not None and delivery.concluded:
        await _complete(deps, job, f"already_{delivery.status.value}")
        return
    # Ordering refunds a paid order it did not hear delivered only once its
    # delivery deadline passed, so the order is read only then. (Keys it
    # voided otherwise, as for a chargeback, inventory no longer reveals.)
    refundable = job.delivery_deadline is None or deps.clock() >= job.delivery_deadline
    record = await deps.orders.get(order.order_id) if refundable else None
    if record is not None and record.state is OrderState.REFUNDED:
        # Ordering gave up waiting (its delivery deadline) and refunded: too late.
        await _complete(deps, job, "order_refunded")
        log.warning(
            "order %s was refunded before its delivery",
            order.order_id,
            extra=_extra(order.order_id),
        )
        return
    if not order.key_ids:
        await _fail_queued(
            deps, job, DeliveryFailure.KEY_INVALID, (), "the order was paid without reserved keys"
        )
        return

    try:
        revealed = await deps.inventory.reveal(order.order_id, order.key_ids)
    except InventoryUnavailable as exc:
        INVENTORY_FAILURES.inc()
        await _retry_or_park(deps, job, str(exc))
        return

    secrets = {key.key_id: key for key in revealed.keys}
    unavailable = dict(revealed.unavailable)
    for key_id in order.key_ids:
        if key_id not in secrets and key_id not in unavailable:
            unavailable[key_id] = UnavailableStatus.UNKNOWN
    if unavailable:
        reason, detail = failure_for(unavailable)
        await _fail_queued(deps, job, reason, tuple(unavailable), detail)
        return

    now = deps.clock()
    entries = [
        _vault_entry(deps, order, key_id, secrets[key_id].secret, secrets[key_id].expires_at, now)
        for key_id in order.key_ids
    ]
    taken = await deps.vault.stash(entries)
    if taken:
        # DESIGN §9 (1): a key already in another order's vault is never delivered again.
        log.error(
            "order %s: inventory handed out %d key(s) already delivered to another order",
            order.order_id,
            len(taken),
            extra=_extra(order.order_id),
        )
        await deps.vault.discard_hidden(job.delivery_id)
        await _fail_queued(
            deps,
            job,
            DeliveryFailure.KEY_INVALID,
            tuple(taken),
            "key already delivered to another order",
        )
        return

    channels = (
        _channels(job.buyer_has_phone)
        if job.buyer_has_phone is not None
        else await _channels_for(deps, order.buyer_id)
    )
    concluded = await _conclude(
        deps,
        order,
        lambda d: d.deliver(order, order.key_ids, channels),
        _context(order.order_id, job.causation_id, job.traceparent),
        loaded=delivery or Delivery.for_order(order),
    )
    if concluded is None:
        await _complete(deps, job, "concluded_elsewhere")
        return
    await deps.vault.publish(job.delivery_id, order.key_ids)
    await _complete(deps, job, "delivered")
    _observe(job, "delivered", deps.clock())
    log.info(
        "order %s: %d key(s) delivered",
        order.order_id,
        len(order.key_ids),
        extra=_extra(order.order_id),
    )


async def _fail_queued(
    deps: DeliveryDeps,
    job: QueuedDelivery,
    reason: DeliveryFailure,
    faulty_key_ids: Sequence[str],
    detail: str,
) -> None:
    order = job.order
    concluded = await _conclude(
        deps,
        order,
        lambda d: d.fail(order, reason, faulty_key_ids=faulty_key_ids, detail=detail),
        _context(order.order_id, job.causation_id, job.traceparent),
    )
    if concluded is None:
        await _complete(deps, job, "concluded_elsewhere")
        return
    await _complete(deps, job, "failed")
    _observe(job, "failed", deps.clock())
    log.warning(
        "order %s not delivered: %s (%s)",
        order.order_id,
        reason.value,
        detail,
        extra=_extra(order.order_id),
    )


async def _retry_or_park(deps: DeliveryDeps, job: QueuedDelivery, error: str) -> None:
    now = deps.clock()
    at = deps.policy.retry.next_attempt(job.attempts, now)
    if at is None:
        await _park(deps, job, error)
        return
    await deps.queue.retry_at(job.delivery_id, at, error)
    log.warning(
        "order %s: delivery attempt %d failed (%s); retrying at %s",
        job.order.order_id,
        job.attempts,
        error,
        at.isoformat(),
        extra=_extra(job.order.order_id),
    )


async def _park(deps: DeliveryDeps, job: QueuedDelivery, error: str) -> None:
    await deps.queue.park(job.delivery_id, error, deps.clock())
    DELIVERY_OUTCOMES.labels(job.order.mode.value, "parked").inc()
    log.error(
        "order %s: delivery parked after %d attempts: %s",
        job.order.order_id,
        job.attempts,
        error,
        extra=_extra(job.order.order_id),
    )


def _observe(job: QueuedDelivery, outcome: str, now: datetime) -> None:
    DELIVERY_OUTCOMES.labels(job.order.mode.value, outcome).inc()
    QUEUE_WAIT.labels(str(job.priority)).observe(max((now - job.enqueued_at).total_seconds(), 0.0))


def _vault_entry(
    deps: DeliveryDeps,
    order: OrderFacts,
    key_id: str,
    secret: CardSecret,
    expires_at: datetime | None,
    now: datetime,
) -> VaultEntry:
    return VaultEntry(
        key_id=key_id,
        owner_id=order.buyer_id,
        order_id=order.order_id,
        delivery_id=order.delivery_id,
        offer_id=order.offer_id,
        product_id=order.product_id,
        seller_id=order.seller_id,
        mode=order.mode,
        sealed=deps.sealer.seal(
            secret, context=seal_context(order.buyer_id, order.order_id, key_id)
        ),
        masked=secret.masked(),
        expires_at=expires_at,
        stored_at=now,
    )


async def _complete(deps: DeliveryDeps, job: QueuedDelivery, outcome: str) -> None:
    await deps.queue.complete(job.delivery_id, outcome, deps.clock(), attempts=job.attempts)


async def _channels_for(deps: DeliveryDeps, buyer_id: str) -> list[DeliveryChannel]:
    buyer = await deps.buyers.get(buyer_id)
    return _channels(buyer is not None and bool(buyer.phone_masked))


def _channels(has_phone: bool) -> list[DeliveryChannel]:
    """The vault with a site message always; a text too when the buyer has a verified phone."""
    if has_phone:
        return [DeliveryChannel.VAULT, DeliveryChannel.SMS]
    return [DeliveryChannel.VAULT]


# -- manual delivery --------------------------------------------------------------------


async def open_manual_deliveries(
    deps: DeliveryDeps, seller_id: str, limit: int
) -> list[ManualTask]:
    return await deps.manual_tasks.for_seller(seller_id, TaskStatus.OPEN, limit=limit)


async def submit_manual_keys(
    deps: DeliveryDeps, seller_id: str, delivery_id: str, keys: Sequence[str], request_id: str
) -> tuple[str, list[str]]:
    """The seller hands over the keys of a manual order: returns the order id
    and the ids the keys got."""
    task = await deps.manual_tasks.get(delivery_id)
    if task is None:
        raise NotFound("delivery_not_found", "No manual delivery with this id is yours.")
    now = deps.clock()
    secrets = task.accept_keys(seller_id, keys, now)
    order = task.order
    delivery = await deps.deliveries.get(delivery_id) or Delivery.for_order(order)
    if delivery.status is DeliveryStatus.FAILED:
        raise Conflict("sla_expired", "The delivery deadline has passed; the order is refunded.")
    if delivery.status is DeliveryStatus.DELIVERED:
        raise Conflict("already_delivered", "This order's keys were already submitted.")

    key_ids = [deps.new_id() for _ in secrets]
    entries = [
        _vault_entry(deps, order, key_id, secret, None, now)
        for key_id, secret in zip(key_ids, secrets, strict=True)
    ]
    await deps.vault.stash(entries)
    channels = await _channels_for(deps, order.buyer_id)
    concluded: Delivery | None = None
    try:
        concluded = await _conclude(
            deps,
            order,
            lambda d: d.deliver(order, key_ids, channels),
            _context(order.order_id, request_id),
        )
    finally:
        if concluded is None:
            # Lost the race, or the save failed: keep none of *these* secrets (a
            # concurrent winner's entries may still be hidden; they stay).
            await deps.vault.discard_hidden(delivery_id, among=key_ids)
    if concluded is None:
        raise Conflict("delivery_concluded", "The delivery was concluded meanwhile; reload it.")
    await deps.vault.publish(delivery_id, key_ids)
    await deps.manual_tasks.close(delivery_id, TaskStatus.DELIVERED, deps.clock())
    DELIVERY_OUTCOMES.labels(DeliveryMode.MANUAL.value, "delivered").inc()
    log.info(
        "order %s: seller delivered %d key(s) manually",
        order.order_id,
        len(key_ids),
        extra=_extra(order.order_id),
    )
    return order.order_id, key_ids


async def expire_overdue_manual_deliveries(deps: DeliveryDeps, *, batch: int = 100) -> int:
    """The SLA poller: fail every open manual delivery past its deadline."""
    now = deps.clock()
    expired = 0
    for task in await deps.manual_tasks.overdue(now, limit=batch):
        order = task.order
        detail = f"the seller did not deliver by {task.deadline.isoformat()}"

        def expire(delivery: Delivery, order: OrderFacts = order, detail: str = detail) -> None:
            delivery.fail(order, DeliveryFailure.MANUAL_SLA_EXPIRED, detail=detail)

        concluded = await _conclude(
            deps, order, expire, _context(order.order_id, f"manual-sla:{task.delivery_id}")
        )
        if concluded is None:
            # The seller got there first (and its request did not close the task).
            delivery = await deps.deliveries.get(task.delivery_id)
            status = (
                TaskStatus.DELIVERED
                if delivery is not None and delivery.status is DeliveryStatus.DELIVERED
                else TaskStatus.EXPIRED
            )
            await deps.manual_tasks.close(task.delivery_id, status, now)
            continue
        await deps.manual_tasks.close(task.delivery_id, TaskStatus.EXPIRED, now)
        DELIVERY_OUTCOMES.labels(DeliveryMode.MANUAL.value, "failed").inc()
        expired += 1
        log.warning(
            "order %s: manual delivery SLA expired",
            task.order.order_id,
            extra=_extra(task.order.order_id),
        )
    return expired


# -- effects of delivery's own events -----------------------------------------------------


async def announce_delivery(deps: DeliveryDeps, event: KeyDelivered) -> None:
    """`KeyDelivered` (delivery's own, from Kafka): the keys are visible in the
    vault, the buyer gets a site message and, if announced, a text."""
    await deps.vault.publish(event.delivery_id, event.key_ids)
    await deps.vault.discard_hidden(event.delivery_id, keep=event.key_ids)
    count = len(event.key_ids)
    await _tell_buyer(
        deps,
        SiteMessage(
            message_id=f"{event.delivery_id}:delivered",
            user_id=event.buyer_id,
            kind=MessageKind.KEYS_DELIVERED,
            title="Your keys have arrived",
            body=(
                f"{count} key(s) of order {event.order_id} are in your key vault. "
                "Open My keys to reveal them."
            ),
            order_id=event.order_id,
            created_at=deps.clock(),
        ),
        sms=(
            f"【Kami】订单 {event.order_id} 的 {count} 个卡密已放入您的卡密库，请登录查看。"
            if DeliveryChannel.SMS in event.channels
            else None
        ),
    )
    if event.mode is DeliveryMode.AUTO and event.key_ids:
        await confirm_if_issuer_vouches(deps, event)


async def confirm_if_issuer_vouches(deps: DeliveryDeps, event: KeyDelivered | KeyReplaced) -> bool:
    """Arrival confirmed automatically (issue 6): the product's issuer says
    every key the buyer now holds is valid (after a delivery, or after a
    replacement). Any other answer leaves the guarantee window to the buyer.
    Returns whether it confirmed."""
    delivery = await deps.deliveries.get(event.delivery_id)
    if delivery is None or delivery.arrival_confirmed or not delivery.key_ids:
        return False
    for key_id in delivery.key_ids:
        entry = await deps.vault.get(key_id)
        if entry is None or entry.voided:
            return False
        secret = deps.sealer.open(entry.sealed, context=entry.seal_context)
        if await deps.issuers.verify(entry.product_id, secret) is not Verdict.VALID:
            return False
    for _ in range(3):
        delivery = await deps.deliveries.get(event.delivery_id)
        if delivery is None or not delivery.confirm_arrival(event.buyer_id, "key_verification"):
            return False
        try:
            await deps.deliveries.save(
                delivery, _context(event.order_id, f"verified:{event.delivery_id}")
            )
        except ConcurrencyError:
            continue
        log.info("order %s: the issuer vouched for every key", event.order_id)
        return True
    return False


# -- replacement keys (after-sales) ----------------------------------------------------------


async def deliver_replacement(
    deps: DeliveryDeps, envelope: Envelope[ReplacementKeysAllocated]
) -> bool:
    """`ReplacementKeysAllocated` (inventory): the new keys go into the buyer's
    vault, sealed for the buyer, in place of the faulty ones, which are voided
    there (`KeyReplaced`). The order's money and saga do not change. Returns
    whether this call recorded the replacement (False for a repeat)."""
    event = envelope.payload
    record = await deps.orders.get(event.order_id)
    if record is None:
        raise UnknownOrder(f"a replacement for {event.order_id}, an order never seen here")
    if record.state is OrderState.REFUNDED:
        # Refunded meanwhile (a chargeback): the refund voided what it replaced.
        log.warning(
            "order %s was refunded; its replacement for ticket %s is not delivered",
            event.order_id,
            event.ticket_id,
            extra=_extra(event.order_id),
        )
        return False
    delivery = await deps.deliveries.get(delivery_id_for(event.order_id))
    if delivery is None or delivery.status is not DeliveryStatus.DELIVERED:
        raise ReplacementUndeliverable(f"order {event.order_id} has no delivery to replace keys of")
    order = record.facts(delivery.key_ids)
    if event.ticket_id not in delivery.replacements:
        await _stash_replacement(deps, order, event.key_ids)
    channels = await _channels_for(deps, order.buyer_id)
    context = _context(event.order_id, str(envelope.event_id), envelope.traceparent)
    recorded = False
    for _ in range(5):
        delivery = await deps.deliveries.get(order.delivery_id)
        assert delivery is not None
        try:
            recorded = delivery.replace_keys(
                order, event.ticket_id, event.replaced_key_ids, event.key_ids, channels
            )
        except Conflict as exc:
            await deps.vault.discard_hidden(order.delivery_id, among=event.key_ids)
            raise ReplacementUndeliverable(f"order {event.order_id}: {exc}") from exc
        if not recorded:
            break
        try:
            await deps.deliveries.save(delivery, context)
        except ConcurrencyError:
            continue  # the buyer confirmed arrival meanwhile: decide again
        break
    else:
        raise ConcurrencyError(f"delivery {order.delivery_id} kept changing under a replacement")
    await _show_replacement(deps, order, event.key_ids, event.replaced_key_ids)
    if recorded:
        log.info(
            "order %s: %d key(s) replaced for ticket %s",
            event.order_id,
            len(event.key_ids),
            event.ticket_id,
            extra=_extra(event.order_id),
        )
    return recorded


async def _stash_replacement(deps: DeliveryDeps, order: OrderFacts, key_ids: Sequence[str]) -> None:
    """Fetch the replacement keys' secrets from inventory and put them, hidden,
    in the buyer's vault. Raises `InventoryUnavailable` (retried) or
    `ReplacementUndeliverable`."""
    revealed = await deps.inventory.reveal(order.order_id, key_ids)
    secrets = {key.key_id: key for key in revealed.keys}
    withheld = [k for k in key_ids if k not in secrets]
    if withheld:
        statuses = sorted(
            {revealed.unavailable.get(k, UnavailableStatus.UNKNOWN) for k in withheld}
        )
        raise ReplacementUndeliverable(
            f"inventory withheld {len(withheld)} replacement key(s) of order {order.order_id}: "
            + ", ".join(status.value for status in statuses)
        )
    now = deps.clock()
    entries = [
        _vault_entry(deps, order, key_id, secrets[key_id].secret, secrets[key_id].expires_at, now)
        for key_id in key_ids
    ]
    taken = await deps.vault.stash(entries)
    if taken:
        # DESIGN §9 (1): a key already in another order's vault is never delivered again.
        log.error(
            "order %s: inventory allocated %d replacement key(s) delivered to another order",
            order.order_id,
            len(taken),
            extra=_extra(order.order_id),
        )
        await deps.vault.discard_hidden(order.delivery_id, among=key_ids)
        raise ReplacementUndeliverable("a replacement key was delivered to another order")


async def _show_replacement(
    deps: DeliveryDeps,
    order: OrderFacts,
    key_ids: Sequence[str],
    replaced_key_ids: Sequence[str],
) -> None:
    """The new keys visible in the vault, the faulty ones voided there. A new
    key whose hidden entry is gone (a replayed `KeyDelivered` cleared the
    delivery's hidden entries) is fetched and stashed again."""
    missing = [k for k in key_ids if await deps.vault.get(k) is None]
    if missing:
        await _stash_replacement(deps, order, missing)
    await deps.vault.publish(order.delivery_id, key_ids)
    await deps.vault.void(order.order_id, replaced_key_ids)


async def announce_replacement(deps: DeliveryDeps, event: KeyReplaced) -> None:
    """`KeyReplaced` (delivery's own, from Kafka): the new keys are visible and
    the faulty ones void in the vault, the buyer gets a site message and, if
    announced, a text; the issuer may now vouch for every key the buyer holds."""
    record = await deps.orders.get(event.order_id)
    if record is None or record.state is OrderState.REFUNDED:
        return
    await _show_replacement(deps, record.facts(), event.key_ids, event.replaced_key_ids)
    count = len(event.key_ids)
    await _tell_buyer(
        deps,
        SiteMessage(
            message_id=f"{event.delivery_id}:replaced:{event.ticket_id}",
            user_id=event.buyer_id,
            kind=MessageKind.KEY_REPLACED,
            title="Your replacement key has arrived",
            body=(
                f"{count} faulty key(s) of order {event.order_id} were replaced; the new "
                "key(s) are in your key vault. Open My keys to reveal them."
            ),
            order_id=event.order_id,
            created_at=deps.clock(),
        ),
        sms=(
            f"【Kami】订单 {event.order_id} 的 {count} 个问题卡密已更换，新卡密已放入您的卡密库。"
            if DeliveryChannel.SMS in event.channels
            else None
        ),
    )
    await confirm_if_issuer_vouches(deps, event)


async def announce_failure(deps: DeliveryDeps, event: DeliveryFailed) -> None:
    """`DeliveryFailed` (delivery's own): nothing of it stays in the vault; the
    buyer (and, for a missed SLA, the seller) hears why."""
    await deps.vault.discard_hidden(event.delivery_id)
    await deps.messages.post(
        SiteMessage(
            message_id=f"{event.delivery_id}:failed",
            user_id=event.buyer_id,
            kind=MessageKind.DELIVERY_FAILED,
            title="Your order could not be delivered",
            body=f"Order {event.order_id} could not be delivered; your payment is being refunded.",
            order_id=event.order_id,
            created_at=deps.clock(),
        )
    )
    if event.reason is DeliveryFailure.MANUAL_SLA_EXPIRED:
        await deps.messages.post(
            SiteMessage(
                message_id=f"{event.delivery_id}:sla-missed",
                user_id=event.seller_id,
                kind=MessageKind.DELIVERY_FAILED,
                title="A manual delivery missed its deadline",
                body=f"Order {event.order_id} was not delivered in time and is refunded.",
                order_id=event.order_id,
                created_at=deps.clock(),
            )
        )
    NOTIFICATIONS.labels("site").inc()


async def remind_of_delivery(deps: DeliveryDeps, event: TicketResolved) -> None:
    """After-sales answered "not received" by pointing to the vault: the buyer
    gets the delivery notification again (site message, and a text if the
    delivery was announced by text)."""
    if event.resolution is not Resolution.NOTIFICATION_RESENT:
        return
    order = await deps.orders.get(event.order_id)
    visible = await deps.vault.list_for(order.buyer_id, order_id=event.order_id) if order else []
    if order is None or not visible:
        log.warning("order %s: nothing in the vault to remind of", event.order_id)
        return
    await _tell_buyer(
        deps,
        SiteMessage(
            message_id=f"{event.ticket_id}:reminder",
            user_id=order.buyer_id,
            kind=MessageKind.DELIVERY_REMINDER,
            title="Your keys are in your key vault",
            body=(
                f"{len(visible)} key(s) of order {event.order_id} were delivered to your key "
                "vault. Open My keys to reveal them."
            ),
            order_id=event.order_id,
            created_at=deps.clock(),
        ),
        sms=f"【Kami】订单 {event.order_id} 的卡密已在您的卡密库中，请登录查看。",
    )


async def _tell_buyer(deps: DeliveryDeps, message: SiteMessage, *, sms: str | None) -> None:
    """A site message to the buyer, and the text `sms` (with the message's id,
    so a redelivery sends it once) to their phone when given and known."""
    await deps.messages.post(message)
    NOTIFICATIONS.labels("site").inc()
    if sms is None:
        return
    buyer = await deps.buyers.get(message.user_id)
    if buyer is not None and buyer.phone_masked:
        await deps.sms.send(message.message_id, message.user_id, buyer.phone_masked, sms)
        NOTIFICATIONS.labels("sms").inc()


async def notify_keys_blocked(deps: DeliveryDeps, event: KeysBlocked, event_id: str) -> None:
    """Inventory took keys of a seller's pool off sale: the seller hears why."""
    if event.reason not in (BlockReason.NEAR_EXPIRY, BlockReason.EXPIRED):
        return
    seller_id = await deps.offers.seller_of(event.offer_id)
    if seller_id is None:
        log.warning("keys of offer %s blocked, but its seller is unknown here", event.offer_id)
        return
    why = "expire soon" if event.reason is BlockReason.NEAR_EXPIRY else "have expired"
    await deps.messages.post(
        SiteMessage(
            message_id=f"{event_id}:blocked",
            user_id=seller_id,
            kind=MessageKind.KEYS_BLOCKED,
            title=f"{len(event.key_ids)} key(s) taken off sale",
            body=(
                f"{len(event.key_ids)} key(s) of offer {event.offer_id} {why} and were "
                f"blocked ({event.reason.value}); your stock dropped accordingly."
            ),
            order_id="",
            created_at=deps.clock(),
        )
    )
    NOTIFICATIONS.labels("site").inc()


# -- key verification (for after-sales) -----------------------------------------------------


async def verify_keys(
    deps: DeliveryDeps, service: str, order_id: str, key_ids: Sequence[str]
) -> list[tuple[str, Verdict]]:
    """What each key's issuer says about the order's delivered keys. The
    secrets are opened here and never leave delivery."""
    if service not in deps.verify_services:
        raise Forbidden("service_not_allowed", f"{service} may not verify keys.")
    verdicts: list[tuple[str, Verdict]] = []
    for key_id in dict.fromkeys(key_ids):
        entry = await deps.vault.get(key_id)
        if entry is None or entry.order_id != order_id or not entry.visible or entry.voided:
            # A voided key (refunded, or replaced) has no secret left to verify.
            raise NotFound("key_not_found", f"Key {key_id} was not delivered with {order_id}.")
        secret = deps.sealer.open(entry.sealed, context=entry.seal_context)
        verdicts.append((key_id, await deps.issuers.verify(entry.product_id, secret)))
    return verdicts


async def redact_keys(
    deps: DeliveryDeps, service: str, order_id: str, texts: Sequence[str]
) -> tuple[list[str], int]:
    """`texts` with the order's delivered keys replaced by their ids, and how
    many were found: a buyer may paste a key into a complaint, and after-sales
    must not store it (DESIGN §9.5). The secrets are opened here and never
    leave delivery; an order with nothing delivered has nothing to replace,
    and a voided key (shredded) is no longer known."""
    if service not in deps.verify_services:
        raise Forbidden("service_not_allowed", f"{service} may not ask about keys.")
    if await deps.orders.get(order_id) is None:
        raise NotFound("order_not_found", f"There is no order {order_id} here.")
    delivery = await deps.deliveries.get(delivery_id_for(order_id))
    secrets: dict[str, CardSecret] = {}
    for key_id in delivery.key_ids if delivery is not None else ():
        entry = await deps.vault.get(key_id)
        # A voided key's ciphertext is shredded: nothing is left to recognise it by.
        if entry is not None and entry.order_id == order_id and not entry.voided:
            secrets[key_id] = deps.sealer.open(entry.sealed, context=entry.seal_context)
    cleared: list[str] = []
    found = 0
    for text in texts:
        text, n = redact_secrets(text, secrets)
        cleared.append(text)
        found += n
    return cleared, found


# The services that may fetch an order's plaintext keys for the keys' owner:
# the reseller service, for the orders a reseller placed (issue 15).
KEY_FETCH_SERVICES = frozenset({"reseller"})


async def fetch_order_keys(
    deps: DeliveryDeps, service: str, owner_id: str, order_id: str
) -> list[tuple[VaultEntry, CardSecret]]:
    """The plaintext of one order's keys in `owner_id`'s vault, for a service
    acting for that owner; audited as an export by the owner through `service`."""
    if service not in KEY_FETCH_SERVICES:
        raise Forbidden("service_not_allowed", f"{service} may not fetch keys.")
    rows = await export_keys(
        deps,
        owner_id,
        export_format="service",
        order_id=order_id,
        limit=1000,
        client=f"service:{service}",
    )
    if not rows:
        raise NotFound("order_not_found", f"No keys of {order_id} are in this owner's vault.")
    return rows


# -- the buyer ----------------------------------------------------------------------------


async def confirm_arrival(
    deps: DeliveryDeps, buyer_id: str, order_id: str, request_id: str
) -> bool:
    """The buyer confirms the keys arrived (`ArrivalConfirmed`). Returns False
    when it was already confirmed."""
    order = await deps.orders.get(order_id)
    if order is None or order.buyer_id != buyer_id:
        raise NotFound("order_not_found", "No order with this id is yours.")
    if order.state is OrderState.REFUNDED:
        raise Conflict("order_refunded", "This order was refunded.")
    if order.state is OrderState.COMPLETED:
        raise Conflict("order_completed", "This order is already completed.")
    for _ in range(3):
        delivery = await deps.deliveries.get(delivery_id_for(order_id))
        if delivery is None:
            raise Conflict("not_delivered", "The keys have not been delivered yet.")
        if not delivery.confirm_arrival(buyer_id):
            return False
        try:
            await deps.deliveries.save(delivery, _context(order_id, request_id))
        except ConcurrencyError:
            continue
        return True
    raise Conflict("busy", "The delivery is changing; try again.")


async def list_vault(
    deps: DeliveryDeps, owner_id: str, *, order_id: str | None, limit: int
) -> list[VaultEntry]:
    return await deps.vault.list_for(owner_id, order_id=order_id, limit=limit)


async def reveal_key(
    deps: DeliveryDeps, owner_id: str, key_id: str, *, client: str | None
) -> tuple[VaultEntry, CardSecret]:
    """The plaintext of one of the caller's keys; the look is audited first."""
    entry = await deps.vault.get(key_id)
    if entry is None or entry.owner_id != owner_id or not entry.visible:
        raise NotFound("key_not_found", "No key with this id is in your vault.")
    if entry.voided:
        raise Gone("key_voided", "This key was voided (refunded, or replaced by another key).")
    secret = deps.sealer.open(entry.sealed, context=entry.seal_context)
    await deps.audit.record(
        RevealRecord(
            audit_id=deps.new_id(),
            user_id=owner_id,
            action="reveal",
            key_ids=(entry.key_id,),
            order_ids=(entry.order_id,),
            at=deps.clock(),
            client=client,
        )
    )
    PLAINTEXT_ACCESS.labels("reveal").inc()
    return entry, secret


async def export_keys(
    deps: DeliveryDeps,
    owner_id: str,
    *,
    export_format: str,
    order_id: str | None,
    limit: int,
    client: str | None,
) -> list[tuple[VaultEntry, CardSecret]]:
    """The plaintext of the caller's keys (all, or one order's), audited as one export."""
    entries = await deps.vault.list_for(owner_id, order_id=order_id, limit=limit)
    rows = [(e, deps.sealer.open(e.sealed, context=e.seal_context)) for e in entries]
    if rows:
        await deps.audit.record(
            RevealRecord(
                audit_id=deps.new_id(),
                user_id=owner_id,
                action="export",
                key_ids=tuple(e.key_id for e in entries),
                order_ids=tuple(dict.fromkeys(e.order_id for e in entries)),
                at=deps.clock(),
                export_format=export_format,
                client=client,
            )
        )
        PLAINTEXT_ACCESS.labels("export").inc()
    return rows
