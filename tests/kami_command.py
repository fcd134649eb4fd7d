"""Running the `kami` CLI as an operator would: a subprocess of this interpreter."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


async def kami(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Ran:
    """`kami ARGS...` with `env` over this process's environment (KAMI_* removed,
    so only what the test says reaches the command)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KAMI_")}
    environment.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kami_cli",
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())
