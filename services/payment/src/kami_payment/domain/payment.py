"""The payment intent of one order: the life of the order's money.

`Payment` is event-sourced (aggregate `payment.payment`). Its id is derived
from the order id (`payment_id_for`), so an order has exactly one intent and
two racing requests to pay it meet at the same stream (the event store's
optimistic concurrency lets one of them create it).

States: `initiated` → `confirmed` (money captured into escrow) or `failed`.
After confirmation the money is settled to the seller (`FundsSettled`),
refunded (`PaymentRefunded`, any number of times up to what was captured),
or taken back by the channel (`PaymentReversed`). A capture that arrives after
the intent failed (a late gateway payment) still confirms it: the money is
real, and ordering, which knows the order was cancelled, requests its refund.

A coupon's discount (from `OrderReserved`) is already off `amount`. A seller
funds its own discount by simply receiving less. A platform-funded discount
is the platform's promotion: settlement adds it to the seller's money (from
`platform_promotions`), with the fee on the price before the discount, and a
refund after settlement takes it back from the seller along with the buyer's
money. Before settlement nothing of it has moved, so a refund returns only
what the buyer paid.

The aggregate decides (`plan_*`) and records (`record_*`); the ledger
movement in between is the handler's job. Recording is idempotent: a
settlement, a refund id, a capture or a reversal is recorded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal
from uuid import NAMESPACE_URL, uuid5

from kami_events.aggregate import Aggregate
from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.catalogue.payment import (
    FundsSettled,
    PaymentChannel,
    PaymentConfirmed,
    PaymentFailed,
    PaymentFailure,
    PaymentInitiated,
    PaymentRefunded,
    PaymentReversed,
    ReversalReason,
)
from kami_events.event import Event
from kami_payment.domain.ledger import platform_fee
from kami_payment.domain.refusals import Refused

_PAYMENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/payment/intent")

Destination = Literal["original_channel", "wallet", "none"]


def payment_id_for(order_id: str) -> str:
    """The one payment intent of an order: 32 hex characters, also usable as a
    channel's `out_trade_no`."""
    return uuid5(_PAYMENT_NAMESPACE, order_id).hex


class PaymentStatus(StrEnum):
    INITIATED = "initiated"
    CONFIRMED = "confirmed"
    FAILED = "failed"


@dataclass(frozen=True)
class SettlementPlan:
    """`gross` leaves escrow; `promotion` (a platform-funded discount) comes
    from the platform; the seller gets both less the fee."""

    gross: int
    fee: int
    promotion: int = 0

    @property
    def net(self) -> int:
        return self.gross + self.promotion - self.fee


@dataclass(frozen=True)
class RefundPlan:
    """What a refund request comes to. `moves_money` is false only for a
    chargeback recovery whose reversal was already paid out of escrow."""

    refund_id: str
    amount: int
    source: RefundSource
    reason: RefundReason
    destination: Destination
    moves_money: bool
    # After settlement: the share of a platform-funded discount the seller
    # gives back (to `platform_promotions`) on top of what the buyer gets.
    promotion: int = 0


@dataclass(frozen=True)
class ReversalPlan:
    amount: int
    settled: bool
    # Settled: the share of a platform-funded discount the seller owes back.
    promotion: int = 0


class Payment(Aggregate):
    aggregate_type: ClassVar[str] = "payment.payment"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.order_id = ""
        self.buyer_id = ""
        self.seller_id = ""
        self.amount = 0
        self.discount = 0
        self.discount_funded_by: DiscountFunder | None = None
        self.channel = PaymentChannel.WALLET
        self.expires_at: datetime | None = None
        self.status: PaymentStatus | None = None
        self.failure: PaymentFailure | None = None
        self.captured = 0
        self.channel_reference: str | None = None
        self.second_factor_waived = False
        self.settlement: FundsSettled | None = None
        self.refunds: dict[str, PaymentRefunded] = {}
        self.reversal: PaymentReversed | None = None

    # -- commands ---------------------------------------------------------

    @classmethod
    def initiate(
        cls,
        *,
        order_id: str,
        buyer_id: str,
        seller_id: str,
        amount: int,
        channel: PaymentChannel,
        expires_at: datetime,
        discount: int = 0,
        discount_funded_by: DiscountFunder | None = None,
    ) -> Payment:
        payment = cls(payment_id_for(order_id))
        payment._trigger(
            PaymentInitiated(
                payment_id=payment.id,
                order_id=order_id,
                buyer_id=buyer_id,
                seller_id=seller_id,
                amount=amount,
                channel=channel,
                expires_at=expires_at,
                discount=discount,
                discount_funded_by=discount_funded_by if discount else None,
            )
        )
        return payment

    def fail(self, reason: PaymentFailure, detail: str | None = None) -> bool:
        """End an intent that captured nothing. False (and no event) if it is
        no longer open: a failure never overrides money that arrived."""
        if self.status is not PaymentStatus.INITIATED:
            return False
        self._trigger(
            PaymentFailed(
                payment_id=self.id,
                order_id=self.order_id,
                buyer_id=self.buyer_id,
                reason=reason,
                detail=detail,
                captured_amount=0,
            )
        )
        return True

    def record_capture(
        self, amount: int, channel_reference: str, *, second_factor_waived: bool = False
    ) -> bool:
        """The channel captured `amount` into escrow. The exact amount confirms
        the payment (layer 1); any other amount is captured money that failed
        verification, to be refunded. False if a capture was already recorded.
        `second_factor_waived`: a password-free wallet payment."""
        if self.captured:
            return False
        if amount == self.amount:
            self._trigger(
                PaymentConfirmed(
                    payment_id=self.id,
                    order_id=self.order_id,
                    buyer_id=self.buyer_id,
                    amount=amount,
                    channel=self.channel,
                    channel_reference=channel_reference,
                    second_factor_waived=second_factor_waived,
                )
            )
        else:
            self._trigger(
                PaymentFailed(
                    payment_id=self.id,
                    order_id=self.order_id,
                    buyer_id=self.buyer_id,
                    reason=PaymentFailure.AMOUNT_MISMATCH,
                    detail=f"the channel captured {amount} fen, the order costs {self.amount}",
                    captured_amount=amount,
                )
            )
        return True

    def plan_settlement(self, fee_bps: int) -> SettlementPlan | None:
        """What settling now would move: everything still in escrow, plus a
        platform-funded discount, less the platform's fee on both. None when
        there is nothing to settle (not confirmed, already settled, or refunded
        / reversed in full). After a partial refund from escrow the platform
        funds the same share of the discount as is left of the payment."""
        if self.status is not PaymentStatus.CONFIRMED or self.settlement is not None:
            return None
        gross = self.in_escrow
        if gross == 0:
            return None
        promotion = _share(self.platform_discount, gross, self.captured)
        return SettlementPlan(
            gross=gross, fee=platform_fee(gross + promotion, fee_bps), promotion=promotion
        )

    def record_settlement(self, plan: SettlementPlan) -> bool:
        if self.settlement is not None:
            return False
        self._trigger(
            FundsSettled(
                payment_id=self.id,
                order_id=self.order_id,
                buyer_id=self.buyer_id,
                seller_id=self.seller_id,
                gross=plan.gross,
                platform_fee=plan.fee,
                net=plan.net,
                promotion=plan.promotion,
            )
        )
        return True

    def plan_refund(self, refund_id: str, amount: int, reason: RefundReason) -> RefundPlan:
        """Where a refund comes from and goes to. Payment is the authority on
        the source: escrow until settled, the seller's deposit after."""
        if amount <= 0:
            raise Refused("invalid_refund", f"refund {refund_id}: amount must be positive")
        if reason is RefundReason.CHARGEBACK:
            if self.reversal is None:
                raise Refused(
                    "no_chargeback", f"refund {refund_id}: payment {self.id} was not reversed"
                )
            if amount > self.recoverable:
                raise Refused(
                    "refund_exceeds_chargeback",
                    f"refund {refund_id}: {amount} fen exceeds the {self.recoverable} fen "
                    "left to recover",
                )
            if self.reversal.settled:
                return RefundPlan(
                    refund_id,
                    amount,
                    RefundSource.SELLER_DEPOSIT,
                    reason,
                    "none",
                    True,
                    self._promotion_recovered(amount),
                )
            # The reversal was paid out of escrow: the seller never had the money.
            return RefundPlan(refund_id, amount, RefundSource.ESCROW, reason, "none", False)
        if amount > self.refundable:
            raise Refused(
                "refund_exceeds_captured",
                f"refund {refund_id}: {amount} fen exceeds the {self.refundable} fen captured "
                "and not yet refunded",
            )
        source = RefundSource.SELLER_DEPOSIT if self.settlement else RefundSource.ESCROW
        destination: Destination = (
            "wallet" if self.channel is PaymentChannel.WALLET else "original_channel"
        )
        return RefundPlan(
            refund_id, amount, source, reason, destination, True, self._promotion_back(amount)
        )

    def _promotion_back(self, amount: int) -> int:
        """Of the promotion settled to the seller, the share a refund of `amount`
        after settlement takes back. Counted on all such refunds together, so
        refunding everything settled takes back exactly all of it."""
        if self.settlement is None or not self.settlement.promotion:
            return 0
        promotion, gross = self.settlement.promotion, self.settlement.gross
        before = sum(
            r.amount
            for r in self.refunds.values()
            if r.source is RefundSource.SELLER_DEPOSIT and r.reason is not RefundReason.CHARGEBACK
        )
        if self.reversal is not None and self.reversal.settled:
            before += self.reversal.amount
        return _share(promotion, before + amount, gross) - _share(promotion, before, gross)

    def _promotion_recovered(self, amount: int) -> int:
        """Of the promotion a settled chargeback left the seller owing, the
        share a recovery of `amount` draws with it (all of it with the last)."""
        if self.reversal is None or not self.reversal.promotion:
            return 0
        promotion, reversed_amount = self.reversal.promotion, self.reversal.amount
        before = self.reversal.amount - self.recoverable
        return _share(promotion, before + amount, reversed_amount) - _share(
            promotion, before, reversed_amount
        )

    def record_refund(self, plan: RefundPlan) -> bool:
        if plan.refund_id in self.refunds:
            return False
        self._trigger(
            PaymentRefunded(
                payment_id=self.id,
                order_id=self.order_id,
                buyer_id=self.buyer_id,
                seller_id=self.seller_id,
                refund_id=plan.refund_id,
                amount=plan.amount,
                source=plan.source,
                reason=plan.reason,
                destination=plan.destination,
            )
        )
        return True

    def plan_reversal(self, amount: int) -> ReversalPlan | None:
        """The channel takes back `amount`. None if a reversal was already
        recorded (the channel sends one per payment)."""
        if self.reversal is not None:
            return None
        if self.channel is PaymentChannel.WALLET:
            raise Refused("not_reversible", "a wallet payment has no channel to reverse it")
        if amount <= 0 or amount > self.refundable:
            raise Refused(
                "reversal_exceeds_captured",
                f"reversal of {amount} fen; {self.refundable} fen is captured and not refunded",
            )
        settled = self.settlement is not None
        promotion = self._promotion_back(amount) if settled else 0
        return ReversalPlan(amount=amount, settled=settled, promotion=promotion)

    def record_reversal(
        self, plan: ReversalPlan, reason: ReversalReason, channel_reference: str
    ) -> bool:
        if self.reversal is not None:
            return False
        self._trigger(
            PaymentReversed(
                payment_id=self.id,
                order_id=self.order_id,
                buyer_id=self.buyer_id,
                seller_id=self.seller_id,
                amount=plan.amount,
                reason=reason,
                channel_reference=channel_reference,
                settled=plan.settled,
                promotion=plan.promotion,
            )
        )
        return True

    # -- queries ----------------------------------------------------------

    @property
    def in_escrow(self) -> int:
        """What escrow holds for this payment."""
        held = self.captured
        if self.settlement is not None:
            held -= self.settlement.gross
        held -= sum(
            r.amount
            for r in self.refunds.values()
            if r.source is RefundSource.ESCROW and r.reason is not RefundReason.CHARGEBACK
        )
        if self.reversal is not None and not self.reversal.settled:
            held -= self.reversal.amount
        return held

    @property
    def refundable(self) -> int:
        """Captured money the buyer has not got back (by refund or by reversal)."""
        returned = sum(
            r.amount for r in self.refunds.values() if r.reason is not RefundReason.CHARGEBACK
        )
        reversed_amount = self.reversal.amount if self.reversal is not None else 0
        return self.captured - returned - reversed_amount

    @property
    def recoverable(self) -> int:
        """Of a chargeback, what is not yet recovered from the seller."""
        if self.reversal is None:
            return 0
        recovered = sum(
            r.amount for r in self.refunds.values() if r.reason is RefundReason.CHARGEBACK
        )
        return self.reversal.amount - recovered

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds.values())

    @property
    def platform_discount(self) -> int:
        """The discount the platform funds (0 if none, or the seller's own)."""
        return self.discount if self.discount_funded_by is DiscountFunder.PLATFORM else 0

    # -- state from events -------------------------------------------------

    def apply(self, event: Event) -> None:
        match event:
            case PaymentInitiated():
                self.order_id = event.order_id
                self.buyer_id = event.buyer_id
                self.seller_id = event.seller_id
                self.amount = event.amount
                self.discount = event.discount
                self.discount_funded_by = event.discount_funded_by
                self.channel = event.channel
                self.expires_at = event.expires_at
                self.status = PaymentStatus.INITIATED
            case PaymentConfirmed():
                self.status = PaymentStatus.CONFIRMED
                self.failure = None
                self.captured = event.amount
                self.channel_reference = event.channel_reference
                self.second_factor_waived = event.second_factor_waived
            case PaymentFailed():
                self.status = PaymentStatus.FAILED
                self.failure = event.reason
                self.captured += event.captured_amount
            case FundsSettled():
                self.settlement = event
            case PaymentRefunded():
                self.refunds[event.refund_id] = event
            case PaymentReversed():
                self.reversal = event
            case _:
                super().apply(event)


def _share(whole: int, part: int, of: int) -> int:
    """`whole` × `part` / `of`, rounded down: the same share of a discount as
    `part` is of `of` (all of it when `part` is all of `of`)."""
    if whole == 0 or of <= 0:
        return 0
    return whole * min(part, of) // of
