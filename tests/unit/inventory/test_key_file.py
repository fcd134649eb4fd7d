"""Reading a seller's key file: every line accepted or rejected with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kami_inventory.domain.imports import (
    FileFormat,
    ImportRules,
    ImportTooLarge,
    Rejection,
    parse_expiry,
    read_key_file,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_EXPIRY = NOW + timedelta(days=365)
RULES = ImportRules(
    max_keys=10, max_key_length=20, timezone=SHANGHAI, default_expires_at=DEFAULT_EXPIRY
)


def reasons(content: str, file_format: FileFormat = FileFormat.CSV) -> dict[int, Rejection]:
    read = read_key_file(content, file_format, RULES, NOW)
    return {r.line: r.reason for r in read.rejected}


def test_a_csv_with_a_header_accepts_good_lines_and_keeps_line_numbers() -> None:
    content = "key,expires_at\nAAAA-1111,2026-06-30\nBBBB-2222,\n"
    read = read_key_file(content, FileFormat.CSV, RULES, NOW)
    assert [(k.line, k.secret) for k in read.accepted] == [(2, "AAAA-1111"), (3, "BBBB-2222")]
    # A bare date is valid through that day in the seller's zone (UTC+8).
    assert read.accepted[0].expires_at == datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
    assert read.accepted[1].expires_at == DEFAULT_EXPIRY  # empty cell
    assert read.rejected == ()


def test_every_rejection_reason_is_reported_with_its_line() -> None:
    content = "\n".join(
        [
            "GOOD-0001,2026-12-31",  # 1 accepted
            "",  # 2 empty
            "X" * 21 + ",2026-12-31",  # 3 too long
            "KEY-3,2026-12-31,extra",  # 4 malformed: three columns
            "KEY-4,next tuesday",  # 5 bad expiry
            "KEY-5,2025-12-31T00:00:00+00:00",  # 6 already expired
            "GOOD-0001,2027-01-01",  # 7 same key as line 1
            " ,2026-12-31",  # 8 no key
            "KEY\x00-9,2026-12-31",  # 9 control character
            'KEY-10,"2026-12-31',  # 10 broken quoting
        ]
    )
    assert reasons(content) == {
        2: Rejection.EMPTY,
        3: Rejection.TOO_LONG,
        4: Rejection.MALFORMED,
        5: Rejection.BAD_EXPIRY,
        6: Rejection.EXPIRED,
        7: Rejection.DUPLICATE_IN_FILE,
        8: Rejection.EMPTY,
        9: Rejection.MALFORMED,
        10: Rejection.MALFORMED,
    }
    read = read_key_file(content, FileFormat.CSV, RULES, NOW)
    assert [k.line for k in read.accepted] == [1]
    duplicate = next(r for r in read.rejected if r.line == 7)
    assert duplicate.message == "the same key as line 1"


def test_messages_never_repeat_what_the_line_held() -> None:
    content = "SECRET-ONE,SECRET-TWO\nSECRET-ONE,2026-12-31\nSECRET-ONE,2026-12-31,SECRET-X\n"
    read = read_key_file(content, FileFormat.CSV, RULES, NOW)
    assert len(read.rejected) == 2
    for rejected in read.rejected:
        assert "SECRET" not in rejected.message


def test_txt_lines_are_whole_keys_with_the_default_expiry() -> None:
    content = "AAAA,1111\r\n  BBBB  \r\n\r\nAAAA,1111\r\n"
    read = read_key_file(content, FileFormat.TXT, RULES, NOW)
    assert [(k.line, k.secret, k.expires_at) for k in read.accepted] == [
        (1, "AAAA,1111", DEFAULT_EXPIRY),
        (2, "BBBB", DEFAULT_EXPIRY),
    ]
    assert {r.line: r.reason for r in read.rejected} == {
        3: Rejection.EMPTY,
        4: Rejection.DUPLICATE_IN_FILE,
    }


def test_a_txt_file_has_no_header_and_a_bom_is_ignored() -> None:
    read = read_key_file("\ufeffkey\nK2\n", FileFormat.TXT, RULES, NOW)
    assert [k.secret for k in read.accepted] == ["key", "K2"]


def test_a_default_expiry_in_the_past_rejects_keys_without_their_own() -> None:
    rules = ImportRules(10, 20, SHANGHAI, default_expires_at=NOW - timedelta(days=1))
    read = read_key_file("A1\nB2\n", FileFormat.TXT, rules, NOW)
    assert [r.reason for r in read.rejected] == [Rejection.EXPIRED, Rejection.EXPIRED]


def test_more_lines_than_one_import_takes_is_refused_whole() -> None:
    ten = "".join(f"K{i}\n" for i in range(10))
    assert len(read_key_file(ten, FileFormat.TXT, RULES, NOW).accepted) == 10
    # The header does not count.
    assert len(read_key_file("key\n" + ten, FileFormat.CSV, RULES, NOW).accepted) == 10
    with pytest.raises(ImportTooLarge, match="11 lines"):
        read_key_file(ten + "K10\n", FileFormat.TXT, RULES, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T12:00:00+08:00", datetime(2026, 3, 1, 4, 0, tzinfo=UTC)),
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        ("2026-03-01 12:00:00", datetime(2026, 3, 1, 4, 0, tzinfo=UTC)),
        ("2026/03/01", datetime(2026, 3, 1, 16, 0, tzinfo=UTC)),
        ("2026-02-30", None),
        ("soon", None),
        ("1700000000", None),
    ],
)
def test_expiry_formats(text: str, expected: datetime | None) -> None:
    assert parse_expiry(text, SHANGHAI) == expected
