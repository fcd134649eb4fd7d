"""Splitting a seller's key file into idempotent imports, and mapping each
import's report back to the file's own lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kami_cli.errors import CliError
from kami_cli.keys import Chunk, chunks, file_format, import_chunks, import_id_prefix, read_lines


def test_lines_are_split_as_inventory_splits_them(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_bytes("\ufeffA1\r\nB2\rC3\n\nD4\n".encode())
    assert read_lines(path, "utf-8") == ["A1", "B2", "C3", "", "D4"]


def test_a_gbk_file_is_read_with_its_encoding(tmp_path: Path) -> None:
    path = tmp_path / "keys.csv"
    path.write_bytes("卡密,有效期\nK-1,2027-01-01\n".encode("gbk"))
    assert read_lines(path, "gbk") == ["卡密,有效期", "K-1,2027-01-01"]
    with pytest.raises(CliError, match="not utf-8 text"):
        read_lines(path, "utf-8")


def test_chunks_cover_every_line_once_and_know_where_they_start() -> None:
    lines = [f"K-{n}" for n in range(1, 26)]
    planned = list(chunks(lines, 10))
    assert [(c.index, c.first_line, len(c.lines)) for c in planned] == [
        (0, 1, 10),
        (1, 11, 10),
        (2, 21, 5),
    ]
    assert [line for c in planned for line in c.lines] == lines


def test_a_chunk_stays_under_the_byte_limit_but_never_empties() -> None:
    lines = ["x" * 100] * 5
    planned = list(chunks(lines, 1000, max_bytes=450))
    assert [len(c.lines) for c in planned] == [2, 2, 1]
    huge = list(chunks(["y" * 1000], 1000, max_bytes=10))
    assert [len(c.lines) for c in huge] == [1]


def test_the_same_file_gives_the_same_import_ids_and_another_file_others() -> None:
    lines = ["A", "B"]
    same = import_id_prefix("offer-1", lines, 1000, None)
    assert same == import_id_prefix("offer-1", ["A", "B"], 1000, None)
    assert same != import_id_prefix("offer-1", ["A", "C"], 1000, None)
    assert same != import_id_prefix("offer-2", lines, 1000, None)
    assert same != import_id_prefix("offer-1", lines, 500, None)
    assert import_id_prefix("offer-1", lines, 1000, "batch-7") == "batch-7"


def test_the_format_comes_from_the_name_unless_given(tmp_path: Path) -> None:
    assert file_format(Path("a.CSV"), None) == "csv"
    assert file_format(Path("a.txt"), None) == "txt"
    assert file_format(Path("a.dat"), "txt") == "txt"
    with pytest.raises(CliError, match=r"\*\.csv or \*\.txt"):
        file_format(Path("a.dat"), None)


class _Inventory:
    """Answers imports as inventory does: numbered lines per request."""

    def __init__(self, refuse_chunk: int | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refuse_chunk = refuse_chunk

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        body = kwargs["json"]
        self.bodies.append(body)
        if len(self.bodies) - 1 == self.refuse_chunk:
            return httpx.Response(
                409, json={"error": {"code": "import_id_reused", "message": "used"}}
            )
        lines = body["content"].split("\n")
        assert lines.pop() == "", "every line of a chunk ends with a line break"
        rejected = [
            {"line": n, "reason": "empty", "message": "the line has no key"}
            for n, line in enumerate(lines, start=1)
            if not line
        ]
        return httpx.Response(
            201,
            json={
                "imported": len(lines) - len(rejected),
                "duplicates": 0,
                "rejected": len(rejected),
                "rejected_lines": rejected,
            },
        )


def test_rejected_lines_are_reported_with_the_files_line_numbers() -> None:
    lines = ["A", "B", "", "C", "D", ""]
    inventory = _Inventory()
    summary = import_chunks(
        inventory,  # type: ignore[arg-type]
        "offer-1",
        list(chunks(lines, 4)),
        file_format="txt",
        id_prefix="p",
        expires_at=None,
    )
    assert [b["import_id"] for b in inventory.bodies] == ["p-00000", "p-00001"]
    assert (summary.imported, summary.rejected, summary.chunks) == (4, 2, 2)
    assert [(r.line, r.reason) for r in summary.rejected_lines] == [(3, "empty"), (6, "empty")]


def test_a_refused_chunk_stops_the_run_and_says_which_lines() -> None:
    seen: list[Chunk] = []
    with pytest.raises(CliError, match=r"lines 3-4 refused: 409 import_id_reused.*1 of 2 chunks"):
        import_chunks(
            _Inventory(refuse_chunk=1),  # type: ignore[arg-type]
            "offer-1",
            list(chunks(["A", "B", "C", "D"], 2)),
            file_format="txt",
            id_prefix="p",
            expires_at=None,
            on_chunk=seen.append,
        )
    assert [c.index for c in seen] == [0]
