"""`kami keys import`: a seller's key file into an offer's pool, in chunks.

Inventory takes one file per import (at most `KAMI_INVENTORY_MAX_IMPORT_KEYS`
lines, 2 MiB), and an import is idempotent by its id. So a large file goes
in chunks of whole lines, each an import whose id is derived from the file's
content, the offer and the chunk: running the same command again (after a
network failure, say) repeats nothing, and inventory answers each chunk with
its original report. Inventory numbers the lines of each chunk from 1; the
reports are mapped back to the file's own line numbers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kami_cli.errors import CliError
from kami_cli.http import Api, error_message

# The line breaks inventory splits on (kami_inventory.domain.imports).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
DEFAULT_CHUNK_LINES = 1_000
# Well under inventory's 2 MiB per request, JSON escaping included.
MAX_CHUNK_BYTES = 512 * 1024


@dataclass(frozen=True)
class Chunk:
    index: int
    first_line: int  # the file's line number of the chunk's line 1
    lines: tuple[str, ...] = field(repr=False)

    @property
    def content(self) -> str:
        # Every line ends with a break: inventory drops only the file's final one,
        # so a chunk's last line survives even when it is empty.
        return "".join(f"{line}\n" for line in self.lines)


@dataclass(frozen=True)
class RejectedLine:
    line: int
    reason: str
    message: str


@dataclass
class ImportSummary:
    chunks: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    repeated_chunks: int = 0
    rejected_lines: list[RejectedLine] = field(default_factory=list)


def file_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return suffix[1:]
    raise CliError(f"{path.name}: name the file *.csv or *.txt, or pass --format csv|txt", 2)


def read_lines(path: Path, encoding: str) -> list[str]:
    try:
        text = path.read_bytes().decode(encoding)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", 2) from None
    except (UnicodeDecodeError, LookupError) as exc:
        raise CliError(f"{path} is not {encoding} text ({exc}); pass --encoding", 2) from None
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise CliError(f"{path} is empty", 2)
    return lines


def chunks(lines: list[str], max_lines: int, max_bytes: int = MAX_CHUNK_BYTES) -> Iterator[Chunk]:
    start, index = 0, 0
    while start < len(lines):
        end, size = start, 0
        while end < len(lines) and end - start < max_lines:
            size += len(lines[end].encode()) * 2 + 1  # JSON may double it (escapes)
            if size > max_bytes and end > start:
                break
            end += 1
        yield Chunk(index, start + 1, tuple(lines[start:end]))
        start, index = end, index + 1


def import_id_prefix(offer_id: str, lines: list[str], chunk_lines: int, prefix: str | None) -> str:
    """The chunks' common id prefix: the same file, offer and chunking give the same ids."""
    if prefix:
        return prefix
    digest = hashlib.sha256()
    digest.update(f"{offer_id}\0{chunk_lines}\0".encode())
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return f"cli-{digest.hexdigest()[:24]}"


def import_chunks(
    api: Api,
    offer_id: str,
    planned: list[Chunk],
    *,
    file_format: str,
    id_prefix: str,
    expires_at: datetime | None,
    on_chunk: Callable[[Chunk], None] = lambda chunk: None,
) -> ImportSummary:
    """Send every chunk; the first refusal stops the run (what went in stays, and
    a rerun of the same command sends only what is missing)."""
    summary = ImportSummary()
    for chunk in planned:
        body: dict[str, Any] = {
            "import_id": f"{id_prefix}-{chunk.index:05d}",
            "format": file_format,
            "content": chunk.content,
        }
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        response = api.request("POST", f"/offers/{offer_id}/imports", json=body)
        if response.status_code not in (200, 201):
            last = chunk.first_line + len(chunk.lines) - 1
            done = f"{summary.chunks} of {len(planned)} chunks imported"
            raise CliError(
                f"lines {chunk.first_line}-{last} refused: {error_message(response)} ({done})"
            )
        report = response.json()
        summary.chunks += 1
        summary.repeated_chunks += response.status_code == 200
        summary.imported += int(report["imported"])
        summary.duplicates += int(report["duplicates"])
        summary.rejected += int(report["rejected"])
        summary.rejected_lines.extend(
            RejectedLine(chunk.first_line + int(r["line"]) - 1, r["reason"], r["message"])
            for r in report["rejected_lines"]
        )
        on_chunk(chunk)
    return summary
