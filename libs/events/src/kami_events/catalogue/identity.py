"""Events of the identity service: users, phone verification, KYC tiers, roles.

Topic `kami.identity.user.v1`, one stream per user (aggregate id = user id).
Main consumers: payment (daily limits per tier, suspended buyers cannot pay),
catalog (approved sellers may list offers, suspended sellers are delisted),
delivery and aftersales (priorities per tier).

Personal data stays in identity: events carry a masked phone number at most,
never a password, an OTP, a name or an ID number.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from kami_events.catalogue.common import AggregateEvent, Id, Priority, Reason, UtcDatetime
from kami_events.money import Fen

SellerCategory = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
]
"""A seller's category: the slug of the catalog category it was approved to sell."""

MaskedPhone = Annotated[str, Field(pattern=r"^\d{3}\*{4}\d{4}$", examples=["138****1234"])]
"""A mainland mobile number with its middle four digits masked."""


class Role(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    SUPPORT = "support"
    OPERATOR = "operator"


class KycTier(StrEnum):
    """Verification levels, lowest first. A user who has not verified a phone has
    no tier and cannot pay."""

    PHONE = "phone"
    REAL_NAME = "real_name"
    ADVANCED = "advanced"


class SuspensionReason(StrEnum):
    FRAUD_SUSPECTED = "fraud_suspected"
    CHARGEBACK_ABUSE = "chargeback_abuse"
    TERMS_VIOLATION = "terms_violation"
    SELLER_MISCONDUCT = "seller_misconduct"
    USER_REQUEST = "user_request"


class UserEvent(AggregateEvent):
    """A user account: registration, phone and KYC verification, roles, suspension
    (aggregate `identity.user`, id = user id). Main consumers: payment (daily limits,
    suspended buyers), catalog (sellers), delivery and aftersales (priorities)."""

    abstract = True
    aggregate_type: ClassVar[str] = "identity.user"
    aggregate_id_field: ClassVar[str] = "user_id"

    user_id: Id


class UserRegistered(UserEvent):
    """A user signed up with a phone number (not yet verified); every user starts
    as a buyer. Consumed by catalog and aftersales (user directory), CRM."""

    phone_masked: MaskedPhone
    roles: list[Role] = Field(min_length=1)


class PhoneVerified(UserEvent):
    """The user proved control of the phone number with an OTP. Identity also
    raises `IdentityVerified{tier: phone}` in the same commit. Consumed by payment
    and aftersales (contactable buyer)."""

    phone_masked: MaskedPhone


class IdentityVerified(UserEvent):
    """The user reached a KYC tier, which grants the limits and priorities
    published here; consumers take them from this event, not from their own
    configuration. Consumed by payment (daily payment limit), delivery (delivery
    priority) and aftersales (ticket priority)."""

    tier: KycTier
    previous_tier: KycTier | None
    daily_payment_limit: Fen = Field(
        description="Most a buyer of this tier may pay per calendar day (Asia/Shanghai), in fen."
    )
    delivery_priority: Priority
    aftersales_priority: Priority


class SellerApproved(UserEvent):
    """An operator approved the user as a seller: it may now top up a deposit,
    import keys and list offers. Consumed by payment (opens the seller's balance
    and deposit accounts), catalog, inventory."""

    shop_name: str = Field(min_length=1, max_length=100)
    approved_by: Id = Field(description="The operator's user id.")
    category: SellerCategory | None = Field(
        default=None,
        description=(
            "What the seller was approved to sell (a catalog category slug, e.g. `games`), "
            "chosen by the operator: payment's deposit minimum depends on it. "
            "Null: the default minimum."
        ),
    )


class UserSuspended(UserEvent):
    """The account is suspended: it can neither buy nor sell until `until`
    (or indefinitely when `until` is null). Consumed by payment (refuses its
    payments), catalog (delists a seller's offers), ordering (refuses new orders),
    aftersales."""

    reason: SuspensionReason
    detail: Reason | None = None
    suspended_by: Id = Field(description="The operator's user id, or `system`.")
    until: UtcDatetime | None = None
