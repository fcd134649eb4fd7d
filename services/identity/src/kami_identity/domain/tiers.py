"""The verification tiers and what each grants, in one configurable table.

The terms travel in `IdentityVerified`, so payment, delivery and aftersales
enforce exactly what identity granted.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, model_validator

from kami_events.catalogue.common import Priority
from kami_events.catalogue.identity import KycTier
from kami_events.money import Fen

TIER_ORDER: tuple[KycTier, ...] = (KycTier.PHONE, KycTier.REAL_NAME, KycTier.ADVANCED)


def tier_rank(tier: KycTier | None) -> int:
    """0 for no tier, then 1, 2, 3 up the ladder."""
    return 0 if tier is None else TIER_ORDER.index(tier) + 1


class TierTerms(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_payment_limit: Fen
    delivery_priority: Priority
    aftersales_priority: Priority


class TierTable(BaseModel):
    """L0 `phone`, L1 `real_name`, L2 `advanced`. Set it with `KAMI_IDENTITY_TIERS`
    as JSON, e.g. `{"phone": {"daily_payment_limit": 50000, "delivery_priority": 0,
    "aftersales_priority": 0}, "real_name": {...}, "advanced": {...}}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone: TierTerms = TierTerms(
        daily_payment_limit=50_000, delivery_priority=0, aftersales_priority=0
    )
    real_name: TierTerms = TierTerms(
        daily_payment_limit=500_000, delivery_priority=1, aftersales_priority=1
    )
    advanced: TierTerms = TierTerms(
        daily_payment_limit=5_000_000, delivery_priority=2, aftersales_priority=2
    )

    @model_validator(mode="after")
    def _higher_tiers_never_grant_less(self) -> Self:
        ladder = [self.terms(tier) for tier in TIER_ORDER]
        for lower, higher, name in zip(ladder, ladder[1:], TIER_ORDER[1:], strict=False):
            if (
                higher.daily_payment_limit < lower.daily_payment_limit
                or higher.delivery_priority < lower.delivery_priority
                or higher.aftersales_priority < lower.aftersales_priority
            ):
                raise ValueError(f"tier {name} grants less than the tier below it")
        return self

    def terms(self, tier: KycTier) -> TierTerms:
        terms: TierTerms = getattr(self, tier.value)
        return terms
