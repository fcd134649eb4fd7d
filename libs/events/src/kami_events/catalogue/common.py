"""Field types shared by the events of several services.

Ids are strings (Kami mints UUID strings); they are checked only for a safe
shape, so an id minted elsewhere (a channel's transaction id) still fits.
Timestamps are timezone-aware and normalised to UTC. Amounts are `Fen`
(`kami_events.money`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AfterValidator, AwareDatetime, Field

from kami_events.event import Event

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
"""An id minted by Kami (a UUID string) or by a partner."""

KeyIds = Annotated[list[Id], Field(min_length=1, max_length=1000)]
"""Ids of card keys in an inventory pool: never the keys themselves."""

Quantity = Annotated[int, Field(ge=1, le=1000, strict=True)]
Count = Annotated[int, Field(ge=0, strict=True)]

Priority = Annotated[int, Field(ge=0, le=9, strict=True)]
"""A service priority granted by a KYC tier: 0 is standard, higher is served first."""

Reason = Annotated[str, Field(max_length=500)]
"""A short human explanation for operators. Never a key, a password or an OTP."""


# A value whose name has one of these words is a secret, and never goes into an event.
SENSITIVE_WORDS = frozenset(
    {"password", "passwd", "pwd", "pin", "otp", "secret", "cvv", "cvc", "code", "token"}
)
# ... nor one whose name contains one of these anywhere.
SENSITIVE_FRAGMENTS = ("password", "passwd", "secret", "plaintext", "idnumber", "idcard")


def is_sensitive_name(name: str) -> bool:
    """Whether a field or key name denotes a secret (`account_password`, `pin`, `id_number`)."""
    lowered = name.lower().replace("-", "_")
    squashed = lowered.replace("_", "")
    return bool(set(lowered.split("_")) & SENSITIVE_WORDS) or any(
        fragment in squashed for fragment in SENSITIVE_FRAGMENTS
    )


def _not_sensitive(name: str) -> str:
    if is_sensitive_name(name):
        raise ValueError(f"{name!r} names a secret; secrets never travel in events")
    return name


BuyerFieldName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$"), AfterValidator(_not_sensitive)
]
"""The name of a value the buyer gives for an account-bound product, e.g.
`game_account` or `server`. Names that denote a secret (password, PIN, OTP,
code...) are rejected: Kami never asks buyers for those."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware instant, stored and sent in UTC."""


class RefundSource(StrEnum):
    """Where a refund's money comes from (DESIGN §3).

    While the order's money is in escrow, refunds come from escrow; once it was
    settled to the seller, they are drawn from the seller's deposit.
    """

    ESCROW = "escrow"
    SELLER_DEPOSIT = "seller_deposit"


class RefundReason(StrEnum):
    """Why money goes back to the buyer (or is recovered from the seller)."""

    # Money arrived for an order that was already cancelled.
    LATE_PAYMENT = "late_payment"
    # Money was captured but a payment verification layer then failed.
    VERIFICATION_FAILED = "verification_failed"
    # Keys could not be delivered (blocked/invalid key, manual delivery SLA missed).
    DELIVERY_FAILED = "delivery_failed"
    # After-sales upheld the buyer's claim within the guarantee window.
    CLAIM_UPHELD = "claim_upheld"
    # The channel reversed a confirmed payment: the amount is recovered from the seller.
    CHARGEBACK = "chargeback"


class DeliveryMode(StrEnum):
    """`auto`: delivery decrypts and sends the reserved keys at once.
    `manual`: the seller delivers (e.g. a direct account top-up) within an SLA."""

    AUTO = "auto"
    MANUAL = "manual"


class AggregateEvent(Event):
    """Base of the per-aggregate bases: names the payload field holding the aggregate id."""

    abstract = True

    # The payload field whose value is the envelope's `aggregate_id` (and Kafka key).
    aggregate_id_field: ClassVar[str]

    @property
    def aggregate_id(self) -> str:
        """The id of the aggregate this event belongs to, read from the payload."""
        value = getattr(self, self.aggregate_id_field)
        assert isinstance(value, str)
        return value
