"""The order aggregate: the purchase saga's state machine (DESIGN §3, docs/saga.md).

The order's own event stream is the saga: every transition is one ordering
event, and `apply` is the only place state changes, so replaying the stream
rebuilds the saga exactly, deadlines included.

    PLACED → RESERVED → PAID → DELIVERED → COMPLETED
       ↘         ↘        ↘          ↘          ↘
        CANCELLED      REFUNDING → REFUNDED ←───┘

Each step is a guarded method named after what happened (`reserve`,
`mark_paid`, `mark_delivered`, ...). It never raises for a message from
another service: such a message may be a duplicate, late or out of order, so
the method returns a `Decision` saying what it did — `applied` (the saga moved
on), `compensated` (a failure or a late reply: compensation requested),
`duplicate`, `ignored` (no longer relevant) or `rejected` (an illegal
transition, with the reason). `OrderPaid` is the point of no return: before
it, failures cancel (releasing keys, no money moved); after it, they refund.

Pure: no I/O and no clock; times come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, uuid5

from kami_events.aggregate import Aggregate
from kami_events.catalogue.common import DeliveryMode, RefundReason, RefundSource
from kami_events.catalogue.inventory import ReservationFailure
from kami_events.catalogue.ordering import (
    CancelReason,
    CompletedBy,
    CouponHeld,
    CouponRedeemed,
    CouponReleased,
    DiscountFunder,
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderRefundRequested,
    OrderReserved,
)
from kami_events.catalogue.payment import PaymentFailure
from kami_events.event import Event
from kami_events.money import Money
from kami_ordering.domain.promotions import OrderPrice
from kami_ordering.domain.terms import OfferTerms

REFUND_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/ordering/refunds")


class OrderState(StrEnum):
    PLACED = "PLACED"
    RESERVED = "RESERVED"  # keys held, awaiting payment
    PAID = "PAID"
    DELIVERED = "DELIVERED"  # guarantee window running
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    REFUNDING = "REFUNDING"  # refund requested, awaiting payment's PaymentRefunded
    REFUNDED = "REFUNDED"


TERMINAL_STATES = frozenset({OrderState.COMPLETED, OrderState.CANCELLED, OrderState.REFUNDED})
UNPAID_STATES = frozenset({OrderState.PLACED, OrderState.RESERVED})
PAID_STATES = frozenset({OrderState.PAID, OrderState.DELIVERED, OrderState.COMPLETED})
# The way an order goes when nothing goes wrong, in order.
HAPPY_PATH = (
    OrderState.PLACED,
    OrderState.RESERVED,
    OrderState.PAID,
    OrderState.DELIVERED,
    OrderState.COMPLETED,
)


def waiting_is_over(current: OrderState, wanted: OrderState) -> bool:
    """Whether a buyer waiting for `wanted` has their answer in `current`: the
    order is there, has gone past it, or cannot get there any more (it ended,
    or is compensated while the buyer waits for a step of the happy path)."""
    if current is wanted or current in TERMINAL_STATES:
        return True
    if wanted in HAPPY_PATH:
        # A compensated order (REFUNDING) never comes back to the happy path.
        return current not in HAPPY_PATH or HAPPY_PATH.index(current) >= HAPPY_PATH.index(wanted)
    if wanted is OrderState.CANCELLED:
        return current not in UNPAID_STATES  # once paid, an order is refunded, not cancelled
    return False  # REFUNDING or REFUNDED: any live order may still be compensated


class Outcome(StrEnum):
    APPLIED = "applied"
    COMPENSATED = "compensated"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str

    @property
    def changed(self) -> bool:
        return self.outcome in (Outcome.APPLIED, Outcome.COMPENSATED)


def _applied(reason: str) -> Decision:
    return Decision(Outcome.APPLIED, reason)


def _compensated(reason: str) -> Decision:
    return Decision(Outcome.COMPENSATED, reason)


def _duplicate(reason: str) -> Decision:
    return Decision(Outcome.DUPLICATE, reason)


def _ignored(reason: str) -> Decision:
    return Decision(Outcome.IGNORED, reason)


def _rejected(reason: str) -> Decision:
    return Decision(Outcome.REJECTED, reason)


@dataclass(frozen=True)
class SagaTimers:
    """The saga's platform-wide time limits (per-offer terms travel in `OrderPlaced`)."""

    payment_window: timedelta = timedelta(minutes=15)
    # How long automatic delivery may take after payment before the buyer is refunded.
    auto_delivery_limit: timedelta = timedelta(minutes=30)
    # After a delivery deadline (the manual SLA), how long ordering waits for
    # delivery's own `DeliveryFailed` before requesting the refund itself.
    delivery_grace: timedelta = timedelta(minutes=10)
    # For orders whose `OrderPlaced` predates the guarantee term.
    default_guarantee_window: timedelta = timedelta(minutes=15)


class DeadlineKind(StrEnum):
    PAYMENT = "payment"  # cancel unless paid
    DELIVERY = "delivery"  # refund unless delivered
    GUARANTEE = "guarantee"  # complete unless claimed


@dataclass(frozen=True)
class Deadline:
    kind: DeadlineKind
    due_at: datetime


@dataclass(frozen=True)
class Refund:
    refund_id: str
    payment_id: str
    amount: int
    source: RefundSource
    reason: RefundReason
    ticket_id: str | None
    void_key_ids: tuple[str, ...]
    # Whether the refund ends the order (REFUNDED) or returns a stray payment.
    ends_order: bool
    done: bool = False


def refund_id_for(order_id: str, cause: str) -> str:
    """Deterministic, so deciding again (a retry, a replay) asks for the same refund."""
    return str(uuid5(REFUND_NAMESPACE, f"{order_id}/{cause}"))


class Order(Aggregate):
    aggregate_type: ClassVar[str] = "ordering.order"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.state: OrderState | None = None
        self.buyer_id = ""
        self.seller_id = ""
        self.offer_id = ""
        self.product_id = ""
        self.quantity = 0
        self.unit_price = Money.zero()
        # What the buyer pays: the price less any coupon's discount.
        self.total = Money.zero()
        self.gross_total = Money.zero()
        self.price_tier_min_quantity: int | None = None
        self.flash_sale_id: str | None = None
        self.coupon_code: str | None = None
        self.discount = 0
        self.discount_funded_by: DiscountFunder | None = None
        # held → released (cancelled, expired, refunded) or redeemed (delivered).
        self.coupon_status: str | None = None
        self.delivery_mode = DeliveryMode.AUTO
        self.buyer_fields: dict[str, str] = {}
        self.guarantee_window: timedelta | None = None
        self.manual_delivery_sla: timedelta | None = None
        self.payment_deadline: datetime | None = None
        self.reservation_expires_at: datetime | None = None
        self.key_ids: tuple[str, ...] = ()
        self.payment_id: str | None = None
        self.delivery_deadline: datetime | None = None
        self.delivery_id: str | None = None
        self.delivered_key_ids: tuple[str, ...] = ()
        self.guarantee_ends_at: datetime | None = None
        self.completed_by: CompletedBy | None = None
        self.cancel_reason: CancelReason | None = None
        self.cancel_detail: str | None = None
        self.released_key_ids: set[str] = set()
        self.voided_key_ids: set[str] = set()
        self.refunds: dict[str, Refund] = {}
        # In fen: what the buyer paid for the order, and what went back so far.
        self.paid_amount = 0
        self.refunded_amount = 0

    # -- placing ---------------------------------------------------------------

    @classmethod
    def place(
        cls,
        order_id: str,
        *,
        buyer_id: str,
        offer: OfferTerms,
        quantity: int,
        buyer_fields: dict[str, str],
        now: datetime,
        timers: SagaTimers,
        price: OrderPrice | None = None,
    ) -> Order:
        """A new order at the offer's price. The caller checked the request
        against the terms (`kami_ordering.domain.terms`). A manual offer has no
        keys to reserve, so its order is reserved at once (docs/saga.md 3')."""
        order = cls(order_id)
        price = price or OrderPrice(offer.unit_price, quantity)
        unit_price = price.unit_price
        total = unit_price * quantity
        due = Money.fen(price.amount_due, total.currency)
        payment_deadline = now + timers.payment_window
        ids = {
            "order_id": order_id,
            "buyer_id": buyer_id,
            "seller_id": offer.seller_id,
            "offer_id": offer.offer_id,
        }
        order._trigger(
            OrderPlaced(
                **ids,
                product_id=offer.product_id,
                quantity=quantity,
                unit_price=unit_price.amount,
                total=total.amount,
                currency=total.currency,
                delivery_mode=offer.delivery_mode,
                payment_deadline=payment_deadline,
                buyer_fields=buyer_fields,
                guarantee_window_minutes=_minutes(offer.guarantee_window),
                manual_delivery_sla_minutes=(
                    _minutes(offer.manual_delivery_sla)
                    if offer.delivery_mode is DeliveryMode.MANUAL and offer.manual_delivery_sla
                    else None
                ),
                tier_min_quantity=price.tier_min_quantity,
                flash_sale_id=price.flash_sale.flash_sale_id if price.flash_sale else None,
                coupon_id=price.coupon.code if price.coupon else None,
                discount=price.discount,
            )
        )
        if price.coupon is not None:
            order._trigger(
                CouponHeld(
                    **ids,
                    coupon_id=price.coupon.code,
                    discount=price.coupon.discount,
                    funded_by=price.coupon.funded_by,
                )
            )
        if offer.delivery_mode is DeliveryMode.MANUAL:
            order._trigger(
                OrderReserved(
                    **ids,
                    key_ids=[],
                    total=due.amount,
                    currency=total.currency,
                    payment_deadline=payment_deadline,
                    reservation_expires_at=payment_deadline,
                    **order._discount_fields(),
                )
            )
        return order

    def _discount_fields(self) -> dict[str, Any]:
        if not self.discount:
            return {}
        return {"discount": self.discount, "discount_funded_by": self.discount_funded_by}

    def _trigger(self, event: Event) -> None:
        super()._trigger(event)
        if self.coupon_status != "held" or self.coupon_code is None:
            return
        # The coupon's use follows the order: given back when it ends without
        # the sale, final once the keys are delivered (docs/commerce.md).
        if self.state in (OrderState.CANCELLED, OrderState.REFUNDED):
            reason = self.cancel_reason.value if self.cancel_reason else "refunded"
            super()._trigger(
                CouponReleased(**self._ids(), coupon_id=self.coupon_code, reason=reason)
            )
        elif self.state is OrderState.DELIVERED:
            assert self.discount_funded_by is not None
            super()._trigger(
                CouponRedeemed(
                    **self._ids(),
                    coupon_id=self.coupon_code,
                    discount=self.discount,
                    funded_by=self.discount_funded_by,
                )
            )

    # -- inventory's replies -----------------------------------------------------

    def reserve(self, key_ids: list[str], expires_at: datetime) -> Decision:
        """`KeyReserved`: the keys are held; the order awaits payment."""
        if self.state is OrderState.PLACED:
            if len(set(key_ids)) != self.quantity:
                self._cancel(
                    CancelReason.OUT_OF_STOCK,
                    f"inventory reserved {len(set(key_ids))} keys for a quantity of "
                    f"{self.quantity}",
                    release=key_ids,
                )
                return _compensated("wrong number of keys reserved: released and cancelled")
            self._trigger(
                OrderReserved(
                    **self._ids(),
                    key_ids=key_ids,
                    total=self.total.amount,
                    currency=self.total.currency,
                    payment_deadline=self._payment_deadline(),
                    reservation_expires_at=expires_at,
                    **self._discount_fields(),
                )
            )
            return _applied("keys reserved: awaiting payment")
        held = set(self.key_ids)
        if set(key_ids) <= held:
            return _duplicate("these keys are already the order's")
        if self.cancel_reason is not None:
            late = [k for k in key_ids if k not in self.released_key_ids and k not in held]
            if not late:
                return _duplicate("these keys were already released")
            self._cancel(
                self.cancel_reason, "keys reserved after the order was cancelled", release=late
            )
            return _compensated("late reservation for a cancelled order: keys released")
        return _rejected(f"a second reservation for an order in state {self.state}")

    def fail_reservation(self, reason: ReservationFailure) -> Decision:
        """`KeyReservationFailed`: nothing is held and no money moved."""
        if self.state is OrderState.PLACED:
            cancel_reason = (
                CancelReason.OUT_OF_STOCK
                if reason is ReservationFailure.OUT_OF_STOCK
                else CancelReason.OFFER_DELISTED
            )
            self._cancel(cancel_reason, f"reservation failed: {reason.value}", release=[])
            return _applied("reservation failed: cancelled")
        if self.state is OrderState.CANCELLED:
            return _duplicate("already cancelled")
        return _rejected(f"a reservation failure for an order in state {self.state}")

    def expire_reservation(self, key_ids: list[str]) -> Decision:
        """`KeysReleased{reservation_expired}`: inventory let the unpaid order's keys go."""
        if self.state is OrderState.RESERVED and set(key_ids) & set(self.key_ids):
            self._cancel(CancelReason.PAYMENT_TIMEOUT, "the key reservation expired", release=[])
            return _applied("reservation expired before payment: cancelled")
        return _ignored(f"released keys do not affect an order in state {self.state}")

    # -- payment's replies ----------------------------------------------------------

    def mark_paid(
        self, payment_id: str, amount: Money, now: datetime, timers: SagaTimers
    ) -> Decision:
        """`PaymentConfirmed`: verification layer 2 (the order still awaits payment)
        and layer 3 (the reservation is still held) decide whether this is the
        point of no return or money to give back."""
        if payment_id == self.payment_id:
            return _duplicate("this payment was already accounted for")
        if self._has_refund(refund_id_for(self.id, f"payment:{payment_id}")):
            return _duplicate("this payment is already being refunded")
        if self.state is OrderState.RESERVED:
            if amount != self.total:
                self._refund_stray(payment_id, amount, RefundReason.VERIFICATION_FAILED)
                return _compensated(f"paid {amount} for a total of {self.total}: refunded")
            if self.reservation_expires_at is not None and now >= self.reservation_expires_at:
                self._cancel(
                    CancelReason.PAYMENT_TIMEOUT,
                    "payment confirmed after the reservation expired",
                    release=list(self.key_ids),
                    payment_id=payment_id,
                )
                self._request_refund(
                    payment_id,
                    amount,
                    RefundSource.ESCROW,
                    RefundReason.VERIFICATION_FAILED,
                    cause=f"payment:{payment_id}",
                )
                return _compensated("reservation no longer held (layer 3): cancelled and refunded")
            sla = self.manual_delivery_sla if self.delivery_mode is DeliveryMode.MANUAL else None
            self._trigger(
                OrderPaid(
                    **self._ids(),
                    payment_id=payment_id,
                    product_id=self.product_id,
                    quantity=self.quantity,
                    key_ids=list(self.key_ids),
                    amount=amount.amount,
                    currency=amount.currency,
                    delivery_mode=self.delivery_mode,
                    delivery_deadline=now + (sla or timers.auto_delivery_limit),
                )
            )
            return _applied("payment verified: paid")
        if self.state is OrderState.CANCELLED:
            self._request_refund(
                payment_id,
                amount,
                RefundSource.ESCROW,
                RefundReason.LATE_PAYMENT,
                cause=f"payment:{payment_id}",
            )
            return _compensated("payment for a cancelled order (layer 2): refunded")
        reason = (
            RefundReason.LATE_PAYMENT
            if self.state in (OrderState.REFUNDING, OrderState.REFUNDED)
            else RefundReason.VERIFICATION_FAILED
        )
        self._refund_stray(payment_id, amount, reason)
        return _compensated(f"a payment the order in state {self.state} does not await: refunded")

    def fail_payment(self, payment_id: str, reason: PaymentFailure, captured: Money) -> Decision:
        """`PaymentFailed`: cancel an unpaid order; give back any captured money."""
        if payment_id == self.payment_id and self.state in PAID_STATES:
            return _rejected("this payment was confirmed already")
        if self.state in UNPAID_STATES:
            self._cancel(
                CancelReason.PAYMENT_FAILED,
                f"payment failed: {reason.value}",
                release=list(self.key_ids),
                payment_id=payment_id,
            )
            if captured:
                self._request_refund(
                    payment_id,
                    captured,
                    RefundSource.ESCROW,
                    RefundReason.VERIFICATION_FAILED,
                    cause=f"payment:{payment_id}",
                )
            return _applied("payment failed: cancelled, keys released")
        if captured and not self._has_refund(refund_id_for(self.id, f"payment:{payment_id}")):
            self._refund_stray(payment_id, captured, RefundReason.VERIFICATION_FAILED)
            return _compensated("a failed payment captured money: refunded")
        return _ignored(f"a payment failure does not affect an order in state {self.state}")

    def reverse_payment(self, payment_id: str, amount: Money, *, settled: bool) -> Decision:
        """`PaymentReversed` (a chargeback): void the keys and recover the amount,
        from the seller's deposit once the money was settled to the seller."""
        refund_id = refund_id_for(self.id, f"chargeback:{payment_id}")
        if self._has_refund(refund_id):
            return _duplicate("this chargeback is already being recovered")
        if payment_id != self.payment_id or self.state not in PAID_STATES:
            return _ignored(f"a reversal does not affect an order in state {self.state}")
        self._request_refund(
            payment_id,
            amount,
            RefundSource.SELLER_DEPOSIT if settled else RefundSource.ESCROW,
            RefundReason.CHARGEBACK,
            cause=f"chargeback:{payment_id}",
            void_key_ids=self._keys_out(),
        )
        return _compensated("chargeback: keys voided, amount recovered")

    def mark_refunded(self, refund_id: str, amount: Money, source: RefundSource) -> Decision:
        """`PaymentRefunded`: the money went back; the order may be REFUNDED."""
        refund = self.refunds.get(refund_id)
        if refund is None:
            return _ignored("not a refund this order requested")
        if refund.done:
            return _duplicate("this refund was already recorded")
        self._trigger(
            OrderRefunded(
                **self._ids(),
                payment_id=refund.payment_id,
                refund_id=refund_id,
                amount=amount.amount,
                currency=amount.currency,
                source=source,
                reason=refund.reason,
                ends_order=refund.ends_order,
            )
        )
        return _applied("refund done" + (": refunded" if refund.ends_order else ""))

    # -- delivery's replies ---------------------------------------------------------

    def mark_delivered(
        self, delivery_id: str, key_ids: list[str], now: datetime, timers: SagaTimers
    ) -> Decision:
        """`KeyDelivered`: the keys reached the buyer; the guarantee window starts."""
        if self.state is OrderState.PAID:
            window = self.guarantee_window or timers.default_guarantee_window
            self._trigger(
                OrderDelivered(
                    **self._ids(),
                    delivery_id=delivery_id,
                    key_ids=key_ids,
                    guarantee_ends_at=now + window,
                )
            )
            return _applied("delivered: guarantee window started")
        if delivery_id == self.delivery_id:
            return _duplicate("this delivery was already recorded")
        refund = self._refund_for(RefundReason.DELIVERY_FAILED)
        if refund is not None:
            unvoided = [k for k in key_ids if k not in self.voided_key_ids]
            if not unvoided:
                return _ignored("delivered after the refund; no keys to void")
            self._trigger(self._refund_event(replace(refund, void_key_ids=tuple(unvoided))))
            return _compensated("delivered after the refund: the delivered keys are voided")
        return _rejected(f"a delivery for an order in state {self.state}")

    def fail_delivery(self, key_ids: list[str], *, settled: bool) -> Decision:
        """`DeliveryFailed`: refund the buyer and void the order's keys."""
        if self.state is OrderState.PAID:
            self._refund_delivery_failure(settled, extra_keys=key_ids)
            return _compensated("delivery failed: refunding, keys voided")
        if self._refund_for(RefundReason.DELIVERY_FAILED) is not None:
            return _duplicate("the failed delivery is already being refunded")
        return _rejected(f"a delivery failure for an order in state {self.state}")

    def confirm_arrival(self) -> Decision:
        """`ArrivalConfirmed`: the buyer says the keys work; done before the window ends."""
        if self.state is OrderState.DELIVERED:
            self._complete(CompletedBy.BUYER_CONFIRMED)
            return _applied("buyer confirmed arrival: completed")
        if self.state is OrderState.COMPLETED:
            return _duplicate("already completed")
        return _ignored(f"an arrival confirmation does not affect an order in state {self.state}")

    # -- aftersales -----------------------------------------------------------------

    def approve_compensation(
        self, ticket_id: str, amount: Money, void_key_ids: list[str], *, settled: bool
    ) -> Decision:
        """`CompensationApproved`: an upheld claim is refunded, from escrow or,
        once settled, from the seller's deposit; the faulty keys are voided.
        A partial compensation (less than what is left of the payment) leaves
        the order where it is: the buyer keeps the keys, the window runs on."""
        refund_id = refund_id_for(self.id, f"ticket:{ticket_id}")
        if self._has_refund(refund_id):
            return _duplicate("this compensation is already being refunded")
        if self.state not in PAID_STATES or self.payment_id is None:
            return _rejected(f"a compensation for an order in state {self.state}")
        left = self.paid_amount - self._requested_back(self.payment_id)
        if amount.amount > left:
            return _rejected(f"compensation {amount} exceeds the {left} fen not yet refunded")
        self._request_refund(
            self.payment_id,
            amount,
            RefundSource.SELLER_DEPOSIT if settled else RefundSource.ESCROW,
            RefundReason.CLAIM_UPHELD,
            cause=f"ticket:{ticket_id}",
            ticket_id=ticket_id,
            void_key_ids=void_key_ids,
        )
        return _compensated("claim upheld: refunding")

    # -- buyer ----------------------------------------------------------------------

    def cancel_by_buyer(self) -> Decision:
        if self.state in UNPAID_STATES:
            self._cancel(CancelReason.BUYER_CANCELLED, None, release=list(self.key_ids))
            return _applied("cancelled by the buyer")
        if self.state is OrderState.CANCELLED:
            return _duplicate("already cancelled")
        return _rejected(f"an order in state {self.state} can no longer be cancelled")

    # -- deadlines ------------------------------------------------------------------

    def next_deadline(self, timers: SagaTimers) -> Deadline | None:
        """What the order waits for next, and until when (None: nothing)."""
        if self.state in UNPAID_STATES and self.payment_deadline is not None:
            return Deadline(DeadlineKind.PAYMENT, self.payment_deadline)
        if self.state is OrderState.PAID and self.delivery_deadline is not None:
            return Deadline(DeadlineKind.DELIVERY, self.delivery_deadline + timers.delivery_grace)
        if self.state is OrderState.DELIVERED and self.guarantee_ends_at is not None:
            return Deadline(DeadlineKind.GUARANTEE, self.guarantee_ends_at)
        return None

    def on_deadline(self, now: datetime, timers: SagaTimers, *, settled: bool) -> Decision:
        """Fire the order's deadline if it is due: a payment timeout cancels, a
        missed delivery refunds, an elapsed guarantee window completes."""
        deadline = self.next_deadline(timers)
        if deadline is None:
            return _ignored(f"no deadline for an order in state {self.state}")
        if now < deadline.due_at:
            return _ignored(f"the {deadline.kind} deadline is not due until {deadline.due_at}")
        if deadline.kind is DeadlineKind.PAYMENT:
            self._cancel(CancelReason.PAYMENT_TIMEOUT, None, release=list(self.key_ids))
            return _applied("payment deadline passed: cancelled, keys released")
        if deadline.kind is DeadlineKind.DELIVERY:
            self._refund_delivery_failure(settled, extra_keys=[])
            return _compensated("nothing delivered in time: refunding, keys voided")
        self._complete(CompletedBy.GUARANTEE_ELAPSED)
        return _applied("guarantee window elapsed: completed")

    # -- state ----------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        match event:
            case OrderPlaced():
                self.state = OrderState.PLACED
                self.buyer_id = event.buyer_id
                self.seller_id = event.seller_id
                self.offer_id = event.offer_id
                self.product_id = event.product_id
                self.quantity = event.quantity
                self.unit_price = Money.fen(event.unit_price, event.currency)
                self.gross_total = Money.fen(event.total, event.currency)
                self.total = Money.fen(event.total - event.discount, event.currency)
                self.price_tier_min_quantity = event.tier_min_quantity
                self.flash_sale_id = event.flash_sale_id
                self.coupon_code = event.coupon_id
                self.discount = event.discount
                self.delivery_mode = event.delivery_mode
                self.buyer_fields = dict(event.buyer_fields)
                self.payment_deadline = event.payment_deadline
                if event.guarantee_window_minutes is not None:
                    self.guarantee_window = timedelta(minutes=event.guarantee_window_minutes)
                if event.manual_delivery_sla_minutes is not None:
                    self.manual_delivery_sla = timedelta(minutes=event.manual_delivery_sla_minutes)
            case OrderReserved():
                self.state = OrderState.RESERVED
                self.key_ids = tuple(event.key_ids)
                self.payment_deadline = event.payment_deadline
                self.reservation_expires_at = event.reservation_expires_at
            case OrderPaid():
                self.state = OrderState.PAID
                self.payment_id = event.payment_id
                self.key_ids = tuple(event.key_ids)
                self.paid_amount = event.amount
                self.delivery_deadline = event.delivery_deadline
            case OrderDelivered():
                self.state = OrderState.DELIVERED
                self.delivery_id = event.delivery_id
                self.delivered_key_ids = tuple(event.key_ids)
                self.guarantee_ends_at = event.guarantee_ends_at
            case OrderCompleted():
                self.state = OrderState.COMPLETED
                self.completed_by = event.completed_by
            case OrderCancelled():
                if self.state in UNPAID_STATES:
                    self.state = OrderState.CANCELLED
                    self.cancel_reason = event.reason
                    self.cancel_detail = event.detail
                self.released_key_ids.update(event.release_key_ids)
            case CouponHeld():
                self.coupon_status = "held"
                self.discount_funded_by = event.funded_by
            case CouponReleased():
                self.coupon_status = "released"
            case CouponRedeemed():
                self.coupon_status = "redeemed"
            case OrderRefundRequested():
                self._apply_refund_requested(event)
            case OrderRefunded():
                self.refunded_amount += event.amount
                refund = self.refunds.get(event.refund_id)
                if refund is not None:  # always: only requested refunds are recorded done
                    self.refunds[event.refund_id] = replace(refund, done=True)
                    if refund.ends_order:
                        self.state = OrderState.REFUNDED
            case _:
                super().apply(event)

    def _apply_refund_requested(self, event: OrderRefundRequested) -> None:
        self.voided_key_ids.update(event.void_key_ids)
        known = self.refunds.get(event.refund_id)
        if known is not None:
            # Asked again to void keys that surfaced later (a late delivery).
            merged = tuple(dict.fromkeys((*known.void_key_ids, *event.void_key_ids)))
            self.refunds[event.refund_id] = replace(known, void_key_ids=merged)
            return
        # A refund ends the order unless it returns a payment the order never
        # took (a second payment, a wrong amount, one before it was payable).
        ends_order = self.state not in UNPAID_STATES and self.payment_id in (
            None,
            event.payment_id,
        )
        if self.state in (OrderState.REFUNDING, OrderState.REFUNDED):
            ends_order = False
        if (
            ends_order
            and event.reason is RefundReason.CLAIM_UPHELD
            and self._requested_back(event.payment_id) + event.amount < self.paid_amount
        ):
            ends_order = False  # a partial compensation: the order goes on
        self.refunds[event.refund_id] = Refund(
            refund_id=event.refund_id,
            payment_id=event.payment_id,
            amount=event.amount,
            source=event.source,
            reason=event.reason,
            ticket_id=event.ticket_id,
            void_key_ids=tuple(event.void_key_ids),
            ends_order=ends_order,
        )
        if ends_order:
            self.state = OrderState.REFUNDING
            self.payment_id = event.payment_id
            if not self.paid_amount:
                self.paid_amount = event.amount

    # -- helpers --------------------------------------------------------------------

    @property
    def placed(self) -> bool:
        return self.state is not None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def open_refund(self) -> Refund | None:
        """The refund that will end the order, while it is under way."""
        for refund in self.refunds.values():
            if refund.ends_order and not refund.done:
                return refund
        return None

    def _ids(self) -> dict[str, str]:
        return {
            "order_id": self.id,
            "buyer_id": self.buyer_id,
            "seller_id": self.seller_id,
            "offer_id": self.offer_id,
        }

    def _payment_deadline(self) -> datetime:
        assert self.payment_deadline is not None  # set by OrderPlaced
        return self.payment_deadline

    def _keys_out(self) -> list[str]:
        """The keys that reached, or may have reached, the buyer."""
        return list(dict.fromkeys((*self.key_ids, *self.delivered_key_ids)))

    def _requested_back(self, payment_id: str) -> int:
        """What refunds already asked to give back of this payment, in fen."""
        return sum(r.amount for r in self.refunds.values() if r.payment_id == payment_id)

    def _has_refund(self, refund_id: str) -> bool:
        return refund_id in self.refunds

    def _refund_for(self, reason: RefundReason) -> Refund | None:
        for refund in self.refunds.values():
            if refund.ends_order and refund.reason is reason:
                return refund
        return None

    def _cancel(
        self,
        reason: CancelReason,
        detail: str | None,
        *,
        release: list[str],
        payment_id: str | None = None,
    ) -> None:
        self._trigger(
            OrderCancelled(
                **self._ids(),
                reason=reason,
                detail=detail,
                release_key_ids=release,
                payment_id=payment_id,
            )
        )

    def _complete(self, by: CompletedBy) -> None:
        self._trigger(
            OrderCompleted(
                **self._ids(),
                completed_by=by,
                total=self.total.amount,
                currency=self.total.currency,
            )
        )

    def _refund_delivery_failure(self, settled: bool, *, extra_keys: list[str]) -> None:
        assert self.payment_id is not None  # PAID
        self._request_refund(
            self.payment_id,
            Money.fen(self.paid_amount, self.total.currency),
            RefundSource.SELLER_DEPOSIT if settled else RefundSource.ESCROW,
            RefundReason.DELIVERY_FAILED,
            cause="delivery",
            void_key_ids=list(dict.fromkeys((*self._keys_out(), *extra_keys))),
        )

    def _refund_stray(self, payment_id: str, amount: Money, reason: RefundReason) -> None:
        self._request_refund(
            payment_id, amount, RefundSource.ESCROW, reason, cause=f"payment:{payment_id}"
        )

    def _request_refund(
        self,
        payment_id: str,
        amount: Money,
        source: RefundSource,
        reason: RefundReason,
        *,
        cause: str,
        ticket_id: str | None = None,
        void_key_ids: list[str] | None = None,
    ) -> None:
        self._trigger(
            self._refund_event(
                Refund(
                    refund_id=refund_id_for(self.id, cause),
                    payment_id=payment_id,
                    amount=amount.amount,
                    source=source,
                    reason=reason,
                    ticket_id=ticket_id,
                    void_key_ids=tuple(void_key_ids or ()),
                    ends_order=False,  # decided by apply
                )
            )
        )

    def _refund_event(self, refund: Refund) -> OrderRefundRequested:
        return OrderRefundRequested(
            **self._ids(),
            payment_id=refund.payment_id,
            refund_id=refund.refund_id,
            amount=refund.amount,
            currency=self.total.currency,
            source=refund.source,
            reason=refund.reason,
            ticket_id=refund.ticket_id,
            void_key_ids=list(refund.void_key_ids),
        )


def _minutes(window: timedelta | None) -> int | None:
    if window is None:
        return None
    return max(1, int(window.total_seconds() // 60))
