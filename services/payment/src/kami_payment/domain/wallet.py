"""The wallet's payment password: a six-digit PIN, as Chinese wallets use.

It is the wallet channel's second factor (verification layer 1): a stolen
session token alone cannot spend the buyer's balance. Only its argon2id hash
is stored; it never appears in an event or a log.

Password-free small payments (小额免密), as mainstream wallets offer them: off
by default; the buyer turns them on with the payment password, choosing a
per-payment limit (at most 200 yuan) and a daily cap. A wallet payment within
both may then leave the password out; the KYC tier's daily limit still
applies on top, and such a payment is marked (`second_factor_waived`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kami_payment.domain.refusals import RefusalKind, Refused

PIN_LENGTH = 6
_RUNS = ("0123456789", "9876543210")


def check_payment_password(pin: str) -> None:
    """Six digits, not trivially guessable (one repeated digit, or a run like 123456)."""
    if len(pin) != PIN_LENGTH or not pin.isascii() or not pin.isdigit():
        raise Refused(
            "invalid_payment_password",
            f"A payment password is exactly {PIN_LENGTH} digits.",
            RefusalKind.INVALID,
        )
    if len(set(pin)) == 1 or any(pin in run for run in _RUNS):
        raise Refused(
            "weak_payment_password",
            "Choose a payment password that is not one repeated digit or a run like 123456.",
            RefusalKind.INVALID,
        )


# The most a single password-free payment may be, whatever a deployment sets: 200 yuan.
PASSWORD_FREE_MAX_PER_PAYMENT = 20_000


@dataclass(frozen=True)
class PasswordFreeBounds:
    """What a buyer may choose: the deployment's ceilings, in fen."""

    max_per_payment: int = PASSWORD_FREE_MAX_PER_PAYMENT
    max_daily_cap: int = 100_000


@dataclass(frozen=True)
class PasswordFree:
    """A buyer's password-free setting; the default is off."""

    enabled: bool = False
    per_payment_limit: int = 0
    daily_cap: int = 0

    @classmethod
    def enabled_with(
        cls, per_payment_limit: int | None, daily_cap: int | None, bounds: PasswordFreeBounds
    ) -> PasswordFree:
        ceiling = min(bounds.max_per_payment, PASSWORD_FREE_MAX_PER_PAYMENT)
        if per_payment_limit is None or daily_cap is None:
            raise Refused(
                "password_free_limits_required",
                "Turning on password-free payments needs a per_payment_limit and a daily_cap "
                "(fen).",
                RefusalKind.INVALID,
            )
        if not 0 < per_payment_limit <= ceiling:
            raise Refused(
                "password_free_limit_too_high",
                f"A password-free payment may be at most {ceiling} fen; "
                f"{per_payment_limit} fen is not allowed.",
                RefusalKind.INVALID,
            )
        if not per_payment_limit <= daily_cap <= bounds.max_daily_cap:
            raise Refused(
                "invalid_password_free_cap",
                f"The daily cap must be from the per-payment limit ({per_payment_limit} fen) "
                f"to {bounds.max_daily_cap} fen; {daily_cap} fen is not allowed.",
                RefusalKind.INVALID,
            )
        return cls(True, per_payment_limit, daily_cap)

    def refusal_for(self, amount: int) -> Refused | None:
        """Why a payment of `amount` fen needs the password anyway (None if it
        may go without, the daily cap permitting)."""
        if not self.enabled:
            return password_required("Paying from the wallet needs your payment password.")
        if amount > self.per_payment_limit:
            return password_required(
                f"This payment of {amount} fen is over your password-free limit of "
                f"{self.per_payment_limit} fen: it needs your payment password."
            )
        return None

    def over_cap(self, amount: int, spent_today: int) -> Refused:
        return password_required(
            f"Paying {amount} fen without the password would bring today's password-free "
            f"payments to {spent_today + amount} fen, over your daily cap of "
            f"{self.daily_cap} fen: this payment needs your payment password."
        )


def password_required(message: str) -> Refused:
    return Refused("payment_password_required", message, RefusalKind.INVALID)
