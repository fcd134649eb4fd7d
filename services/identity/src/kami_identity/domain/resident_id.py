"""The 18-digit resident identity number (GB 11643-1999).

Layout: 6-digit address code, 8-digit date of birth `YYYYMMDD`, 3-digit
sequence code, 1 check character (`0`-`9` or `X`) computed as
`sum(digit_i * weight_i) mod 11` over the first 17 digits.

A `ResidentId` never shows its number: `repr` and `str` are masked, so it
cannot leak into a log line by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from kami_identity.domain.rejections import InvalidInput

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARACTERS = "10X98765432"
_SHAPE = re.compile(r"\d{17}[\dX]")

# First two digits: provinces, autonomous regions and municipalities (GB/T 2260),
# plus 81/82/83 for Hong Kong, Macao and Taiwan residence permits.
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
_EARLIEST_BIRTH = date(1900, 1, 1)

ADULT_AGE = 18


def check_character(first_17_digits: str) -> str:
    total = sum(int(d) * w for d, w in zip(first_17_digits, _WEIGHTS, strict=True))
    return _CHECK_CHARACTERS[total % 11]


def age_on(birth: date, today: date) -> int:
    """Whole years: someone born on 29 February comes of age on 1 March."""
    had_birthday = (today.month, today.day) >= (birth.month, birth.day)
    return today.year - birth.year - (0 if had_birthday else 1)


@dataclass(frozen=True)
class ResidentId:
    number: str = field(repr=False)
    birth_date: date

    @classmethod
    def parse(cls, raw: str, *, today: date) -> ResidentId:
        """Validate shape, region, date of birth, check character and age.

        `today` is the current date in China (Asia/Shanghai).
        """
        number = raw.strip().upper()
        if not _SHAPE.fullmatch(number):
            raise InvalidInput(
                "invalid_id_number",
                "The ID number must be 18 characters: 17 digits and a digit or X.",
            )
        if int(number[:2]) not in _PROVINCES:
            raise InvalidInput(
                "invalid_id_number", "The ID number does not start with a valid region code."
            )
        try:
            birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        except ValueError:
            raise InvalidInput(
                "invalid_birth_date", "The date of birth in the ID number does not exist."
            ) from None
        if birth < _EARLIEST_BIRTH or birth > today:
            raise InvalidInput(
                "invalid_birth_date", "The date of birth in the ID number is not plausible."
            )
        if number[17] != check_character(number[:17]):
            raise InvalidInput(
                "id_checksum_mismatch",
                "The ID number's check character does not match; check for a typo.",
            )
        if age_on(birth, today) < ADULT_AGE:
            raise InvalidInput("under_age", "Real-name verification requires an adult (18+).")
        return cls(number, birth)

    @property
    def masked(self) -> str:
        """`110101199003071234` -> `1101**********1234`."""
        return mask_id_number(self.number)

    def __str__(self) -> str:
        return self.masked


def mask_id_number(number: str) -> str:
    return f"{number[:4]}{'*' * (len(number) - 8)}{number[-4:]}"


def mask_name(name: str) -> str:
    """`张三丰` -> `张**`: the family name stays, the rest is hidden."""
    return name[:1] + "*" * (len(name) - 1)
