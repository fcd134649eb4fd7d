"""Ordering's handlers: load the order, let it decide, save what it decided,
then bring its read models (summary, next deadline) up to date.

- `OrderPlacement` places orders idempotently (`POST /orders`);
- `PurchaseSaga` reacts to the other services' events (docs/saga.md) and
  fires due deadlines for the poller.

A read model is written after the commit, always from the order's full
state, so a crash in between is repaired by the next message or retry for
that order (the order then decides "duplicate" and the views are synced
again), and by the poller for deadlines.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from kami_events.catalogue.common import RefundSource
from kami_events.catalogue.inventory import ReleaseReason, ReservationFailure
from kami_events.catalogue.payment import PaymentFailure
from kami_events.clock import Clock
from kami_events.money import Money
from kami_events.repository import AggregateRepository
from kami_events.store import AlreadyProcessed, CommitContext, ConcurrencyError, Tracking
from kami_ordering import metrics
from kami_ordering.adapters.ports import (
    OfferCatalog,
    OrderRequest,
    OrderRequests,
    OrderViews,
    QuotaClaims,
    Settlements,
)
from kami_ordering.adapters.quotas import (
    ClaimResult,
    Quota,
    coupon_quota,
    flash_sale_quota,
)
from kami_ordering.adapters.repository import LoadedOrder, OrderRepository
from kami_ordering.domain.order import Decision, Order, OrderState, Outcome, SagaTimers
from kami_ordering.domain.promotions import Coupon, OfferPricing, OrderPrice, price_order
from kami_ordering.domain.terms import (
    PlacementRefused,
    RefusalKind,
    check_orderable,
    check_quantity,
    clean_buyer_fields,
)

log = logging.getLogger(__name__)

# How long the saga decides on an order as this process last wrote or read
# it, without asking the database (see `PurchaseSaga._advance`).
DECISION_TRUST_SECONDS = 60.0


# -- placing orders ------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceOrder:
    buyer_id: str
    idempotency_key: str
    offer_id: str
    quantity: int
    buyer_fields: dict[str, str]
    request_id: str
    # Set when another service minted the order's id (a reseller's order, issue 15).
    order_id: str | None = None
    coupon_code: str | None = None

    def fingerprint(self) -> str:
        """What makes two requests under one idempotency key the same request."""
        body: dict[str, object] = {
            "offer_id": self.offer_id,
            "quantity": self.quantity,
            "fields": self.buyer_fields,
        }
        if self.coupon_code is not None:
            body["coupon"] = self.coupon_code
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeyReused(Exception):
    """The buyer used an idempotency key again for a different request."""


@dataclass(frozen=True)
class Placed:
    loaded: LoadedOrder
    created: bool  # False: the same request again, answered with the same order


class OrderPlacement:
    def __init__(
        self,
        *,
        repository: OrderRepository,
        catalog: OfferCatalog,
        requests: OrderRequests,
        views: OrderViews,
        clock: Clock,
        timers: SagaTimers,
        pricing: AggregateRepository[OfferPricing],
        coupons: AggregateRepository[Coupon],
        quotas: QuotaClaims,
    ) -> None:
        self._repository = repository
        self._catalog = catalog
        self._pricing = pricing
        self._coupons = coupons
        self._quotas = quotas
        self._requests = requests
        self._views = views
        self._clock = clock
        self._timers = timers
        # offer id -> its running flash sale found sold out: (its quota, when
        # the sale ends, the refusal). While the quota's memo holds, orders
        # for the offer are refused before the catalog and pricing reads.
        self._sold_out: dict[str, tuple[str, datetime, str]] = {}

    async def place(self, command: PlaceOrder) -> Placed:
        """Place the order, or return the one this buyer's key already placed.

        Raises `PlacementRefused` (unknown or unavailable offer, bad quantity or
        buyer fields, suspended buyer) or `IdempotencyKeyReused`."""
        fingerprint = command.fingerprint()
        existing = await self._requests.find(command.buyer_id, command.idempotency_key)
        if existing is not None:
            return await self._replay(existing, fingerprint, command)

        now = self._clock()
        # Before the suspension read: at a flash sale's start most orders are
        # refused here, with no read at all (a suspended buyer is refused too).
        self._refuse_if_sold_out(command.offer_id, now)
        if await self._catalog.is_suspended(command.buyer_id, now):
            raise PlacementRefused(
                RefusalKind.FORBIDDEN, "buyer_suspended", "This account may not place orders."
            )
        offer = await self._catalog.offer(command.offer_id)
        product = await self._catalog.product(offer.product_id) if offer else None
        offer, product = check_orderable(offer, product, command.offer_id)
        check_quantity(offer, command.quantity)
        buyer_fields = clean_buyer_fields(product, command.buyer_fields)
        pricing = await self._pricing.get(offer.offer_id)
        coupon = None
        if command.coupon_code is not None:
            coupon = await self._coupons.get(command.coupon_code)
            if coupon is None:
                raise PlacementRefused(
                    RefusalKind.NOT_FOUND,
                    "coupon_not_found",
                    f"There is no coupon {command.coupon_code}.",
                )
        price = price_order(offer, command.quantity, pricing, coupon, product.category_id, now)

        order = Order.place(
            command.order_id or str(uuid4()),
            buyer_id=command.buyer_id,
            offer=offer,
            quantity=command.quantity,
            buyer_fields=buyer_fields,
            now=now,
            timers=self._timers,
            price=price,
        )
        quotas = await self._claim_quotas(order.id, command.buyer_id, price, command.offer_id)
        request = OrderRequest(
            buyer_id=command.buyer_id,
            idempotency_key=command.idempotency_key,
            fingerprint=fingerprint,
            order_id=order.id,
            events=order.pending_events,
        )
        try:
            recorded = await self._requests.claim(request)
        except BaseException:
            await self._release(quotas, order.id)
            raise
        if recorded.order_id != request.order_id:
            # A concurrent twin of this request recorded its order first.
            await self._release(quotas, order.id)
            return await self._replay(recorded, fingerprint, command)
        placed = await self._commit(recorded, command, created=True)
        metrics.ORDERS_PLACED.labels(order.delivery_mode.value).inc()
        return placed

    def _refuse_if_sold_out(self, offer_id: str, now: datetime) -> None:
        sold_out = self._sold_out.get(offer_id)
        if sold_out is None:
            return
        quota_id, ends_at, message = sold_out
        if now < ends_at and self._quotas.known_exhausted(quota_id):
            metrics.QUOTA_CLAIMS.labels("flash", ClaimResult.EXHAUSTED.value).inc()
            raise PlacementRefused(RefusalKind.EXHAUSTED, "flash_sale_sold_out", message)
        del self._sold_out[offer_id]

    async def _claim_quotas(
        self, order_id: str, buyer_id: str, price: OrderPrice, offer_id: str
    ) -> list[Quota]:
        """Take the flash sale's keys and the coupon's use for the order, or
        refuse it at once (409) and take nothing."""
        wanted: list[tuple[Quota, int, dict[ClaimResult, tuple[str, str]]]] = []
        if price.flash_sale is not None:
            sale = price.flash_sale
            wanted.append(
                (
                    flash_sale_quota(sale.flash_sale_id, sale.stock_cap, sale.per_buyer_limit),
                    price.quantity,
                    {
                        ClaimResult.BUYER_LIMIT: (
                            "flash_sale_buyer_limit",
                            f"You already hold the {sale.per_buyer_limit} key(s) a buyer may "
                            "get in this flash sale.",
                        ),
                        ClaimResult.EXHAUSTED: (
                            "flash_sale_sold_out",
                            f"All {sale.stock_cap} keys of this flash sale are taken.",
                        ),
                    },
                )
            )
        if price.coupon is not None:
            applied = price.coupon
            wanted.append(
                (
                    coupon_quota(applied.code, applied.total_limit, applied.per_buyer_limit),
                    1,
                    {
                        ClaimResult.BUYER_LIMIT: (
                            "coupon_buyer_limit",
                            f"You have used coupon {applied.code} as often as a buyer may "
                            f"({applied.per_buyer_limit}).",
                        ),
                        ClaimResult.EXHAUSTED: (
                            "coupon_exhausted",
                            f"Coupon {applied.code} has been used up ({applied.total_limit}).",
                        ),
                    },
                )
            )
        claimed: list[Quota] = []
        for quota, units, refusals in wanted:
            result = await self._quotas.claim(quota, buyer_id, order_id, units)
            if result is not ClaimResult.CLAIMED:
                await self._release(claimed, order_id)
                code, message = refusals[result]
                running = price.flash_sale
                if (
                    result is ClaimResult.EXHAUSTED
                    and running is not None
                    and quota.quota_id.startswith("flash:")
                ):
                    self._sold_out[offer_id] = (quota.quota_id, running.ends_at, message)
                raise PlacementRefused(RefusalKind.EXHAUSTED, code, message)
            claimed.append(quota)
        return claimed

    async def _release(self, quotas: list[Quota], order_id: str) -> None:
        for quota in quotas:
            await self._quotas.release(quota.quota_id, order_id)

    async def _replay(self, request: OrderRequest, fingerprint: str, command: PlaceOrder) -> Placed:
        if request.fingerprint != fingerprint:
            raise IdempotencyKeyReused(request.order_id)
        return await self._commit(request, command, created=False)

    async def _commit(self, request: OrderRequest, command: PlaceOrder, created: bool) -> Placed:
        # Idempotent: a no-op when the order's stream exists already.
        context = CommitContext(correlation_id=request.order_id, causation_id=command.request_id)
        await self._repository.append_new(request.order_id, request.events, context)
        loaded = await self._repository.load(request.order_id)
        assert loaded is not None  # appended just now, or earlier
        loaded = await sync_views(self._repository, self._views, self._timers, loaded, self._quotas)
        return Placed(loaded, created)


# -- the saga ---------------------------------------------------------------------------


class OrderNotFound(Exception):
    pass


class TransitionRefused(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class PurchaseSaga:
    """The orchestrator's reactions: one method per event of docs/saga.md."""

    def __init__(
        self,
        *,
        repository: OrderRepository,
        views: OrderViews,
        settlements: Settlements,
        clock: Clock,
        timers: SagaTimers,
        quotas: QuotaClaims | None = None,
    ) -> None:
        self._repository = repository
        self._views = views
        self._quotas = quotas
        self._settlements = settlements
        self._clock = clock
        self._timers = timers

    # inventory
    async def key_reserved(
        self, order_id: str, key_ids: list[str], expires_at: datetime, msg: Message
    ) -> Decision:
        return await self._advance(order_id, lambda o: o.reserve(key_ids, expires_at), msg)

    async def reservation_failed(
        self, order_id: str, reason: ReservationFailure, msg: Message
    ) -> Decision:
        return await self._advance(order_id, lambda o: o.fail_reservation(reason), msg)

    async def keys_released(
        self, order_id: str, key_ids: list[str], reason: ReleaseReason, msg: Message
    ) -> Decision:
        if reason is not ReleaseReason.RESERVATION_EXPIRED:
            return Decision(Outcome.IGNORED, "a release the saga asked for")
        return await self._advance(order_id, lambda o: o.expire_reservation(key_ids), msg)

    # payment
    async def payment_confirmed(
        self, order_id: str, payment_id: str, amount: Money, msg: Message
    ) -> Decision:
        now = self._clock()
        return await self._advance(
            order_id, lambda o: o.mark_paid(payment_id, amount, now, self._timers), msg
        )

    async def payment_failed(
        self,
        order_id: str,
        payment_id: str,
        reason: PaymentFailure,
        captured: Money,
        msg: Message,
    ) -> Decision:
        return await self._advance(
            order_id, lambda o: o.fail_payment(payment_id, reason, captured), msg
        )

    async def payment_reversed(
        self, order_id: str, payment_id: str, amount: Money, settled: bool, msg: Message
    ) -> Decision:
        settled = settled or await self._settlements.is_settled(order_id)
        return await self._advance(
            order_id, lambda o: o.reverse_payment(payment_id, amount, settled=settled), msg
        )

    async def payment_refunded(
        self, order_id: str, refund_id: str, amount: Money, source: RefundSource, msg: Message
    ) -> Decision:
        return await self._advance(
            order_id, lambda o: o.mark_refunded(refund_id, amount, source), msg
        )

    async def funds_settled(self, order_id: str, payment_id: str) -> None:
        await self._settlements.record(order_id, payment_id, self._clock())

    # delivery
    async def key_delivered(
        self, order_id: str, delivery_id: str, key_ids: list[str], msg: Message
    ) -> Decision:
        now = self._clock()
        return await self._advance(
            order_id, lambda o: o.mark_delivered(delivery_id, key_ids, now, self._timers), msg
        )

    async def delivery_failed(self, order_id: str, key_ids: list[str], msg: Message) -> Decision:
        settled = await self._settlements.is_settled(order_id)
        return await self._advance(
            order_id, lambda o: o.fail_delivery(key_ids, settled=settled), msg
        )

    async def arrival_confirmed(self, order_id: str, msg: Message) -> Decision:
        return await self._advance(order_id, lambda o: o.confirm_arrival(), msg)

    # aftersales
    async def compensation_approved(
        self,
        order_id: str,
        ticket_id: str,
        amount: Money,
        void_key_ids: list[str],
        msg: Message,
    ) -> Decision:
        settled = await self._settlements.is_settled(order_id)
        return await self._advance(
            order_id,
            lambda o: o.approve_compensation(ticket_id, amount, void_key_ids, settled=settled),
            msg,
        )

    async def claim_opened(self, order_id: str, ticket_id: str) -> None:
        await self._views.hold(order_id, ticket_id)

    async def claim_resolved(self, order_id: str, ticket_id: str) -> None:
        await self._views.release(order_id, ticket_id)

    # the buyer
    async def cancel_by_buyer(self, order_id: str, buyer_id: str, request_id: str) -> LoadedOrder:
        loaded = await self._repository.load(order_id)
        if loaded is None or loaded.order.buyer_id != buyer_id:
            raise OrderNotFound(order_id)
        decision = await self._advance(
            order_id,
            lambda o: o.cancel_by_buyer(),
            Message("buyer_cancel", CommitContext(order_id, causation_id=request_id)),
        )
        if decision.outcome is Outcome.REJECTED:
            raise TransitionRefused(decision)
        reloaded = await self._repository.load(order_id)
        assert reloaded is not None
        return reloaded

    # deadlines
    async def fire_due_deadlines(self, limit: int = 100) -> int:
        """One pass of the deadline poller: every due order decides for itself."""
        now = self._clock()
        fired = 0
        for order_id in await self._views.due(now, limit):
            try:
                decision = await self._fire_deadline(order_id, now)
            except ConcurrencyError:
                continue  # a message moved the order on; the next pass sees its new deadline
            except Exception:
                log.exception("deadline of order %s failed", order_id)
                continue
            if decision.changed:
                fired += 1
        return fired

    async def _fire_deadline(self, order_id: str, now: datetime) -> Decision:
        settled = await self._settlements.is_settled(order_id)
        context = CommitContext(order_id, causation_id=f"deadline:{now.isoformat()}")
        return await self._advance(
            order_id,
            lambda o: o.on_deadline(now, self._timers, settled=settled),
            Message("deadline", context),
        )

    async def _advance(
        self, order_id: str, decide: Callable[[Order], Decision], msg: Message
    ) -> Decision:
        # Decided on what this process holds of the order (DECISION_TRUST_SECONDS):
        # if another process moved it on meanwhile, saving what was decided
        # loses the append race and the consumer decides again on the stream.
        # A decision to do nothing saves nothing, so it is checked against
        # the stream first.
        loaded = await self._repository.load(order_id, trust_seconds=DECISION_TRUST_SECONDS)
        if loaded is None:
            decision = Decision(Outcome.IGNORED, "not an order of this service")
            metrics.SAGA_DECISIONS.labels(msg.trigger, decision.outcome.value).inc()
            return decision
        was_terminal = loaded.order.terminal
        decision = decide(loaded.order)
        if not loaded.order.pending_events:
            checked = await self._repository.load(order_id, trust_seconds=0)
            if checked is not None and checked.order.version != loaded.order.version:
                loaded = checked
                was_terminal = loaded.order.terminal
                decision = decide(loaded.order)
        order = loaded.order
        metrics.SAGA_DECISIONS.labels(msg.trigger, decision.outcome.value).inc()
        if decision.outcome is Outcome.REJECTED:
            log.warning(
                "order %s: %s rejected: %s",
                order_id,
                msg.trigger,
                decision.reason,
                extra={"correlation_id": order_id},
            )
        if order.pending_events:
            try:
                await self._repository.save(order, msg.context, msg.tracking)
            except AlreadyProcessed:
                # The effect is committed; make sure the read models caught up.
                await self._sync(order_id)
                raise
            loaded = LoadedOrder(order, loaded.placed_at, self._clock())
            if order.terminal and not was_terminal and order.state is not None:
                metrics.SAGA_DURATION.labels(order.state.value.lower()).observe(
                    max(0.0, (loaded.updated_at - loaded.placed_at).total_seconds())
                )
            log.info(
                "order %s: %s -> %s (%s)",
                order_id,
                msg.trigger,
                order.state,
                decision.reason,
                extra={"correlation_id": order_id},
            )
        # Also when nothing changed: a redelivery after a crash between the save
        # and the sync finds the order decided, and repairs its views here.
        await sync_views(self._repository, self._views, self._timers, loaded, self._quotas)
        return decision

    async def _sync(self, order_id: str) -> None:
        loaded = await self._repository.load(order_id)
        if loaded is not None:
            await sync_views(self._repository, self._views, self._timers, loaded, self._quotas)


async def follow_quotas(quotas: QuotaClaims, order: Order) -> None:
    """The order's coupon use and flash-sale keys follow it: given back when it
    ended without delivering anything, final once delivered. Idempotent, and
    the order is the only writer of its own slots."""
    held = []
    if order.flash_sale_id is not None:
        held.append(f"flash:{order.flash_sale_id}")
    if order.coupon_code is not None:
        held.append(f"coupon:{order.coupon_code}")
    if not held:
        return
    if order.delivery_id is not None:
        for quota_id in held:
            redeemed = await quotas.redeem(quota_id, order.id)
            if redeemed and quota_id.startswith("coupon:") and order.discount_funded_by:
                metrics.COUPON_REDEMPTIONS.labels(order.discount_funded_by.value).inc()
                metrics.COUPON_DISCOUNT.labels(order.discount_funded_by.value).inc(order.discount)
    elif order.state in (OrderState.CANCELLED, OrderState.REFUNDED):
        for quota_id in held:
            await quotas.release(quota_id, order.id)


async def sync_views(
    repository: OrderRepository,
    views: OrderViews,
    timers: SagaTimers,
    loaded: LoadedOrder,
    quotas: QuotaClaims | None = None,
) -> LoadedOrder:
    """Write the order's read models, newest state winning.

    Two writers of one order (a consumer and the deadline poller, or two
    replicas) each sync after their own save, and their writes may land out
    of order. A writer that finds the stream moved on past what it wrote
    writes again from the stream; the writer of the newest version finds
    nothing newer, so what stays is the newest state. Returns what was
    written last."""
    order_id = loaded.order.id
    for _ in range(10):
        await views.sync(loaded, loaded.order.next_deadline(timers))
        if quotas is not None:
            await follow_quotas(quotas, loaded.order)
        if await repository.version(order_id) <= loaded.order.version:
            return loaded
        reloaded = await repository.load(order_id)
        assert reloaded is not None
        loaded = reloaded
    log.warning("order %s kept changing while its views were written", order_id)
    return loaded


@dataclass(frozen=True)
class Message:
    """What caused a step: its name (for metrics and logs), the commit context
    (correlation and causation), and, for consumed events, the tracking that
    makes the effect exactly-once."""

    trigger: str
    context: CommitContext
    tracking: Tracking | None = None
