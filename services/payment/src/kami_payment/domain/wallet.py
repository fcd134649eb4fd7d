"""The wallet's payment password: a six-digit PIN, as Chinese wallets use.

It is the wallet channel's second factor (verification layer 1): a stolen
session token alone cannot spend the buyer's balance. Only its argon2id hash
is stored; it never appears in an event or a log.
"""

from __future__ import annotations

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
