"""Events of the payment service: payment intents and seller deposits.

Two aggregates, two topics:

- `payment.payment` (`kami.payment.payment.v1`): the payment intent of one
  order (aggregate id = payment id; every event also names the order). Its
  stream is the life of the order's money: initiated, confirmed or failed,
  settled to the seller, refunded, reversed by the channel.
- `payment.deposit` (`kami.payment.deposit.v1`): a seller's deposit
  (aggregate id = seller id), the security from which refunds are drawn once
  an order's money was settled (DESIGN §3).

Every amount is a ledger movement underneath (DESIGN §4); the ledger's
entries themselves stay inside payment.
Main consumers: ordering (drives the saga), catalog (delists sellers below
their minimum deposit), aftersales.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, model_validator

from kami_events.catalogue.common import (
    AggregateEvent,
    Id,
    Reason,
    RefundReason,
    RefundSource,
    UtcDatetime,
)
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.money import CNY, Currency, Fen, PositiveFen

ChannelReference = Annotated[str, Field(min_length=1, max_length=128)]
"""The channel's own id for a transaction: for reconciliation, not a secret."""


class PaymentChannel(StrEnum):
    ALIPAY = "alipay"
    WECHAT_PAY = "wechat_pay"
    UNIONPAY = "unionpay"
    # The buyer's Kami wallet balance (e.g. earlier refunds kept in the wallet).
    WALLET = "wallet"


class PaymentFailure(StrEnum):
    DECLINED = "declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    # Over the daily payment limit of the buyer's KYC tier (`IdentityVerified`).
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    BUYER_SUSPENDED = "buyer_suspended"
    # Verification layer 1: the channel's second factor was not passed.
    SECOND_FACTOR_FAILED = "second_factor_failed"
    AMOUNT_MISMATCH = "amount_mismatch"
    # Verification layer 2: the order no longer awaits payment.
    ORDER_NOT_PAYABLE = "order_not_payable"
    # Verification layer 3: the order's key reservation is no longer held.
    RESERVATION_LOST = "reservation_lost"
    EXPIRED = "expired"
    CHANNEL_ERROR = "channel_error"


class ReversalReason(StrEnum):
    CHARGEBACK = "chargeback"
    CHANNEL_REVERSAL = "channel_reversal"


class DepositChangeCause(StrEnum):
    TOP_UP = "top_up"
    # A refund drawn from the deposit (order money already settled to the seller).
    REFUND_DRAWN = "refund_drawn"
    CHARGEBACK_RECOVERY = "chargeback_recovery"
    WITHDRAWAL = "withdrawal"
    ADJUSTMENT = "adjustment"


class PaymentEvent(AggregateEvent):
    """The payment intent of one order: the life of the order's money (aggregate
    `payment.payment`, id = payment id). Main consumers: ordering (drives the saga),
    aftersales."""

    abstract = True
    aggregate_type: ClassVar[str] = "payment.payment"
    aggregate_id_field: ClassVar[str] = "payment_id"

    payment_id: Id
    order_id: Id
    buyer_id: Id


class PaymentInitiated(PaymentEvent):
    """The buyer started paying an order through a channel; the intent expires
    with the order's payment deadline. Consumed by ordering (timeline), BI."""

    seller_id: Id
    amount: PositiveFen
    currency: Currency = CNY
    channel: PaymentChannel
    expires_at: UtcDatetime
    discount: Fen = Field(
        default=0, description="The order's coupon discount, already off `amount` (OrderReserved)."
    )
    discount_funded_by: DiscountFunder | None = Field(
        default=None,
        description="Who funds the discount: the platform adds it to the seller's settlement.",
    )


class PaymentConfirmed(PaymentEvent):
    """The channel captured the money and all three verification layers passed
    (channel signature/second factor; order awaiting payment; reservation held).
    The money is in escrow. Consumed by ordering (marks the order paid)."""

    amount: PositiveFen
    currency: Currency = CNY
    channel: PaymentChannel
    channel_reference: ChannelReference
    # A wallet payment the buyer made without the payment password, under their
    # password-free small payments setting (小额免密); the KYC limit still applied.
    second_factor_waived: bool = False


class PaymentFailed(PaymentEvent):
    """The payment did not go through, or was captured and then failed a
    verification layer. `captured_amount` says how much money was taken anyway
    (0 usually): if positive, it sits in escrow until refunded. Consumed by
    ordering (cancels the order, or requests the refund of a captured amount)."""

    reason: PaymentFailure
    detail: Reason | None = None
    captured_amount: Fen
    currency: Currency = CNY


class PaymentReversed(PaymentEvent):
    """The channel took back a confirmed payment (a chargeback). `settled` says
    whether the money had already gone to the seller, in which case it is
    recovered from the seller's deposit. Consumed by ordering (voids the keys,
    requests the recovery), aftersales (seller and buyer risk)."""

    seller_id: Id
    amount: PositiveFen
    currency: Currency = CNY
    reason: ReversalReason
    channel_reference: ChannelReference
    settled: bool
    promotion: Fen = Field(
        default=0,
        description="Settled: the share of a platform-funded discount the seller owes back "
        "with `amount` (recovered with it).",
    )


class PaymentRefunded(PaymentEvent):
    """Money went back to the buyer (or, after a chargeback, was recovered from
    the seller) for `refund_id`, taken from `source`. Consumed by ordering
    (the order reaches `REFUNDED`), aftersales (closes compensation)."""

    seller_id: Id
    refund_id: Id
    amount: PositiveFen
    currency: Currency = CNY
    source: RefundSource
    reason: RefundReason
    destination: Literal["original_channel", "wallet", "none"] = Field(
        description="Where the buyer got the money; `none` for a chargeback recovery."
    )


class FundsSettled(PaymentEvent):
    """The order's money left escrow: `net` to the seller's balance and
    `platform_fee` to the platform. A platform-funded discount adds
    `promotion` (paid by the platform) to what the seller receives, and the fee
    is on the price before the discount. From now on refunds are drawn from the
    seller's deposit. Consumed by ordering (refund source), aftersales."""

    seller_id: Id
    gross: PositiveFen = Field(description="What left escrow: what the buyer paid.")
    platform_fee: Fen
    net: Fen
    currency: Currency = CNY
    promotion: Fen = Field(
        default=0, description="A platform-funded discount the platform paid to the seller."
    )

    @model_validator(mode="after")
    def _gross_and_promotion_are_fee_plus_net(self) -> Self:
        if self.gross + self.promotion != self.platform_fee + self.net:
            raise ValueError(
                f"gross {self.gross} + promotion {self.promotion} != "
                f"platform_fee {self.platform_fee} + net {self.net}"
            )
        return self


class DepositEvent(AggregateEvent):
    """A seller's deposit, from which refunds are drawn once an order's money was
    settled (aggregate `payment.deposit`, id = seller id). Main consumers: catalog
    (delists sellers below the minimum), aftersales."""

    abstract = True
    aggregate_type: ClassVar[str] = "payment.deposit"
    aggregate_id_field: ClassVar[str] = "seller_id"

    seller_id: Id


class DepositChanged(DepositEvent):
    """The seller's deposit balance moved by `amount` in `direction`. Carries the
    new balance and the seller's own minimum (by the category it was approved
    for), so a consumer needs no history: catalog relists a seller's offers
    once `balance >= minimum` again."""

    direction: Literal["credit", "debit"]
    amount: PositiveFen
    balance: Fen
    minimum: Fen
    currency: Currency = CNY
    cause: DepositChangeCause
    order_id: Id | None = Field(default=None, description="The order behind a refund or recovery.")


class DepositBelowMinimum(DepositEvent):
    """The seller's deposit fell below its minimum (the minimum of the category
    it was approved for): its offers must be delisted until it tops up.
    Consumed by catalog (delists), aftersales and the seller's notifications."""

    balance: Fen
    minimum: PositiveFen
    shortfall: PositiveFen = Field(description="minimum − balance, in fen.")
    currency: Currency = CNY

    @model_validator(mode="after")
    def _shortfall_is_minimum_minus_balance(self) -> Self:
        if self.shortfall != self.minimum - self.balance:
            raise ValueError(
                f"shortfall {self.shortfall} != minimum {self.minimum} - balance {self.balance}"
            )
        return self
