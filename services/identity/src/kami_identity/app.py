"""Wiring: settings -> stores, keys, adapters -> handlers -> HTTP app."""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from kami_events.catalogue.identity import Role
from kami_events.clock import Clock, utc_now
from kami_events.repository import AggregateRepository
from kami_events.runtime import ServiceRuntime
from kami_identity.adapters.crypto import FieldCipher, Keyring, decode_key
from kami_identity.adapters.mongo import IdentityStores
from kami_identity.adapters.passwords import PasswordHasher
from kami_identity.adapters.sms import RecordingSmsSender, SmsSender
from kami_identity.adapters.verification_provider import (
    AdvancedVerificationProvider,
    SimulatedVerificationProvider,
)
from kami_identity.api import install_rejection_handler, router
from kami_identity.domain.advanced import RetryPolicy
from kami_identity.domain.otp import OtpPolicy
from kami_identity.domain.rate_limits import RateLimit
from kami_identity.domain.user import User
from kami_identity.handlers import IdentityDeps, IdentityPolicy, retry_advanced_verifications
from kami_identity.metrics import PASSWORD_CHECKS
from kami_identity.settings import IdentitySettings, RateLimitSetting
from kami_web.app import create_app as create_service_app
from kami_web.auth import AuthSettings, TokenVerifier, install_auth
from kami_web.passwords import Argon2Parameters, CheckPoolLimits

DESCRIPTION = """\
Users, phone verification, KYC tiers, roles and tokens.

**Registration** takes three calls: `POST /auth/otp` sends a 6-digit code by
SMS; `POST /auth/otp/verify` checks it and returns a `verification_token`
proving the phone; `POST /users` registers that phone with a password (tier
`phone`, role `buyer`). Then `POST /auth/login` returns a short-lived access
token (ES256 JWT, verified by every service with `KAMI_AUTH_PUBLIC_KEY`) and a
refresh token. `POST /auth/refresh` rotates the refresh token: each one works
once, and presenting a used one ends the whole session.

**Verification**: `POST /me/real-name` (L1: legal name and resident ID number)
and `POST /me/advanced-verification` (L2, decided by an external provider).

Every error is a 4xx: `{"error": {"code": "...", "message": "..."}}`.
"""


def _limit(name: str, setting: RateLimitSetting) -> RateLimit:
    return RateLimit(name, setting.limit, timedelta(seconds=setting.window_seconds))


def policy_from(settings: IdentitySettings) -> IdentityPolicy:
    staff: dict[str, set[Role]] = {}
    for phone in settings.identity_operator_phones:
        staff.setdefault(phone, set()).add(Role.OPERATOR)
    for phone in settings.identity_support_phones:
        staff.setdefault(phone, set()).add(Role.SUPPORT)
    limits = settings.identity_rate_limits
    return IdentityPolicy(
        tiers=settings.identity_tiers,
        otp=OtpPolicy(
            ttl=timedelta(seconds=settings.identity_otp_ttl_seconds),
            max_attempts=settings.identity_otp_max_attempts,
            resend_cooldown=timedelta(seconds=settings.identity_otp_resend_cooldown_seconds),
            lock_duration=timedelta(seconds=settings.identity_otp_lock_seconds),
        ),
        phone_proof_ttl=timedelta(seconds=settings.identity_phone_proof_ttl_seconds),
        access_token_ttl=timedelta(seconds=settings.identity_access_token_ttl_seconds),
        refresh_token_ttl=timedelta(seconds=settings.identity_refresh_token_ttl_seconds),
        staff_roles={phone: frozenset(roles) for phone, roles in staff.items()},
        otp_per_phone=_limit("otp-phone", limits.otp_per_phone),
        otp_per_ip=_limit("otp-ip", limits.otp_per_ip),
        login_per_phone=_limit("login-phone", limits.login_per_phone),
        login_per_ip=_limit("login-ip", limits.login_per_ip),
        register_per_ip=_limit("register-ip", limits.register_per_ip),
        advanced_retry=RetryPolicy(
            base_delay=timedelta(seconds=settings.identity_l2_retry_base_seconds),
            max_delay=timedelta(seconds=settings.identity_l2_retry_max_seconds),
            max_attempts=settings.identity_l2_max_attempts,
        ),
        provider_timeout=timedelta(seconds=settings.identity_l2_provider_timeout_seconds),
        id_claim_grace=timedelta(seconds=settings.identity_id_claim_grace_seconds),
    )


def check_key_pair(private_key_pem: str, public_key_pem: str) -> None:
    """Refuse to start when the signing key's tokens would not verify elsewhere."""
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    public = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
        private.curve, ec.SECP256R1
    ):
        raise ValueError("KAMI_IDENTITY_SIGNING_KEY must be an EC P-256 private key (ES256)")
    if not isinstance(public, ec.EllipticCurvePublicKey) or (
        public.public_numbers() != private.public_key().public_numbers()
    ):
        raise ValueError("KAMI_AUTH_PUBLIC_KEY does not match KAMI_IDENTITY_SIGNING_KEY")


def create_app(
    settings: IdentitySettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock = utc_now,
    sms: SmsSender | None = None,
    provider: AdvancedVerificationProvider | None = None,
) -> FastAPI:
    settings = settings or IdentitySettings()  # from the environment
    auth = auth or AuthSettings()
    signing_key = settings.identity_signing_key.get_secret_value()
    check_key_pair(signing_key, auth.auth_public_key)

    runtime = ServiceRuntime(settings, clock=clock)
    stores = IdentityStores(runtime.db, clock=clock)
    runtime.on_start(stores.ensure_indexes)
    if sms is None:
        sink = RecordingSmsSender(
            runtime.mongo[settings.sms_sink_database]["messages"], clock=clock
        )
        runtime.on_start(sink.ensure_indexes)
        sms = sink

    deps = IdentityDeps(
        users=AggregateRepository(runtime.store, User),
        accounts=stores.accounts,
        otps=stores.otps,
        sessions=stores.sessions,
        id_claims=stores.id_claims,
        advanced=stores.advanced,
        rate_counter=stores.rate_counter,
        sms=sms,
        provider=provider
        or SimulatedVerificationProvider(
            timeouts_before_answer=settings.identity_l2_simulator_timeouts
        ),
        passwords=PasswordHasher(
            Argon2Parameters(
                time_cost=settings.identity_argon2_time_cost,
                memory_cost_kib=settings.identity_argon2_memory_kib,
                parallelism=settings.identity_argon2_parallelism,
            ),
            CheckPoolLimits(
                concurrency=settings.identity_password_checks_concurrency,
                max_queued=settings.identity_password_checks_max_queued,
                max_wait_seconds=settings.identity_password_checks_max_wait_seconds,
            ),
            PASSWORD_CHECKS,
        ),
        keys=Keyring(
            decode_key(
                settings.identity_fingerprint_key.get_secret_value(),
                name="KAMI_IDENTITY_FINGERPRINT_KEY",
            )
        ),
        cipher=FieldCipher(
            decode_key(
                settings.identity_id_number_key.get_secret_value(),
                name="KAMI_IDENTITY_ID_NUMBER_KEY",
                length=32,
            )
        ),
        signing_key_pem=signing_key,
        policy=policy_from(settings),
        clock=clock,
        seller_applications=stores.seller_applications,
        suspensions=stores.suspensions,
    )

    async def retry_advanced() -> None:
        await retry_advanced_verifications(deps)

    async def purge_expired() -> None:
        await stores.purge_expired(clock())

    runtime.every(
        "advanced-verification-retry",
        timedelta(seconds=settings.identity_l2_poll_interval_seconds),
        retry_advanced,
    )
    runtime.every(
        "purge-expired", timedelta(seconds=settings.identity_purge_interval_seconds), purge_expired
    )

    app = create_service_app(runtime, [router], title="Kami identity", description=DESCRIPTION)
    app.state.identity = deps
    app.state.stores = stores
    app.state.sms = sms
    install_auth(app, TokenVerifier(auth, now=clock))
    install_rejection_handler(app)
    return app
