"""Rules for what a user types in: password strength and legal names."""

from __future__ import annotations

import re

from kami_identity.domain.rejections import InvalidInput

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128

# Han characters, Latin letters, spaces and the middle dot of minority and foreign names.
_LEGAL_NAME = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbfA-Za-z·• ]{2,40}")


def check_password(password: str) -> None:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidInput(
            "weak_password",
            f"The password must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters.",
        )
    if not (any(c.isalpha() for c in password) and any(c.isdigit() for c in password)):
        raise InvalidInput("weak_password", "The password must mix letters and digits.")


def normalise_legal_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not _LEGAL_NAME.fullmatch(name):
        raise InvalidInput(
            "invalid_legal_name",
            "The legal name must be 2 to 40 Chinese characters or letters, as on the ID card.",
        )
    return name
