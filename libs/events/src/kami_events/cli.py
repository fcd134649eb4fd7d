"""`kami-events`: generate and check what is derived from the event catalogue.

    kami-events schemas [--check] [--dir DIR] [--accept-breaking NAME ...]
    kami-events asyncapi [--check] [--output docs/asyncapi.yaml]
    kami-events catalogue-md [--check] [--output docs/events.md]

Without `--check` a command writes its files; with it, it writes nothing and
exits 1 (saying what to do) when the committed files are not what the code
generates. CI runs all three with `--check`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _schemas(args: argparse.Namespace) -> int:
    from kami_events.schema_snapshots import check_snapshots, write_snapshots

    directory: Path = args.dir
    if args.check:
        problems = check_snapshots(directory)
        if not problems:
            print(f"schemas: every snapshot in {directory} matches the code")
            return 0
        print(f"schemas: {len(problems)} snapshot(s) do not match the code:", file=sys.stderr)
        for problem in problems:
            print(f"- {problem.explain()}", file=sys.stderr)
        return 1
    report = write_snapshots(directory, accept_breaking=set(args.accept_breaking))
    for name in report.written:
        print(f"wrote {directory / name}.json")
    print(f"schemas: {len(report.written)} written, {len(report.unchanged)} unchanged")
    for problem in report.refused + report.orphaned:
        print(f"- not written: {problem.explain()}", file=sys.stderr)
    return 0 if report.ok else 1


def _write_or_check(path: Path, content: str, check: bool, what: str, command: str) -> int:
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if check:
        if current == content:
            print(f"{what}: {path} is up to date")
            return 0
        state = "missing" if current is None else "out of date"
        print(
            f"{what}: {path} is {state} with respect to the code. "
            f"Run `uv run kami-events {command}` and commit the result.",
            file=sys.stderr,
        )
        return 1
    if current == content:
        print(f"{what}: {path} unchanged")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    print(f"{what}: wrote {path}")
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    from kami_events.asyncapi import asyncapi_yaml

    return _write_or_check(args.output, asyncapi_yaml(), args.check, "asyncapi", "asyncapi")


def _catalogue_md(args: argparse.Namespace) -> int:
    from kami_events.catalogue.markdown import MarkersNotFound, updated_page

    path: Path = args.output
    if not path.exists():
        print(f"catalogue-md: {path} does not exist", file=sys.stderr)
        return 1
    try:
        page = updated_page(path.read_text(encoding="utf-8"))
    except MarkersNotFound as exc:
        print(f"catalogue-md: {path}: {exc}", file=sys.stderr)
        return 1
    return _write_or_check(path, page, args.check, "catalogue-md", "catalogue-md")


def build_parser() -> argparse.ArgumentParser:
    from kami_events.asyncapi import DEFAULT_OUTPUT
    from kami_events.catalogue.markdown import DEFAULT_PAGE
    from kami_events.schema_snapshots import SNAPSHOT_DIR

    parser = argparse.ArgumentParser(
        prog="kami-events", description="Generate and check what derives from the event catalogue."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    schemas = commands.add_parser(
        "schemas", help="write (or --check) the JSON Schema snapshot of every event"
    )
    schemas.add_argument("--check", action="store_true", help="write nothing; exit 1 on mismatch")
    schemas.add_argument("--dir", type=Path, default=SNAPSHOT_DIR, help="snapshot directory")
    schemas.add_argument(
        "--accept-breaking",
        metavar="NAME",
        action="append",
        default=[],
        help="overwrite this snapshot (e.g. OrderPlaced.v1) despite a breaking change: "
        "only for a version that was never published",
    )
    schemas.set_defaults(run=_schemas)

    asyncapi = commands.add_parser("asyncapi", help="write (or --check) the AsyncAPI document")
    asyncapi.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    asyncapi.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the YAML file")
    asyncapi.set_defaults(run=_asyncapi)

    markdown = commands.add_parser(
        "catalogue-md", help="rewrite (or --check) the generated tables in docs/events.md"
    )
    markdown.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    markdown.add_argument("--output", type=Path, default=DEFAULT_PAGE, help="the Markdown page")
    markdown.set_defaults(run=_catalogue_md)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The committed docs describe the default topic namespace, whatever this shell uses.
    os.environ.pop("KAMI_TOPIC_PREFIX", None)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
