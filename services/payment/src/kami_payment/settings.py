"""Configuration of the payment service, from `KAMI_*` environment variables.

Secrets have no defaults: the service does not start without
`KAMI_PAYMENT_WECHAT_PAY_SECRET` and `KAMI_PAYMENT_ALIPAY_SECRET` (the HMAC
keys each channel signs its notifications with, at least 32 characters) and
the `KAMI_AUTH_*` settings every service reads.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from kami_events.catalogue.identity import SellerCategory
from kami_events.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    service_name: str = "payment"
    http_port: int = Field(default=8105, ge=1, le=65535)

    # Channel secrets: each simulated gateway signs its notifications with its own.
    payment_wechat_pay_secret: SecretStr = Field(min_length=32)
    payment_alipay_secret: SecretStr = Field(min_length=32)

    # Settlement to the seller: when the keys are delivered (`OrderDelivered`,
    # the default) or when the guarantee window has passed (`OrderCompleted`).
    payment_settle_on: Literal["delivered", "completed"] = "delivered"
    # The platform's fee on each settled order, in basis points (500 = 5%).
    payment_platform_fee_bps: int = Field(default=500, ge=0, le=10_000)

    # A seller's deposit below its minimum (fen) gets `DepositBelowMinimum` on each
    # deduction, and its offers are delisted. The minimum depends on the category
    # the operator approved the seller for (`SellerApproved.category`), as JSON:
    # `KAMI_PAYMENT_DEPOSIT_MINIMUMS='{"games": 200000, "life": 50000}'`; a seller
    # with no category, or one not listed, keeps `KAMI_PAYMENT_DEPOSIT_MINIMUM`.
    payment_deposit_minimum: int = Field(default=100_000, ge=0)
    payment_deposit_minimums: dict[SellerCategory, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict
    )

    # Daily payment limit (fen) of a buyer identity has announced no tier for.
    payment_default_daily_limit: int = Field(default=50_000, ge=0)

    # Wrong payment passwords: after this many in a row the wallet locks, and
    # the payment being attempted fails with `second_factor_failed`.
    payment_password_max_attempts: int = Field(default=5, ge=1, le=20)
    payment_password_lock_minutes: int = Field(default=30, ge=1)

    # `POST /payments` for an order payment has heard of but not yet as
    # reserved (its consumer a moment behind ordering's answer to the buyer)
    # waits this long for the reservation before answering `order_not_reserved`.
    payment_reservation_wait_seconds: float = Field(default=5.0, ge=0, le=30)

    # Top-ups through a gateway: bounds and how long the pay instruction lives.
    payment_top_up_max: int = Field(default=5_000_000, ge=1)
    payment_top_up_ttl_minutes: int = Field(default=30, ge=1)

    # The gateway poller: trades with no callback after this long are queried.
    payment_callback_grace_seconds: float = Field(default=30.0, ge=0)
    payment_gateway_poll_seconds: float = Field(default=5.0, gt=0)
    # The ledger sweeper: movements not finished after this long are finished by it.
    payment_movement_grace_seconds: float = Field(default=10.0, ge=0)
    payment_sweep_seconds: float = Field(default=5.0, gt=0)
    payment_metrics_seconds: float = Field(default=15.0, gt=0)

    # The local stand-in for the real gateways (`/simulator/...`): never in production.
    payment_simulator_enabled: bool = False
    payment_simulator_database: str = "kami_payment_gateway_simulator"

    # argon2id cost of payment passwords: OWASP's 12 MiB, 3 passes, 1 lane (the
    # equivalent of its 19 MiB / 2 passes that needs less memory; about 21 ms
    # of a core here). Lower it only in tests. A stored hash made with other
    # parameters is rehashed at its next success.
    payment_argon2_time_cost: int = Field(default=3, ge=1)
    payment_argon2_memory_kib: int = Field(default=12 * 1024, ge=8)
    payment_argon2_parallelism: int = Field(default=1, ge=1)
    # The bounded pool of password checks: each takes its memory cost while it
    # runs, so this many at once bound the memory; beyond `max_queued` waiting,
    # or an estimated wait over `max_wait_seconds`, a request gets 429 with
    # Retry-After and nothing changes.
    payment_password_checks_concurrency: int = Field(default=2, ge=1, le=64)
    payment_password_checks_max_queued: int = Field(default=64, ge=0)
    payment_password_checks_max_wait_seconds: float = Field(default=2.0, gt=0)

    # Password-free small payments (小额免密): the most a buyer may choose, in
    # fen, per payment (never above 200 yuan) and per day.
    payment_password_free_max_per_payment: int = Field(default=20_000, ge=1, le=20_000)
    payment_password_free_max_daily_cap: int = Field(default=100_000, ge=1)
