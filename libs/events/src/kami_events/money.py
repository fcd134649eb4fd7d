"""Money: integer minor units (fen), never floats (DESIGN §4).

`Fen` is the type of every amount in an event: a non-negative `int`, validated
strictly, so `12.5`, `"1250"` and `True` are rejected instead of being coerced.
`Money` is the value object services compute with: an amount and its currency,
with arithmetic that never leaves integers and never mixes currencies.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

# Kami sells in renminbi only. A second currency would be a new literal value
# (a compatible widening of every event that carries a currency).
Currency = Literal["CNY"]
CNY: Currency = "CNY"

FEN_PER_YUAN = 100

# `x-unit` tells the readers of the JSON Schema (docs, AsyncAPI, BI) what the integer counts.
_IN_FEN: dict[str, Any] = {"x-unit": "fen"}

Fen = Annotated[int, Field(ge=0, strict=True, json_schema_extra=_IN_FEN)]
"""An amount in fen (1/100 yuan): a non-negative int. Strict: floats, numeric
strings and booleans are rejected rather than silently converted."""

PositiveFen = Annotated[int, Field(gt=0, strict=True, json_schema_extra=_IN_FEN)]
"""An amount in fen that must be moved at all (a price, a refund, a top-up)."""

MAX_AMOUNT = 10**12
"""The largest single amount Kami takes from outside (a price, a face value, a
top-up): ten billion yuan. Far above any card's worth, and far below what a
64-bit integer (MongoDB's widest) holds once multiplied by a quantity and
summed in the ledger."""

Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, strict=True, json_schema_extra=_IN_FEN)]
"""`Fen` as a request may state it: bounded by `MAX_AMOUNT`. (Events keep
`Fen`: a bound added to a published event would be a breaking change.)"""

PositiveAmount = Annotated[int, Field(gt=0, le=MAX_AMOUNT, strict=True, json_schema_extra=_IN_FEN)]
"""`PositiveFen` as a request may state it: 1 to `MAX_AMOUNT`."""


class CurrencyMismatch(ValueError):
    """Arithmetic or comparison between amounts in different currencies."""


class Money(BaseModel):
    """An amount of money in minor units. Immutable; arithmetic returns new values.

    Amounts are never negative: a movement's direction is said by its name or
    by the ledger side (debit/credit), not by a sign.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Fen
    currency: Currency = CNY

    @classmethod
    def fen(cls, amount: int, currency: Currency = CNY) -> Self:
        return cls(amount=amount, currency=currency)

    @classmethod
    def zero(cls, currency: Currency = CNY) -> Self:
        return cls(amount=0, currency=currency)

    @classmethod
    def parse_yuan(cls, text: str, currency: Currency = CNY) -> Self:
        """`"12.34"` -> 1234 fen. Rejects more than two decimals, signs and exponents."""
        cleaned = text.strip()
        if not cleaned or cleaned[0] in "+-" or any(c in cleaned for c in "eE_ "):
            raise ValueError(f"not a yuan amount: {text!r}")
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise ValueError(f"not a yuan amount: {text!r}") from None
        if not value.is_finite():
            raise ValueError(f"not a yuan amount: {text!r}")
        fen = value * FEN_PER_YUAN
        if fen != fen.to_integral_value():
            raise ValueError(f"{text!r} has more than two decimal places")
        return cls(amount=int(fen), currency=currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        """Raises `ValueError` if the result would be negative."""
        self._same_currency(other)
        if other.amount > self.amount:
            raise ValueError(f"{self} - {other} would be negative")
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 0:
            raise TypeError("money can be multiplied only by a non-negative int")
        return Money(amount=self.amount * factor, currency=self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    def __bool__(self) -> bool:
        return self.amount != 0

    def yuan(self) -> str:
        """`1234` -> `"12.34"`: for display and for channel APIs that want yuan strings."""
        whole, cents = divmod(self.amount, FEN_PER_YUAN)
        return f"{whole}.{cents:02d}"

    def __str__(self) -> str:
        return f"{self.yuan()} {self.currency}"
