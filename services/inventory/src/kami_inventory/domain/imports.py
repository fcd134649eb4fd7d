"""Reading a seller's key file (CSV or TXT) and judging every line.

CSV lines are `key,expires_at` (a header line naming the columns is optional,
the expiry cell may be empty); TXT lines are one key each. Every line is
either accepted or rejected with its line number and a reason, so a file with
a few bad lines still imports the good ones. Messages never repeat what the
line contained: a malformed line may well hold a secret.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from uuid import NAMESPACE_URL, uuid5

from kami_events.catalogue.inventory import KeysImported
from kami_inventory.domain.instants import to_millis


class FileFormat(StrEnum):
    CSV = "csv"
    TXT = "txt"


class Rejection(StrEnum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    MALFORMED = "malformed"
    BAD_EXPIRY = "bad_expiry"
    EXPIRED = "expired"
    DUPLICATE_IN_FILE = "duplicate_in_file"
    DUPLICATE_IN_POOL = "duplicate_in_pool"


DUPLICATES = frozenset({Rejection.DUPLICATE_IN_FILE, Rejection.DUPLICATE_IN_POOL})

_KEY_HEADERS = frozenset({"key", "card_key", "secret", "卡密"})
_EXPIRY_HEADERS = frozenset({"expires_at", "expiry", "expires", "有效期", "过期时间"})
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Control, format (zero-width), surrogate and private-use characters.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co"})
_KEY_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/inventory/keys")


class ImportTooLarge(Exception):
    """The file has more lines than one import may hold."""


@dataclass(frozen=True)
class ImportRules:
    max_keys: int
    max_key_length: int
    # How an expiry without a zone is read.
    timezone: tzinfo
    # The expiry of a key that has none of its own.
    default_expires_at: datetime


@dataclass(frozen=True)
class KeyLine:
    line: int
    secret: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class RejectedLine:
    line: int
    reason: Rejection
    message: str


@dataclass(frozen=True)
class ReadFile:
    accepted: tuple[KeyLine, ...]
    rejected: tuple[RejectedLine, ...]


def read_key_file(
    content: str, file_format: FileFormat, rules: ImportRules, now: datetime
) -> ReadFile:
    """Judge every line of `content`; raises `ImportTooLarge` past `rules.max_keys` lines."""
    lines = _LINE_BREAK.split(content.removeprefix("\ufeff"))
    if lines and lines[-1] == "":
        lines.pop()  # the file's final line break ends a line, it does not start one
    numbered = list(enumerate(lines, start=1))
    if file_format is FileFormat.CSV and numbered and _is_header(numbered[0][1]):
        numbered = numbered[1:]
    if len(numbered) > rules.max_keys:
        raise ImportTooLarge(
            f"the file has {len(numbered)} lines; one import takes at most {rules.max_keys} keys"
        )

    accepted: list[KeyLine] = []
    rejected: list[RejectedLine] = []
    first_seen: dict[str, int] = {}
    for number, raw in numbered:
        judged = _judge(number, raw, file_format, rules, now)
        if isinstance(judged, RejectedLine):
            rejected.append(judged)
        elif judged.secret in first_seen:
            rejected.append(
                RejectedLine(
                    number,
                    Rejection.DUPLICATE_IN_FILE,
                    f"the same key as line {first_seen[judged.secret]}",
                )
            )
        else:
            first_seen[judged.secret] = number
            accepted.append(judged)
    return ReadFile(tuple(accepted), tuple(rejected))


def _is_header(raw: str) -> bool:
    try:
        cells = [c.strip().lower() for c in next(csv.reader([raw]))]
    except (csv.Error, StopIteration):
        return False
    if not cells or cells[0] not in _KEY_HEADERS:
        return False
    return len(cells) == 1 or (len(cells) == 2 and cells[1] in _EXPIRY_HEADERS)


def _judge(
    number: int, raw: str, file_format: FileFormat, rules: ImportRules, now: datetime
) -> KeyLine | RejectedLine:
    expiry_cell = ""
    if file_format is FileFormat.CSV:
        if not raw.strip():
            return RejectedLine(number, Rejection.EMPTY, "the line is empty")
        try:
            cells = next(csv.reader([raw], strict=True))
        except csv.Error:
            return RejectedLine(number, Rejection.MALFORMED, "the line is not valid CSV")
        if len(cells) > 2:
            return RejectedLine(
                number,
                Rejection.MALFORMED,
                f"expected the columns key,expires_at, got {len(cells)} columns",
            )
        secret = cells[0].strip()
        expiry_cell = cells[1].strip() if len(cells) == 2 else ""
    else:
        secret = raw.strip()

    if not secret:
        return RejectedLine(number, Rejection.EMPTY, "the line has no key")
    if any(unicodedata.category(ch) in _INVISIBLE for ch in secret):
        return RejectedLine(
            number, Rejection.MALFORMED, "the key contains control or invisible characters"
        )
    if len(secret) > rules.max_key_length:
        return RejectedLine(
            number,
            Rejection.TOO_LONG,
            f"the key has {len(secret)} characters; the limit is {rules.max_key_length}",
        )
    if expiry_cell:
        expires_at = parse_expiry(expiry_cell, rules.timezone)
        if expires_at is None:
            return RejectedLine(
                number,
                Rejection.BAD_EXPIRY,
                "expires_at is not a date; write 2026-12-31 or 2026-12-31T23:59:59+08:00",
            )
    else:
        expires_at = rules.default_expires_at
    if expires_at <= now:
        return RejectedLine(
            number, Rejection.EXPIRED, f"the key expired at {expires_at.isoformat()}"
        )
    return KeyLine(number, secret, to_millis(expires_at))


def parse_expiry(text: str, zone: tzinfo) -> datetime | None:
    """An instant in UTC, or None if `text` is no date. A bare date means the key
    is valid through that whole day; a time without a zone is read in `zone`."""
    value = text.strip().replace("/", "-")
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1), time.min, zone).astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def key_id_for(offer_id: str, import_id: str, line: int) -> str:
    """The id of the key on `line` of an import: the same on every retry of that
    import, so a retried insert finds its own key instead of a duplicate."""
    return str(uuid5(_KEY_NAMESPACE, f"{offer_id}/{import_id}/{line}"))


@dataclass(frozen=True)
class ImportReport:
    """The outcome of one import, returned again for every retry of it."""

    import_id: str
    offer_id: str
    file_format: FileFormat
    imported: int
    rejected_lines: tuple[RejectedLine, ...]
    earliest_expires_at: datetime | None

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.rejected_lines if r.reason in DUPLICATES)

    @property
    def rejected(self) -> int:
        """Lines rejected for anything but being a duplicate."""
        return len(self.rejected_lines) - self.duplicates

    def event(self, seller_id: str, product_id: str) -> KeysImported:
        return KeysImported(
            offer_id=self.offer_id,
            seller_id=seller_id,
            product_id=product_id,
            batch_id=self.import_id,
            file_format=self.file_format.value,
            imported=self.imported,
            duplicates=self.duplicates,
            rejected=self.rejected,
            earliest_expires_at=self.earliest_expires_at,
        )
