"""A sampling profile of the busiest service with py-spy (`py-spy record
--format raw`: one line per distinct stack, `frame;frame;... count`)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Innermost frames of a thread that waits: the event loop in select, an idle
# worker thread on its condition.
_WAITING = ("(selectors.py:", "Condition.wait (threading.py:", "_worker (concurrent/futures")
# The frames every request or message passes through on its way into our code.
_BASE = ("(kami_cli/", "(kami_web/serve.py")


@dataclass(frozen=True)
class Profile:
    service: str
    pid: int
    seconds: float
    samples: int
    busy: int  # samples not waiting
    # (frame, busy samples in which it is the innermost frame)
    top_self: list[tuple[str, int]]
    # (Kami's own frame, busy samples in which it is anywhere on the stack)
    top_kami: list[tuple[str, int]]
    raw_file: Path


@dataclass(frozen=True)
class Summary:
    samples: int
    busy: int
    top_self: list[tuple[str, int]]
    top_kami: list[tuple[str, int]]


def summarise(raw: str, top: int = 12) -> Summary:
    """From py-spy's raw output: how many samples were busy (not waiting),
    the frames most often innermost when busy, and Kami's own functions most
    often on a busy stack. Frames look like `function (module.py:line)`."""
    own: Counter[str] = Counter()
    kami: Counter[str] = Counter()
    total = busy = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame for frame in stack.split(";") if frame]
        if not frames or any(mark in frames[-1] for mark in _WAITING):
            continue
        busy += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "(kami_" in frame and not any(mark in frame for mark in _BASE):
                kami[frame] += count
    return Summary(total, busy, own.most_common(top), kami.most_common(top))


def py_spy() -> str | None:
    """py-spy next to this interpreter (the dev group installs it), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def record(
    service: str, pid: int, seconds: float, out: Path, started: list[int]
) -> Profile | str:
    """Profile `pid` for `seconds`; a Profile, or the reason there is none.
    The py-spy pid goes into `started` so the caller can stop it on Ctrl-C."""
    binary = py_spy()
    if binary is None:
        return "py-spy is not installed (uv sync --group dev)"
    process = await asyncio.create_subprocess_exec(
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "100",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    started.append(process.pid)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=seconds + 30)
    except (TimeoutError, asyncio.CancelledError) as stopped:
        # Never leave py-spy attached to a service: end it, and reap it.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        if isinstance(stopped, asyncio.CancelledError):
            raise
        return "py-spy did not finish in time"
    finally:
        started.remove(process.pid)
    raw = await asyncio.to_thread(_read, out)
    if process.returncode != 0 or raw is None:
        lines = output.decode(errors="replace").strip().splitlines()
        return f"py-spy could not profile {service} (pid {pid}): {lines[0] if lines else '?'}"
    summary = summarise(raw)
    return Profile(
        service,
        pid,
        seconds,
        summary.samples,
        summary.busy,
        summary.top_self,
        summary.top_kami,
        out,
    )


def _read(path: Path) -> str | None:
    return path.read_text(errors="replace") if path.exists() else None
