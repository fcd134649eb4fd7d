"""A user's application to sell, waiting for an operator.

Not an event: the decision is (`SellerApproved`, on the user's stream). The
application is the queue the operators work through; one per user, kept as
a compare-and-set record like the advanced verification. Once the user is a
seller the stream says so, whatever the record still says: readers check.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from kami_identity.domain.rejections import Conflict


class ApplicationStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class SellerApplication(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    shop_name: str
    category: str | None
    status: ApplicationStatus
    submitted_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    rejection_reason: str | None = None

    @classmethod
    def submit(
        cls,
        previous: SellerApplication | None,
        *,
        user_id: str,
        shop_name: str,
        category: str | None,
        now: datetime,
    ) -> SellerApplication:
        """A new application, or the pending one amended (keeping its place in
        the queue); a rejected applicant may apply again."""
        if previous is not None and previous.status is ApplicationStatus.APPROVED:
            raise Conflict("already_seller", "The user is already an approved seller.")
        keep_place = previous is not None and previous.status is ApplicationStatus.PENDING
        return cls(
            user_id=user_id,
            shop_name=shop_name.strip(),
            category=category,
            status=ApplicationStatus.PENDING,
            submitted_at=previous.submitted_at if previous and keep_place else now,
        )

    def approve(self, operator_id: str, now: datetime) -> SellerApplication:
        return self.model_copy(
            update={
                "status": ApplicationStatus.APPROVED,
                "decided_at": now,
                "decided_by": operator_id,
            }
        )

    def reject(self, operator_id: str, reason: str, now: datetime) -> SellerApplication:
        if self.status is not ApplicationStatus.PENDING:
            raise Conflict("application_not_pending", "The application was already decided.")
        return self.model_copy(
            update={
                "status": ApplicationStatus.REJECTED,
                "decided_at": now,
                "decided_by": operator_id,
                "rejection_reason": reason,
            }
        )
