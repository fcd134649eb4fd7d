"""Identity's HTTP API: thin routes that validate, dispatch to `handlers` and
shape the answer. Every refusal is a 4xx with a stable `code` (see
`install_rejection_handler`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from kami_events.catalogue.identity import KycTier, Role, SellerCategory, SuspensionReason
from kami_events.money import Fen
from kami_identity import handlers
from kami_identity.domain.advanced import AdvancedStatus, AdvancedVerification
from kami_identity.domain.rejections import (
    ChallengeFailed,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Rejected,
    TooManyRequests,
    Unauthenticated,
)
from kami_identity.domain.seller_application import ApplicationStatus, SellerApplication
from kami_identity.domain.tiers import TIER_ORDER
from kami_identity.domain.user import User
from kami_identity.handlers import IdentityDeps
from kami_web.auth import CurrentUser, Principal, require_roles
from kami_web.errors import ErrorResponse, error_body

router = APIRouter()


def _deps(request: Request) -> IdentityDeps:
    deps: IdentityDeps = request.app.state.identity
    return deps


Deps = Annotated[IdentityDeps, Depends(_deps)]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in statuses}


# Bodies ------------------------------------------------------------------

PhoneNumber = Annotated[
    str, Field(min_length=11, max_length=20, examples=["13812345678"], description="Mobile number")
]


class CodeRequest(BaseModel):
    phone: PhoneNumber


class CodeSent(BaseModel):
    expires_in_seconds: int
    resend_after_seconds: int


class PhoneVerificationRequest(BaseModel):
    phone: PhoneNumber
    code: str = Field(pattern=r"^\d{6}$", description="The 6-digit code from the SMS")


class PhoneVerified(BaseModel):
    verification_token: str = Field(description="Proof of the phone for `POST /users`")
    expires_at: datetime


class RegistrationRequest(BaseModel):
    verification_token: str = Field(min_length=1, max_length=200)
    password: str = Field(
        min_length=1, max_length=128, description="8-128 characters, letters and digits"
    )


class LoginRequest(BaseModel):
    phone: PhoneNumber
    password: str = Field(min_length=1, max_length=128)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class Tokens(BaseModel):
    user_id: str
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds the access token is valid")
    refresh_token: str = Field(description="Single use: each refresh returns a new one")
    refresh_expires_at: datetime


class RealNameRequest(BaseModel):
    legal_name: str = Field(min_length=1, max_length=40, examples=["张三"])
    id_number: str = Field(
        min_length=1, max_length=18, description="18-character resident ID number"
    )


class AdvancedRequest(BaseModel):
    liveness_token: str = Field(
        min_length=8, max_length=512, description="The face-verification SDK's result token"
    )


class AdvancedVerificationView(BaseModel):
    request_id: str
    status: AdvancedStatus
    attempts: int
    submitted_at: datetime
    decided_at: datetime | None
    rejection_reason: str | None

    @classmethod
    def of(cls, request: AdvancedVerification) -> AdvancedVerificationView:
        return cls(
            request_id=request.request_id,
            status=request.status,
            attempts=request.attempts,
            submitted_at=request.submitted_at,
            decided_at=request.decided_at,
            rejection_reason=request.rejection_reason,
        )


class UserView(BaseModel):
    user_id: str
    phone_masked: str | None
    roles: list[Role]
    tier: KycTier | None
    suspended: bool

    @classmethod
    def of(cls, user: User, now: datetime) -> UserView:
        return cls(
            user_id=user.id,
            phone_masked=user.phone_masked,
            roles=sorted(user.roles),
            tier=user.tier,
            suspended=user.is_suspended(now),
        )


class TierTermsView(BaseModel):
    daily_payment_limit: Fen = Field(description="In fen, per calendar day (Asia/Shanghai)")
    delivery_priority: int
    aftersales_priority: int


class SellerApplicationRequest(BaseModel):
    shop_name: str = Field(min_length=1, max_length=100)
    category: SellerCategory | None = Field(
        default=None, description="What the applicant means to sell: a catalog category slug."
    )


class SellerApplicationView(BaseModel):
    user_id: str
    shop_name: str
    category: str | None
    status: ApplicationStatus
    submitted_at: datetime
    decided_at: datetime | None
    rejection_reason: str | None

    @classmethod
    def of(cls, application: SellerApplication) -> SellerApplicationView:
        return cls(
            user_id=application.user_id,
            shop_name=application.shop_name,
            category=application.category,
            status=application.status,
            submitted_at=application.submitted_at,
            decided_at=application.decided_at,
            rejection_reason=application.rejection_reason,
        )


class ApplicantView(SellerApplicationView):
    phone_masked: str | None
    tier: KycTier | None
    suspended: bool


class ApplicantList(BaseModel):
    applications: list[ApplicantView]


class RejectionRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class PendingVerificationView(BaseModel):
    user_id: str
    request_id: str
    phone_masked: str | None
    tier: KycTier | None
    attempts: int
    submitted_at: datetime
    next_attempt_at: datetime


class PendingVerificationList(BaseModel):
    verifications: list[PendingVerificationView]


class SuspendedUserView(BaseModel):
    user_id: str
    phone_masked: str | None
    roles: list[Role]
    reason: SuspensionReason
    detail: str | None
    suspended_by: str
    until: datetime | None = Field(description="Null: indefinitely")


class SuspendedUserList(BaseModel):
    users: list[SuspendedUserView]


class ProfileView(BaseModel):
    user_id: str
    phone_masked: str | None
    roles: list[Role]
    tier: KycTier | None
    limits: TierTermsView | None
    shop_name: str | None
    seller_category: str | None = Field(
        default=None, description="The category the seller was approved for."
    )
    legal_name_masked: str | None
    id_number_masked: str | None = Field(examples=["1101**********1234"])
    advanced_verification: AdvancedVerificationView | None
    seller_application: SellerApplicationView | None = Field(
        default=None, description="The caller's application to sell, if any"
    )


class SellerApprovalRequest(BaseModel):
    shop_name: str = Field(min_length=1, max_length=100)
    category: SellerCategory | None = Field(
        default=None,
        description=(
            "What the seller is approved to sell: a catalog category slug (e.g. `games`). "
            "Payment holds the seller to that category's deposit minimum; none: the default."
        ),
    )


class SuspensionRequest(BaseModel):
    reason: SuspensionReason
    detail: str | None = Field(default=None, max_length=500)
    until: AwareDatetime | None = Field(default=None, description="Omit for indefinitely")


# Routes ------------------------------------------------------------------


@router.post(
    "/auth/otp",
    tags=["registration"],
    summary="Send a 6-digit code to a phone (step 1 of registration)",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_errors(409, 422, 429),
)
async def request_code(body: CodeRequest, request: Request, deps: Deps) -> CodeSent:
    sent = await handlers.request_code(deps, body.phone, _client_ip(request))
    return CodeSent(
        expires_in_seconds=sent.expires_in_seconds, resend_after_seconds=sent.resend_after_seconds
    )


@router.post(
    "/auth/otp/verify",
    tags=["registration"],
    summary="Check the code; returns a token proving the phone (step 2)",
    responses=_errors(400, 409, 422, 429),
)
async def verify_phone(body: PhoneVerificationRequest, deps: Deps) -> PhoneVerified:
    proof = await handlers.verify_phone(deps, body.phone, body.code)
    return PhoneVerified(verification_token=proof.token, expires_at=proof.expires_at)


@router.post(
    "/users",
    tags=["registration"],
    summary="Register the proven phone with a password (step 3)",
    status_code=status.HTTP_201_CREATED,
    responses=_errors(401, 409, 422, 429),
)
async def register(body: RegistrationRequest, request: Request, deps: Deps) -> UserView:
    user = await handlers.register(
        deps, body.verification_token, body.password, _client_ip(request)
    )
    return UserView.of(user, deps.clock())


@router.post(
    "/auth/login",
    tags=["sessions"],
    summary="Log in with phone and password: an access token and a refresh token",
    responses=_errors(401, 403, 422, 429),
)
async def log_in(body: LoginRequest, request: Request, deps: Deps) -> Tokens:
    return _tokens(await handlers.log_in(deps, body.phone, body.password, _client_ip(request)))


@router.post(
    "/auth/refresh",
    tags=["sessions"],
    summary="Trade a refresh token for new tokens (a reused one ends the session)",
    responses=_errors(401, 403, 409, 422),
)
async def refresh(body: RefreshRequest, deps: Deps) -> Tokens:
    return _tokens(await handlers.refresh(deps, body.refresh_token))


@router.post(
    "/auth/logout",
    tags=["sessions"],
    summary="End the session of this refresh token",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_errors(401, 422),
)
async def log_out(body: RefreshRequest, deps: Deps) -> Response:
    await handlers.log_out(deps, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class TierView(TierTermsView):
    tier: KycTier


@router.get(
    "/tiers",
    tags=["verification"],
    summary="Every verification tier and what it grants, lowest first (public)",
)
async def tiers(deps: Deps) -> list[TierView]:
    table = deps.policy.tiers
    return [TierView(tier=tier, **table.terms(tier).model_dump()) for tier in TIER_ORDER]


@router.get(
    "/me",
    tags=["profile"],
    summary="The caller's profile: masked personal data, tier, limits, roles",
    responses=_errors(401, 403),
)
async def me(user: CurrentUser, deps: Deps) -> ProfileView:
    found = await handlers.profile(deps, user.subject)
    return ProfileView(
        user_id=found.user_id,
        phone_masked=found.phone_masked,
        roles=sorted(found.roles),
        tier=found.tier,
        limits=TierTermsView(**found.terms.model_dump()) if found.terms else None,
        shop_name=found.shop_name,
        seller_category=found.seller_category,
        legal_name_masked=found.legal_name_masked,
        id_number_masked=found.id_number_masked,
        advanced_verification=(
            AdvancedVerificationView.of(found.advanced_verification)
            if found.advanced_verification
            else None
        ),
        seller_application=(
            SellerApplicationView.of(found.seller_application) if found.seller_application else None
        ),
    )


@router.post(
    "/me/real-name",
    tags=["verification"],
    summary="Real-name verification (L1): legal name and resident ID number",
    responses=_errors(401, 403, 409, 422),
)
async def submit_real_name(body: RealNameRequest, user: CurrentUser, deps: Deps) -> UserView:
    verified = await handlers.submit_real_name(deps, user.subject, body.legal_name, body.id_number)
    return UserView.of(verified, deps.clock())


@router.post(
    "/me/advanced-verification",
    tags=["verification"],
    summary="Advanced verification (L2) by the provider; may stay pending and be retried",
    responses=_errors(401, 403, 409, 422),
)
async def submit_advanced(
    body: AdvancedRequest, user: CurrentUser, deps: Deps
) -> AdvancedVerificationView:
    request = await handlers.submit_advanced(deps, user.subject, body.liveness_token)
    return AdvancedVerificationView.of(request)


@router.get(
    "/me/advanced-verification",
    tags=["verification"],
    summary="The state of the caller's advanced verification",
    responses=_errors(401, 404),
)
async def advanced_status(user: CurrentUser, deps: Deps) -> AdvancedVerificationView:
    return AdvancedVerificationView.of(await handlers.advanced_status(deps, user.subject))


@router.post(
    "/me/seller-application",
    tags=["sellers"],
    summary="Apply to sell (real-name verified users); an operator decides",
    responses=_errors(401, 403, 404, 409, 422),
)
async def apply_as_seller(
    body: SellerApplicationRequest, user: CurrentUser, deps: Deps
) -> SellerApplicationView:
    application = await handlers.apply_as_seller(deps, user.subject, body.shop_name, body.category)
    return SellerApplicationView.of(application)


@router.get(
    "/seller-applications",
    tags=["operators"],
    summary="Applications to sell waiting for a decision, oldest first (operator)",
    responses=_errors(401, 403),
)
async def seller_applications(
    operator: Operator, deps: Deps, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> ApplicantList:
    found = await handlers.pending_seller_applications(deps, limit)
    return ApplicantList(
        applications=[
            ApplicantView(
                **SellerApplicationView.of(applicant.application).model_dump(),
                phone_masked=applicant.phone_masked,
                tier=applicant.tier,
                suspended=applicant.suspended,
            )
            for applicant in found
        ]
    )


@router.post(
    "/seller-applications/{user_id}/rejection",
    tags=["operators"],
    summary="Turn down an application to sell (operator); the user may apply again",
    responses=_errors(401, 403, 404, 409, 422),
)
async def reject_seller_application(
    user_id: str, body: RejectionRequest, operator: Operator, deps: Deps
) -> SellerApplicationView:
    rejected = await handlers.reject_seller_application(
        deps, operator.subject, user_id, body.reason
    )
    return SellerApplicationView.of(rejected)


@router.get(
    "/verifications/pending",
    tags=["operators"],
    summary="Advanced (L2) verifications the provider has not decided, oldest first (operator)",
    responses=_errors(401, 403),
)
async def pending_verifications(
    operator: Operator, deps: Deps, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> PendingVerificationList:
    found = await handlers.pending_verifications(deps, limit)
    return PendingVerificationList(
        verifications=[
            PendingVerificationView(
                user_id=pending.request.user_id,
                request_id=pending.request.request_id,
                phone_masked=pending.phone_masked,
                tier=pending.tier,
                attempts=pending.request.attempts,
                submitted_at=pending.request.submitted_at,
                next_attempt_at=pending.request.next_attempt_at,
            )
            for pending in found
        ]
    )


@router.get(
    "/users/suspended",
    tags=["operators"],
    summary="Users suspended now, most recently first (operator)",
    responses=_errors(401, 403),
)
async def suspended_users(
    operator: Operator, deps: Deps, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> SuspendedUserList:
    found = await handlers.suspended_users(deps, limit)
    return SuspendedUserList(
        users=[
            SuspendedUserView(
                user_id=user.user_id,
                phone_masked=user.phone_masked,
                roles=sorted(user.roles),
                reason=user.reason,
                detail=user.detail,
                suspended_by=user.suspended_by,
                until=user.until,
            )
            for user in found
        ]
    )


@router.post(
    "/users/{user_id}/seller-approval",
    tags=["operators"],
    summary="Approve the user as a seller (operator)",
    responses=_errors(401, 403, 404, 409, 422),
)
async def approve_seller(
    user_id: str, body: SellerApprovalRequest, operator: Operator, deps: Deps
) -> UserView:
    user = await handlers.approve_seller(
        deps, operator.subject, user_id, body.shop_name, body.category
    )
    return UserView.of(user, deps.clock())


@router.post(
    "/users/{user_id}/suspension",
    tags=["operators"],
    summary="Suspend the user and end their sessions (operator)",
    responses=_errors(401, 403, 404, 409, 422),
)
async def suspend(
    user_id: str, body: SuspensionRequest, operator: Operator, deps: Deps
) -> UserView:
    user = await handlers.suspend_user(
        deps, operator.subject, user_id, body.reason, body.detail, body.until
    )
    return UserView.of(user, deps.clock())


def _tokens(pair: handlers.TokenPair) -> Tokens:
    return Tokens(
        user_id=pair.user_id,
        access_token=pair.access_token,
        expires_in=pair.expires_in_seconds,
        refresh_token=pair.refresh_token,
        refresh_expires_at=pair.refresh_expires_at,
    )


# Refusals ----------------------------------------------------------------

_STATUS_OF: tuple[tuple[type[Rejected], int], ...] = (
    (InvalidInput, 422),
    (ChallengeFailed, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyRequests, 429),
)


def status_of(rejection: Rejected) -> int:
    return next((code for kind, code in _STATUS_OF if isinstance(rejection, kind)), 400)


def install_rejection_handler(app: FastAPI) -> None:
    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> JSONResponse:
        headers = (
            {"Retry-After": str(exc.retry_after_seconds)}
            if isinstance(exc, TooManyRequests)
            else None
        )
        return JSONResponse(
            error_body(exc.code, exc.message), status_code=status_of(exc), headers=headers
        )
