"""The `User` aggregate: one event stream per user (id = user id).

Command methods check the rules and trigger events; `apply` is the only place
state changes, and rebuilds a user from its stream. Personal data (the phone
number, password hash, ID number) lives in identity's own stores, never in
the stream: the aggregate knows only what the events say.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import ClassVar

from kami_events.aggregate import Aggregate
from kami_events.catalogue.identity import (
    IdentityVerified,
    KycTier,
    PhoneVerified,
    Role,
    SellerApproved,
    SuspensionReason,
    UserRegistered,
    UserSuspended,
)
from kami_events.event import Event
from kami_identity.domain.phone import Phone
from kami_identity.domain.rejections import Conflict, Forbidden, InvalidInput
from kami_identity.domain.tiers import TierTable, tier_rank


class User(Aggregate):
    aggregate_type: ClassVar[str] = "identity.user"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.phone_masked: str | None = None
        self.roles: frozenset[Role] = frozenset()
        self.phone_verified = False
        self.tier: KycTier | None = None
        self.shop_name: str | None = None
        self.seller_category: str | None = None
        self.suspension: UserSuspended | None = None

    # Commands -------------------------------------------------------------

    @classmethod
    def register(
        cls, user_id: str, phone: Phone, staff_roles: Iterable[Role], tiers: TierTable
    ) -> User:
        """A new account for a phone whose OTP was already checked: it is
        registered, its phone verified and tier L0 granted in one commit."""
        user = cls(user_id)
        roles = sorted({Role.BUYER, *staff_roles})
        user._trigger(UserRegistered(user_id=user_id, phone_masked=phone.masked, roles=roles))
        user._trigger(PhoneVerified(user_id=user_id, phone_masked=phone.masked))
        user._grant(KycTier.PHONE, tiers)
        return user

    def verify_real_name(self, tiers: TierTable, now: datetime) -> None:
        """L1, once the legal name and ID number were checked and the ID claimed."""
        self.check_can_verify_real_name(now)
        self._grant(KycTier.REAL_NAME, tiers)

    def check_can_verify_real_name(self, now: datetime) -> None:
        self.ensure_active(now)
        if tier_rank(self.tier) >= tier_rank(KycTier.REAL_NAME):
            raise Conflict("already_verified", "Real-name verification is already complete.")
        if self.tier is not KycTier.PHONE:
            raise Conflict("phone_not_verified", "Verify the phone number first.")

    def verify_advanced(self, tiers: TierTable, now: datetime) -> None:
        """L2, granted only on the verification provider's approval."""
        self.check_can_verify_advanced(now)
        self._grant(KycTier.ADVANCED, tiers)

    def check_can_verify_advanced(self, now: datetime) -> None:
        self.ensure_active(now)
        if self.tier is KycTier.ADVANCED:
            raise Conflict("already_verified", "Advanced verification is already complete.")
        if self.tier is not KycTier.REAL_NAME:
            raise Conflict(
                "real_name_required", "Complete real-name verification (L1) before advanced (L2)."
            )

    def approve_seller(
        self, shop_name: str, operator_id: str, now: datetime, category: str | None = None
    ) -> None:
        """`category`: what the operator approves the seller to sell (a catalog
        category slug); payment holds the seller to that category's deposit
        minimum."""
        if self.is_suspended(now):
            raise Conflict("user_suspended", "A suspended user cannot be approved as a seller.")
        self._check_can_become_seller()
        self._trigger(
            SellerApproved(
                user_id=self.id,
                shop_name=shop_name.strip(),
                approved_by=operator_id,
                category=category,
            )
        )

    def check_can_apply_as_seller(self, now: datetime) -> None:
        """The user's own application: an active, real-name verified non-seller."""
        self.ensure_active(now)
        self._check_can_become_seller()

    def _check_can_become_seller(self) -> None:
        if Role.SELLER in self.roles:
            raise Conflict("already_seller", "The user is already an approved seller.")
        if tier_rank(self.tier) < tier_rank(KycTier.REAL_NAME):
            raise Conflict(
                "real_name_required", "A seller must complete real-name verification first."
            )

    def suspend(
        self,
        reason: SuspensionReason,
        *,
        by: str,
        now: datetime,
        detail: str | None = None,
        until: datetime | None = None,
    ) -> None:
        if by == self.id:
            raise Conflict("cannot_suspend_self", "An operator cannot suspend their own account.")
        if until is not None and until <= now:
            raise InvalidInput("invalid_until", "A suspension must end in the future.")
        if self.is_suspended(now):
            raise Conflict("already_suspended", "The user is already suspended.")
        self._trigger(
            UserSuspended(
                user_id=self.id, reason=reason, detail=detail, suspended_by=by, until=until
            )
        )

    # Queries --------------------------------------------------------------

    def is_suspended(self, now: datetime) -> bool:
        if self.suspension is None:
            return False
        return self.suspension.until is None or now < self.suspension.until

    def ensure_active(self, now: datetime) -> None:
        """For the user's own actions: a suspended account can do nothing."""
        if self.is_suspended(now):
            raise Forbidden("account_suspended", "This account is suspended.")

    # State ----------------------------------------------------------------

    def _grant(self, tier: KycTier, tiers: TierTable) -> None:
        terms = tiers.terms(tier)
        self._trigger(
            IdentityVerified(
                user_id=self.id,
                tier=tier,
                previous_tier=self.tier,
                daily_payment_limit=terms.daily_payment_limit,
                delivery_priority=terms.delivery_priority,
                aftersales_priority=terms.aftersales_priority,
            )
        )

    def apply(self, event: Event) -> None:
        match event:
            case UserRegistered():
                self.phone_masked = event.phone_masked
                self.roles = frozenset(event.roles)
            case PhoneVerified():
                self.phone_verified = True
            case IdentityVerified():
                self.tier = event.tier
            case SellerApproved():
                self.roles = self.roles | {Role.SELLER}
                self.shop_name = event.shop_name
                self.seller_category = event.category
            case UserSuspended():
                self.suspension = event
            case _:
                super().apply(event)
