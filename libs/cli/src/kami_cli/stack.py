"""`kami stack up|down|status`: the local Kafka + FerretDB (`deploy/local/stack`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kami_cli.errors import CliError

STACK_SCRIPT = Path("deploy") / "local" / "stack"


def find_stack_script(explicit: Path | None = None) -> Path:
    """`--script`/`KAMI_STACK_SCRIPT`, else `deploy/local/stack` of the checkout
    we are in (from the working directory up), else of the one we were installed from."""
    if explicit is not None:
        if not explicit.is_file():
            raise CliError(f"no stack script at {explicit}")
        return explicit
    from_env = os.environ.get("KAMI_STACK_SCRIPT")
    if from_env:
        return find_stack_script(Path(from_env))
    here = Path.cwd().resolve()
    source = Path(__file__).resolve()
    for directory in (here, *here.parents, *source.parents):
        candidate = directory / STACK_SCRIPT
        if candidate.is_file():
            return candidate
    raise CliError(
        "deploy/local/stack not found: run from a Kami checkout or set KAMI_STACK_SCRIPT"
    )


def run_stack(script: Path, *args: str) -> int:
    """Run the script with its output on our terminal; its exit status is ours."""
    return subprocess.run([str(script), *args], check=False).returncode  # noqa: S603
