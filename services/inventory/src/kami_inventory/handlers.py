"""What inventory does: load, decide, save.

Key states live in the key store, where every move is decided for one key
generation exactly once (`KeyStore.move`). The pool's events are appended to
its stream (`inventory.pool`, id = offer id) after the moves, carrying the
consumed message's tracking key, so a redelivered message changes nothing and
announces nothing twice. Every handler can be run again from the top after a
crash at any point: each operation has an id (`op`), a move already made by
that operation counts as made, and the event lists the keys the operation
moved (`KeyStore.moved_by`), which no later retry can change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from uuid import uuid4
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag

from kami_events.catalogue.aftersales import ReplacementApproved
from kami_events.catalogue.catalog import (
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.inventory import (
    BlockReason,
    KeysBlocked,
    KeysReleased,
    KeysSold,
    KeysVoided,
    PoolEvent,
    ReleaseReason,
    ReplacementFailure,
    ReservationFailure,
    VoidReason,
)
from kami_events.catalogue.ordering import (
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderRefundRequested,
)
from kami_events.clock import Clock
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.store import (
    AlreadyProcessed,
    CommitContext,
    ConcurrencyError,
    EventStore,
    Tracking,
)
from kami_inventory.adapters.crypto import KeyCipher, KeyRing
from kami_inventory.domain import keys as transitions
from kami_inventory.domain.imports import (
    FileFormat,
    ImportReport,
    ImportRules,
    KeyLine,
    RejectedLine,
    Rejection,
    key_id_for,
    read_key_file,
)
from kami_inventory.domain.keys import KeyStatus, PoolKey, Transition, secret_hint
from kami_inventory.domain.offers import (
    NotAnAutoDeliveryOffer,
    Offer,
    Product,
    offer_for_seller,
    refusal,
)
from kami_inventory.domain.replacements import Replacement, replacement_refusal
from kami_inventory.domain.reservations import Reservation, ReservationPolicy, void_reason_for
from kami_inventory.domain.stock import StockLevels
from kami_inventory.metrics import KEY_REVEALS, KEYS_IMPORTED, REPLACEMENTS, RESERVATIONS
from kami_inventory.ports import (
    ImportLog,
    ImportRecord,
    KeyStore,
    NewKey,
    OfferDirectory,
    PendingWork,
    ReplacementBook,
    ReservationBook,
    RevealAudit,
    RevealRecord,
    SealedKey,
    StockBook,
    WorkJournal,
    WorkKind,
)
from kami_inventory.settings import InventorySettings

log = logging.getLogger(__name__)

POOL = PoolEvent.aggregate_type
# Appends to a busy pool race each other; each retry re-reads the version and
# re-counts the stock, so the last StockChanged always counts every move.
MAX_COMMIT_ATTEMPTS = 60


@dataclass(frozen=True)
class PoolRules:
    max_import_keys: int
    max_key_length: int
    timezone: tzinfo
    default_validity: timedelta
    reservation: ReservationPolicy
    stale_after: timedelta
    reveal_services: frozenset[str]

    @classmethod
    def from_settings(cls, settings: InventorySettings) -> PoolRules:
        return cls(
            max_import_keys=settings.inventory_max_import_keys,
            max_key_length=settings.inventory_max_key_length,
            timezone=ZoneInfo(settings.inventory_seller_timezone),
            default_validity=settings.default_key_validity,
            reservation=ReservationPolicy(
                grace=settings.reservation_grace, expiry_margin=settings.expiry_margin
            ),
            stale_after=timedelta(seconds=settings.inventory_stale_work_seconds),
            reveal_services=frozenset(settings.inventory_reveal_services),
        )


@dataclass
class Inventory:
    """Everything the handlers work with: real adapters in the service, fakes in
    unit tests."""

    store: EventStore
    keys: KeyStore
    offers: OfferDirectory
    imports: ImportLog
    reservations: ReservationBook
    work: WorkJournal
    audit: RevealAudit
    stock_book: StockBook
    replacements: ReplacementBook
    keyring: KeyRing
    rules: PoolRules
    clock: Clock
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    @property
    def cipher(self) -> KeyCipher:
        return self.keyring.cipher


# --- committing a pool's events ------------------------------------------------


async def _commit(
    inv: Inventory,
    offer_id: str,
    events: Sequence[PoolEvent],
    context: CommitContext,
    tracking: Tracking | None,
    *,
    with_stock: bool = True,
    releasing: int = 0,
) -> list[Envelope[Event]]:
    """Append `events` (and the pool's fresh `StockChanged`) to the pool's stream.

    `releasing` keys are still reserved on their documents but go back to the
    pool with these events (held moves, written after the commit).
    Raises `AlreadyProcessed` if `tracking`'s message already committed them.
    """
    for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
        version = await inv.store.last_version(POOL, offer_id)
        batch: list[Event] = list(events)
        # By state only: `expired` changes with time, not with commits (the
        # keys gauge counts it for all pools at once).
        stock = await inv.keys.live(offer_id) if with_stock else None
        if stock is not None:
            stock = stock.released(releasing)
            batch.append(stock.changed(offer_id))
        try:
            envelopes = await inv.store.append(POOL, offer_id, version, batch, context, tracking)
        except ConcurrencyError:
            if attempt == MAX_COMMIT_ATTEMPTS:
                raise
            # Jitter spreads the racers out; it is not security-relevant.
            await inv.sleep(random.uniform(0, 0.005 * min(attempt, 20)))  # noqa: S311
            continue
        if stock is not None:
            # For the keys gauge; a crash right here leaves the counts one
            # commit behind until the pool's next commit.
            await inv.stock_book.record(offer_id, envelopes[-1].aggregate_version, stock)
        return envelopes
    raise AssertionError("unreachable")


async def _move_all(
    inv: Inventory,
    offer_id: str,
    key_ids: Collection[str],
    transition: Transition,
    op: str,
    *,
    write: bool = True,
) -> list[str]:
    """Move every key of `key_ids` in `offer_id`'s pool that `transition` allows;
    returns the ids `op` has moved, in this attempt or an earlier one.

    An operation only ever moves the keys its message names, so a crashed
    earlier attempt left its unwritten moves on these keys (written while
    reading them, `settle`), and when this attempt moves every one of them
    there is nothing else `op` can have moved: only then is `moved_by` skipped.
    With `write=False` the moves are held (`MongoKeyStore.move`), the caller
    writes them with `resume(op)`."""
    wanted = list(dict.fromkeys(key_ids))
    moved: list[str] = []
    for key in await inv.keys.get(wanted, settle=op):  # never writes held moves
        allowed = key.offer_id == offer_id and transition.allows(key)
        if allowed and await inv.keys.move(key, transition, op, write=write):
            moved.append(key.key_id)
    if len(moved) == len(wanted):
        return sorted(moved)
    return await inv.keys.moved_by(op)


# --- offers and products (catalog's events) ------------------------------------


async def record_offer_listed(event: OfferListed, version: int, inv: Inventory) -> None:
    await inv.offers.record_offer(
        offer_id=event.offer_id,
        seller_id=event.seller_id,
        product_id=event.product_id,
        version=version,
        delivery_mode=event.delivery_mode,
        listed=True,
    )


async def record_offer_delisted(event: OfferDelisted, version: int, inv: Inventory) -> None:
    await inv.offers.record_offer(
        offer_id=event.offer_id,
        seller_id=event.seller_id,
        product_id=event.product_id,
        version=version,
        listed=False,
    )


async def record_offer_price_changed(
    event: OfferPriceChanged, version: int, inv: Inventory
) -> None:
    # The price is not inventory's business, but the event still names the owner.
    await inv.offers.record_offer(
        offer_id=event.offer_id,
        seller_id=event.seller_id,
        product_id=event.product_id,
        version=version,
    )


async def record_product(event: ProductPublished, version: int, inv: Inventory) -> None:
    validity = timedelta(days=event.validity_days) if event.validity_days else None
    await inv.offers.record_product(Product(event.product_id, validity), version)


# --- imports -------------------------------------------------------------------


@dataclass(frozen=True)
class ImportKeys:
    seller_id: str
    offer_id: str
    import_id: str
    file_format: FileFormat
    content: str = field(repr=False)
    # The expiry of keys that carry none (every TXT line, empty CSV cells).
    expires_at: datetime | None = None


class ImportIdReused(Exception):
    """The import id was used before for a different file or by another seller."""


class EmptyImport(Exception):
    """The file has no lines."""


IMPORT_CONSUMER = "inventory-import"


async def import_keys(cmd: ImportKeys, inv: Inventory) -> tuple[ImportReport, bool]:
    """Import a seller's key file; returns the report and whether it is the
    stored report of an earlier request with the same import id."""
    offer = offer_for_seller(await inv.offers.get(cmd.offer_id), cmd.offer_id, cmd.seller_id)
    if offer.delivery_mode is DeliveryMode.MANUAL:
        raise NotAnAutoDeliveryOffer(cmd.offer_id)
    digest = inv.cipher.digest(
        cmd.file_format.value,
        cmd.expires_at.isoformat() if cmd.expires_at else "",
        cmd.content,
    )
    earlier = await inv.imports.find(cmd.offer_id, cmd.import_id)
    if earlier is not None:
        _same_upload(earlier, cmd, digest)
        if earlier.report is not None:
            return earlier.report, True

    now = inv.clock()
    read = read_key_file(
        cmd.content, cmd.file_format, await _import_rules(cmd, offer, now, inv), now
    )
    if not read.accepted and not read.rejected:
        raise EmptyImport(cmd.offer_id)
    record = await inv.imports.begin(
        ImportRecord(cmd.offer_id, cmd.import_id, cmd.seller_id, digest, started_at=now)
    )
    _same_upload(record, cmd, digest)

    imported, duplicates = await _store_keys(cmd, read.accepted, now, inv)
    report = ImportReport(
        import_id=cmd.import_id,
        offer_id=cmd.offer_id,
        file_format=cmd.file_format,
        imported=len(imported),
        rejected_lines=tuple(sorted([*read.rejected, *duplicates], key=lambda r: r.line)),
        earliest_expires_at=min((line.expires_at for line in imported), default=None),
    )
    # AlreadyProcessed: an earlier attempt got this far before it was interrupted.
    with contextlib.suppress(AlreadyProcessed):
        await _commit(
            inv,
            cmd.offer_id,
            [report.event(cmd.seller_id, offer.product_id)],
            CommitContext(correlation_id=cmd.import_id),
            Tracking(IMPORT_CONSUMER, f"{cmd.offer_id}/{cmd.import_id}"),
            with_stock=bool(imported),
        )
    await inv.imports.complete(cmd.offer_id, cmd.import_id, report)
    KEYS_IMPORTED.inc(len(imported))
    log.info(
        "import %s into offer %s: %d imported, %d duplicates, %d rejected",
        cmd.import_id,
        cmd.offer_id,
        report.imported,
        report.duplicates,
        report.rejected,
        extra={"correlation_id": cmd.import_id},
    )
    return report, False


def _same_upload(record: ImportRecord, cmd: ImportKeys, digest: str) -> None:
    if record.seller_id != cmd.seller_id or record.digest != digest:
        raise ImportIdReused(cmd.import_id)


async def _import_rules(
    cmd: ImportKeys, offer: Offer, now: datetime, inv: Inventory
) -> ImportRules:
    if cmd.expires_at is not None:
        default_expiry = cmd.expires_at
    else:
        product = await inv.offers.product(offer.product_id)
        validity = product.validity if product and product.validity else None
        default_expiry = now + (validity or inv.rules.default_validity)
    return ImportRules(
        max_keys=inv.rules.max_import_keys,
        max_key_length=inv.rules.max_key_length,
        timezone=inv.rules.timezone,
        default_expires_at=default_expiry,
    )


async def _store_keys(
    cmd: ImportKeys, lines: Sequence[KeyLine], now: datetime, inv: Inventory
) -> tuple[list[KeyLine], list[RejectedLine]]:
    """Seal and insert the accepted lines; returns the lines now in the pool
    and those whose key the pool already held."""
    key_ids = {line.line: key_id_for(cmd.offer_id, cmd.import_id, line.line) for line in lines}
    fingerprints = {line.line: inv.cipher.fingerprint(line.secret) for line in lines}
    holders = await inv.keys.holders(cmd.offer_id, fingerprints.values())
    fresh: list[KeyLine] = []
    duplicates: list[RejectedLine] = []
    for line in lines:
        holder = holders.get(fingerprints[line.line])
        # A key held under this line's own id was inserted by an earlier try.
        if holder is not None and holder != key_ids[line.line]:
            duplicates.append(_duplicate_in_pool(line))
        else:
            fresh.append(line)
    if not fresh:
        return [], duplicates

    data_key = await inv.keyring.data_key(cmd.offer_id, create=True)
    assert data_key is not None  # created if missing
    await inv.keys.add(
        [
            NewKey(
                key_id=key_ids[line.line],
                offer_id=cmd.offer_id,
                seller_id=cmd.seller_id,
                import_id=cmd.import_id,
                line=line.line,
                fingerprint=fingerprints[line.line],
                sealed=inv.cipher.seal(data_key, cmd.offer_id, key_ids[line.line], line.secret),
                expires_at=line.expires_at,
                imported_at=now,
            )
            for line in fresh
        ]
    )
    # A concurrent import may have inserted the same key first.
    present = await inv.keys.present([key_ids[line.line] for line in fresh])
    imported = [line for line in fresh if key_ids[line.line] in present]
    duplicates += [_duplicate_in_pool(line) for line in fresh if key_ids[line.line] not in present]
    return imported, duplicates


def _duplicate_in_pool(line: KeyLine) -> RejectedLine:
    return RejectedLine(line.line, Rejection.DUPLICATE_IN_POOL, "the pool already holds this key")


async def import_report(
    seller_id: str, offer_id: str, import_id: str, inv: Inventory
) -> ImportReport | None:
    offer_for_seller(await inv.offers.get(offer_id), offer_id, seller_id)
    record = await inv.imports.find(offer_id, import_id)
    if record is None or record.seller_id != seller_id:
        return None
    return record.report


# --- the purchase saga ---------------------------------------------------------


async def reserve_for_order(
    order: OrderPlaced, inv: Inventory, context: CommitContext, tracking: Tracking | None
) -> Reservation | None:
    """Answer an `OrderPlaced`: hold `quantity` keys for it, all or none, and
    announce `KeyReserved` or `KeyReservationFailed`. Manual offers hold no keys."""
    if order.delivery_mode is DeliveryMode.MANUAL:
        return None
    # The first attempt for an order finds nothing of an earlier one to pick up
    # or put back, and skips those reads (each one reads the whole pool on FerretDB).
    # Every decision follows an attempt's insert, so the attempt that inserts
    # first cannot find one either: only a later attempt looks.
    first = await inv.reservations.begin_attempt(order.order_id)
    reservation = None if first else await inv.reservations.find(order.order_id)
    if reservation is None:
        reservation = await _reserve(order, inv, first_attempt=first)
        RESERVATIONS.labels(reservation.failure.value if reservation.failure else "reserved").inc()
    put_back: list[str] = []
    if not (first and reservation.succeeded):
        await _put_back_all_but(reservation, inv)
        # A failure after taking keys and putting them back still moved them, and
        # the count it announces covers any race with other orders' moves.
        put_back = await inv.keys.moved_by(_put_back_op(order.order_id))
    await _commit(
        inv,
        order.offer_id,
        [reservation.event()],
        context,
        tracking,
        with_stock=reservation.succeeded or bool(put_back),
    )
    return reservation


async def _reserve(order: OrderPlaced, inv: Inventory, *, first_attempt: bool) -> Reservation:
    offer = await inv.offers.get(order.offer_id)
    failure = refusal(offer, order)
    if failure is not None:
        stock = await inv.keys.live(order.offer_id)
        return await inv.reservations.decide(
            Reservation.failed(
                order.order_id, order.offer_id, order.quantity, failure, stock.available
            )
        )

    policy = inv.rules.reservation
    until = policy.held_until(order.payment_deadline)
    expiring_after = policy.sellable_after(inv.clock(), until)
    op = f"reserve:{order.order_id}"
    held: list[str] = []
    if not first_attempt:
        await inv.keys.resume(op)
        # Keys an interrupted attempt already took count towards the order.
        held = [k.key_id for k in await inv.keys.of_order(order.order_id, KeyStatus.RESERVED)]
    tried = set(held)
    take = transitions.reserve(order.order_id, until)
    while len(held) < order.quantity:
        missing = order.quantity - len(held)
        # A few more than needed, so that losing a race for one key does not
        # cost another query.
        batch = await inv.keys.available(order.offer_id, expiring_after, tried, missing + 8)
        if not batch:
            break
        for key in batch:
            tried.add(key.key_id)
            if await inv.keys.move(key, take, op):
                held.append(key.key_id)
                if len(held) == order.quantity:
                    break

    if len(held) >= order.quantity:
        decision = Reservation.held(
            order.order_id, order.offer_id, tuple(held[: order.quantity]), until
        )
    else:
        # All or nothing: what was taken goes back before the failure is recorded.
        await _put_back_all_but(
            Reservation.failed(
                order.order_id, order.offer_id, order.quantity, ReservationFailure.OUT_OF_STOCK, 0
            ),
            inv,
        )
        stock = await inv.keys.live(order.offer_id)
        decision = Reservation.failed(
            order.order_id,
            order.offer_id,
            order.quantity,
            ReservationFailure.OUT_OF_STOCK,
            stock.available,
        )
    return await inv.reservations.decide(decision)


async def _put_back_all_but(reservation: Reservation, inv: Inventory) -> None:
    """Release keys held for the order that its recorded reservation does not
    name: those of a failed attempt, or of a concurrent duplicate attempt."""
    keep = set(reservation.key_ids)
    put_back = transitions.release(reservation.order_id)
    op = _put_back_op(reservation.order_id)
    for key in await inv.keys.of_order(reservation.order_id, KeyStatus.RESERVED):
        if key.key_id not in keep:
            await inv.keys.move(key, put_back, op)


def _put_back_op(order_id: str) -> str:
    return f"put-back:{order_id}"


async def release_for_cancelled_order(
    order: OrderCancelled, inv: Inventory, context: CommitContext, tracking: Tracking | None
) -> list[str]:
    """Return the cancelled order's reserved keys to the pool (`KeysReleased`).

    The only move that hands a key on to someone else, so it is announced
    before it is written: the release is claimed (held), `KeysReleased`
    committed, and only then do the keys read available. Written first, a
    crash before the commit let another order reserve a key whose release
    was announced after that order's `KeyReserved`."""
    if not order.release_key_ids:
        return []
    op = f"release:{order.order_id}"
    released = await _move_all(
        inv,
        order.offer_id,
        order.release_key_ids,
        transitions.release(order.order_id),
        op,
        write=False,
    )
    if released:
        event = KeysReleased(
            offer_id=order.offer_id,
            order_id=order.order_id,
            key_ids=released,
            reason=ReleaseReason.ORDER_CANCELLED,
        )
        # The released keys whose documents still hold them for the order.
        unwritten = {k.key_id for k in await inv.keys.of_order(order.order_id, KeyStatus.RESERVED)}
        releasing = len(unwritten.intersection(released))
        try:
            await _commit(inv, order.offer_id, [event], context, tracking, releasing=releasing)
        except AlreadyProcessed:
            await inv.keys.resume(op)  # committed by an attempt that stopped right after
            raise
        await inv.keys.resume(op)
    return released


async def sell_for_paid_order(
    order: OrderPaid, inv: Inventory, context: CommitContext, tracking: Tracking | None
) -> list[str]:
    """The paid order's reserved keys are sold (`KeysSold`)."""
    if not order.key_ids:
        return []
    sold = await _move_all(
        inv,
        order.offer_id,
        order.key_ids,
        transitions.sell(order.order_id),
        f"sell:{order.order_id}",
    )
    if sold:
        event = KeysSold(offer_id=order.offer_id, order_id=order.order_id, key_ids=sold)
        await _commit(inv, order.offer_id, [event], context, tracking)
    return sold


async def void_for_refund(
    request: OrderRefundRequested,
    inv: Inventory,
    context: CommitContext,
    tracking: Tracking | None,
) -> list[str]:
    """The refunded order's keys named in `void_key_ids`, and the keys that
    replaced any of them, are never sold again."""
    if not request.void_key_ids:
        return []
    reason = void_reason_for(request.reason)
    voided = await _move_all(
        inv,
        request.offer_id,
        await _with_replacements(request.void_key_ids, inv),
        transitions.void_for_order(request.order_id, reason),
        f"void:{request.order_id}:{request.refund_id}",
    )
    if voided:
        event = KeysVoided(
            offer_id=request.offer_id, key_ids=voided, reason=reason, order_id=request.order_id
        )
        await _commit(inv, request.offer_id, [event], context, tracking)
    return voided


async def _with_replacements(key_ids: Sequence[str], inv: Inventory) -> list[str]:
    """`key_ids` and every key that replaced one of them, however many times
    over: ordering names the keys it knows (a chargeback voids "the order's
    keys"), while a replacement put another key in the buyer's hands."""
    found = list(dict.fromkeys(key_ids))
    frontier = list(found)
    while frontier:
        following = []
        for key_id in frontier:
            successor = await inv.replacements.replacing(key_id)
            if successor is not None and successor not in found:
                found.append(successor)
                following.append(successor)
        frontier = following
    return found


# --- replacing faulty keys (after-sales) -----------------------------------------


async def replace_keys(
    request: ReplacementApproved,
    inv: Inventory,
    context: CommitContext,
    tracking: Tracking | None,
) -> Replacement:
    """Answer a `ReplacementApproved`: sell one available key of the offer to
    the order for each faulty key, all or none, and void the faulty keys
    (`ReplacementKeysAllocated` + `KeysVoided`), or say why not
    (`KeyReplacementFailed`: after-sales refunds instead). Each key is taken
    by a claim, as a reservation's are, so no other order can have it."""
    replacement = await inv.replacements.find(request.ticket_id)
    if replacement is None:
        replacement = await _allocate(request, inv)
        REPLACEMENTS.labels(replacement.failure.value if replacement.failure else "allocated").inc()
    put_back = await _put_back_unused(replacement, inv)
    events: list[PoolEvent] = [replacement.event()]
    if replacement.succeeded:
        await _move_all(
            inv,
            request.offer_id,
            replacement.key_ids,
            transitions.sell_replacement(request.ticket_id, request.order_id),
            f"replace-sell:{request.ticket_id}",
        )
        voided = await _move_all(
            inv,
            request.offer_id,
            replacement.replaced_key_ids,
            transitions.void_for_order(request.order_id, VoidReason.CLAIM_UPHELD),
            f"replace-void:{request.ticket_id}",
        )
        await inv.replacements.link(replacement)
        if voided:
            events.append(
                KeysVoided(
                    offer_id=request.offer_id,
                    key_ids=voided,
                    reason=VoidReason.CLAIM_UPHELD,
                    order_id=request.order_id,
                )
            )
    await _commit(
        inv,
        request.offer_id,
        events,
        context,
        tracking,
        with_stock=replacement.succeeded or put_back,
    )
    log.info(
        "ticket %s on order %s: replacement %s",
        request.ticket_id,
        request.order_id,
        "allocated" if replacement.succeeded else replacement.failure,
        extra={"correlation_id": request.order_id},
    )
    return replacement


async def _allocate(request: ReplacementApproved, inv: Inventory) -> Replacement:
    offer = await inv.offers.get(request.offer_id)
    faulty = await inv.keys.get(request.key_ids)
    failure = replacement_refusal(offer, request, faulty)
    if failure is not None:
        stock = await inv.keys.live(request.offer_id)
        return await inv.replacements.decide(Replacement.failed(request, failure, stock.available))

    now = inv.clock()
    wanted = len(request.key_ids)
    op = _take_op(request.ticket_id)
    await inv.keys.resume(op)
    # Keys an interrupted attempt already took count towards the replacement.
    held = [
        k.key_id
        for k in await inv.keys.get(await inv.keys.moved_by(op))
        if k.status is KeyStatus.RESERVED
        and k.order_id == transitions.replacement_holder(request.ticket_id)
    ]
    tried = set(held) | set(request.key_ids)
    # Held only for as long as this handler runs; then sold, or put back.
    take = transitions.hold_for_replacement(request.ticket_id, now + inv.rules.stale_after)
    expiring_after = inv.rules.reservation.sellable_after(now, now)
    while len(held) < wanted:
        batch = await inv.keys.available(
            request.offer_id, expiring_after, tried, wanted - len(held) + 8
        )
        if not batch:
            break
        for key in batch:
            tried.add(key.key_id)
            if await inv.keys.move(key, take, op):
                held.append(key.key_id)
                if len(held) == wanted:
                    break

    if len(held) >= wanted:
        decision = Replacement.allocated(request, tuple(held[:wanted]))
    else:
        stock = await inv.keys.live(request.offer_id)
        decision = Replacement.failed(
            request,
            ReplacementFailure.OUT_OF_STOCK,
            # What this attempt holds goes back (`_put_back_unused`): count it as available.
            stock.available + len(held),
        )
    return await inv.replacements.decide(decision)


async def _put_back_unused(replacement: Replacement, inv: Inventory) -> bool:
    """Return keys held for the replacement that its recorded decision does not
    name (a failed or concurrent attempt); True if any went back."""
    keep = set(replacement.key_ids)
    holder = transitions.replacement_holder(replacement.ticket_id)
    put_back = transitions.release(holder)
    op = f"replace-put-back:{replacement.ticket_id}"
    await inv.keys.resume(op)
    for key in await inv.keys.get(await inv.keys.moved_by(_take_op(replacement.ticket_id))):
        if key.key_id not in keep and key.status is KeyStatus.RESERVED and key.order_id == holder:
            await inv.keys.move(key, put_back, op)
    return bool(await inv.keys.moved_by(op))


def _take_op(ticket_id: str) -> str:
    return f"replace:{ticket_id}"


# --- revealing keys to delivery ------------------------------------------------


class ServiceNotAllowed(Exception):
    """The calling service may not see keys' secrets."""


@dataclass(frozen=True)
class RevealedKey:
    key_id: str
    secret: str = field(repr=False)
    status: KeyStatus
    expires_at: datetime


@dataclass(frozen=True)
class WithheldKey:
    key_id: str
    # A key status, or `expired`, `not_in_order`, `unreadable`.
    status: str


@dataclass(frozen=True)
class Reveal:
    order_id: str
    revealed: tuple[RevealedKey, ...]
    withheld: tuple[WithheldKey, ...]


REVEALABLE = frozenset({KeyStatus.RESERVED, KeyStatus.SOLD})


async def reveal_keys(
    order_id: str, key_ids: Sequence[str], service: str, inv: Inventory
) -> Reveal:
    """The secrets of the order's keys that are reserved or sold and not
    expired; every other key is withheld with its status. Audited before any
    secret leaves."""
    if service not in inv.rules.reveal_services:
        raise ServiceNotAllowed(service)
    now = inv.clock()
    wanted = list(dict.fromkeys(key_ids))
    found = await inv.keys.get_sealed(wanted)
    states = {key.key_id: key for key, _ in found}
    sealed = {key.key_id: secret for key, secret in found}
    withheld: list[WithheldKey] = []
    candidates: list[PoolKey] = []
    for key_id in wanted:
        key = states.get(key_id)
        if key is None or key.order_id != order_id:
            withheld.append(WithheldKey(key_id, "not_in_order"))
        elif key.status not in REVEALABLE:
            withheld.append(WithheldKey(key_id, key.status.value))
        elif key.expired(now):
            withheld.append(WithheldKey(key_id, "expired"))
        else:
            candidates.append(key)

    revealed: list[RevealedKey] = []
    for key in candidates:
        secret = await _open(key, sealed.get(key.key_id), inv)
        if secret is None:
            withheld.append(WithheldKey(key.key_id, "unreadable"))
        else:
            revealed.append(RevealedKey(key.key_id, secret, key.status, key.expires_at))

    await inv.audit.record(
        RevealRecord(
            reveal_id=str(uuid4()),
            order_id=order_id,
            service=service,
            revealed=tuple(k.key_id for k in revealed),
            refused=tuple(k.key_id for k in withheld),
            at=now,
        )
    )
    KEY_REVEALS.labels("revealed").inc(len(revealed))
    KEY_REVEALS.labels("withheld").inc(len(withheld))
    log.info(
        "revealed %d key(s) of order %s to %s, withheld %d",
        len(revealed),
        order_id,
        service,
        len(withheld),
        extra={"correlation_id": order_id},
    )
    return Reveal(order_id, tuple(revealed), tuple(withheld))


async def _open(key: PoolKey, sealed: SealedKey | None, inv: Inventory) -> str | None:
    if sealed is None:
        return None
    data_key = await inv.keyring.data_key(key.offer_id)
    if data_key is None:
        log.error("offer %s has keys but no data key", key.offer_id)
        return None
    try:
        return inv.cipher.open(data_key, key.offer_id, key.key_id, sealed.sealed)
    except InvalidTag:
        log.error("key %s of offer %s fails authentication", key.key_id, key.offer_id)
        return None


# --- the seller's pool ---------------------------------------------------------


async def offers_of(seller_id: str, inv: Inventory) -> list[tuple[Offer, StockLevels]]:
    now = inv.clock()
    offers = await inv.offers.of_seller(seller_id)
    return [(offer, await inv.keys.stock(offer.offer_id, now)) for offer in offers]


async def keys_by_state(inv: Inventory) -> dict[str, StockLevels]:
    """Every pool's keys for the gauge: the live counts of its last commit,
    its sold, blocked and voided keys counted again if it committed since the
    last refresh (commits count only the live ones), and the keys past their
    expiry now (one command for all pools)."""
    levels: dict[str, StockLevels] = {}
    for offer_id, booked in (await inv.stock_book.all()).items():
        levels[offer_id] = booked.levels
        if booked.settled_behind:
            counted = await inv.keys.counts(offer_id)
            await inv.stock_book.record_settled(offer_id, booked.version, counted)
            levels[offer_id] = dataclasses.replace(
                booked.levels, sold=counted.sold, blocked=counted.blocked, voided=counted.voided
            )
    expired = await inv.keys.expired(inv.clock())
    return {
        offer_id: dataclasses.replace(
            levels.get(offer_id, StockLevels()), expired=expired.get(offer_id, 0)
        )
        for offer_id in sorted(levels.keys() | expired.keys())
    }


async def stock_of(seller_id: str, offer_id: str, inv: Inventory) -> StockLevels:
    offer_for_seller(await inv.offers.get(offer_id), offer_id, seller_id)
    return await inv.keys.stock(offer_id, inv.clock())


@dataclass(frozen=True)
class ListedKey:
    key: PoolKey
    hint: str | None


async def list_keys(
    seller_id: str,
    offer_id: str,
    inv: Inventory,
    *,
    status: KeyStatus | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[ListedKey]:
    offer_for_seller(await inv.offers.get(offer_id), offer_id, seller_id)
    page = await inv.keys.page(offer_id, status, after, limit)
    sealed = {s.key_id: s for s in await inv.keys.sealed([k.key_id for k in page])}
    listed = []
    for key in page:
        secret = await _open(key, sealed.get(key.key_id), inv)
        listed.append(ListedKey(key, secret_hint(secret) if secret else None))
    return listed


@dataclass(frozen=True)
class VoidKeys:
    seller_id: str
    offer_id: str
    key_ids: tuple[str, ...]
    request_id: str


class RequestIdReused(Exception):
    """The request id was used before for different keys."""


@dataclass(frozen=True)
class VoidOutcome:
    voided: tuple[str, ...]
    # Keys that were not voided: their status, or `not_found` (not in this pool).
    refused: tuple[WithheldKey, ...]


async def void_seller_keys(cmd: VoidKeys, inv: Inventory) -> VoidOutcome:
    """A seller voids available keys of its own pool (`KeysVoided{seller_voided}`)."""
    offer_for_seller(await inv.offers.get(cmd.offer_id), cmd.offer_id, cmd.seller_id)
    wanted = tuple(dict.fromkeys(cmd.key_ids))
    work = await inv.work.begin(
        PendingWork(
            op=f"seller-void:{cmd.offer_id}:{cmd.request_id}",
            kind=WorkKind.SELLER_VOID,
            offer_id=cmd.offer_id,
            key_ids=wanted,
            reason=VoidReason.SELLER_VOIDED.value,
            started_at=inv.clock(),
        )
    )
    if work.key_ids != wanted or work.offer_id != cmd.offer_id:
        raise RequestIdReused(cmd.request_id)
    voided = set(await _carry_out(work, inv))
    states = {k.key_id: k for k in await inv.keys.get(wanted)}
    refused = []
    for key_id in wanted:
        if key_id in voided:
            continue
        key = states.get(key_id)
        if key is None or key.offer_id != cmd.offer_id:
            refused.append(WithheldKey(key_id, "not_found"))
        else:
            refused.append(WithheldKey(key_id, key.status.value))
    return VoidOutcome(tuple(k for k in wanted if k in voided), tuple(refused))


WORK_CONSUMER = "inventory-work"


async def _carry_out(work: PendingWork, inv: Inventory) -> list[str]:
    """Make a journaled batch of moves and announce them; safe to run again."""
    transition = (
        transitions.void_by_seller()
        if work.kind is WorkKind.SELLER_VOID
        else transitions.block(BlockReason(work.reason))
    )
    moved = await _move_all(inv, work.offer_id, work.key_ids, transition, work.op)
    if moved:
        event: PoolEvent = (
            KeysVoided(offer_id=work.offer_id, key_ids=moved, reason=VoidReason(work.reason))
            if work.kind is WorkKind.SELLER_VOID
            else KeysBlocked(offer_id=work.offer_id, key_ids=moved, reason=BlockReason(work.reason))
        )
        with contextlib.suppress(AlreadyProcessed):
            await _commit(
                inv,
                work.offer_id,
                [event],
                CommitContext(correlation_id=work.op),
                Tracking(WORK_CONSUMER, work.op),
            )
    await inv.work.finish(work.op)
    return moved


# --- maintenance ---------------------------------------------------------------

EXPIRY_BATCH = 1000


async def block_expiring_keys(inv: Inventory) -> int:
    """Take keys that expire within the margin off sale (`KeysBlocked`)."""
    now = inv.clock()
    due = await inv.keys.expiring(now + inv.rules.reservation.expiry_margin, EXPIRY_BATCH)
    groups: dict[tuple[str, BlockReason], list[str]] = {}
    for key in due:
        reason = BlockReason.EXPIRED if key.expired(now) else BlockReason.NEAR_EXPIRY
        groups.setdefault((key.offer_id, reason), []).append(key.key_id)
    blocked = 0
    for (offer_id, reason), key_ids in groups.items():
        work = await inv.work.begin(
            PendingWork(
                op=f"block:{offer_id}:{uuid4()}",
                kind=WorkKind.BLOCK,
                offer_id=offer_id,
                key_ids=tuple(key_ids),
                reason=reason.value,
                started_at=now,
            )
        )
        blocked += len(await _carry_out(work, inv))
    return blocked


async def finish_interrupted_work(inv: Inventory) -> int:
    """Finish moves and journaled batches that a dead process left half done."""
    finished = await inv.keys.finish_stale_moves(inv.rules.stale_after)
    for work in await inv.work.stale(inv.clock() - inv.rules.stale_after, 100):
        log.warning("finishing interrupted %s %s", work.kind.value, work.op)
        await _carry_out(work, inv)
        finished += 1
    return finished


async def maintain(inv: Inventory) -> None:
    await finish_interrupted_work(inv)
    await block_expiring_keys(inv)
