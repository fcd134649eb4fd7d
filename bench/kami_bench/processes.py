"""CPU seconds and resident memory of the services, FerretDB (and the
PostgreSQL behind it) and Kafka, read with psutil from their pids while the
load runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil


def listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (FerretDB, Kafka), if any."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr
            and connection.laddr.port == port
            and connection.pid
        ):
            return int(connection.pid)
    return None


def backend_pid(pid: int) -> int | None:
    """The local server the process `pid` talks to: FerretDB's PostgreSQL.

    Found by the listening end of the process's own TCP connections, so it is
    whichever server FerretDB was started against (none for SQLite).
    """
    try:
        ports = {
            c.raddr.port
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.raddr
        }
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for port in sorted(ports):
        server = listener_pid(port)
        if server is not None and server != pid:
            return server
    return None


def cpu_seconds(process: psutil.Process, *, with_children: bool = False) -> float:
    """User + system CPU of the process and of its children that ended.

    `with_children` adds the children that still run: PostgreSQL serves each
    connection from its own long-lived backend process.
    """
    times = process.cpu_times()
    total = float(times.user + times.system + times.children_user + times.children_system)
    if with_children:
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
    return total


@dataclass
class ProcessWatch:
    """Samples each named process's RSS every `interval` seconds (for the
    peak) and its CPU seconds at `mark()` (for a phase's share)."""

    pids: Mapping[str, int]
    interval: float = 0.5
    # Names whose CPU includes their running children (a PostgreSQL server).
    trees: frozenset[str] = frozenset()
    _processes: dict[str, psutil.Process] = field(default_factory=dict)
    _peaks: dict[str, int] = field(default_factory=dict)
    _gone: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name, pid in self.pids.items():
            try:
                self._processes[name] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                self._gone.add(name)
        self.sample()

    def add(self, name: str, pid: int) -> None:
        """Watch one more process from now on (a replica started during the run)."""
        try:
            self._processes[name] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._gone.add(name)

    def sample(self) -> None:
        for name, process in self._processes.items():
            if name in self._gone:
                continue
            try:
                rss = process.memory_info().rss
            except psutil.NoSuchProcess:
                self._gone.add(name)
                continue
            self._peaks[name] = max(self._peaks.get(name, 0), rss)

    def mark(self) -> dict[str, float]:
        """CPU seconds of every process so far (a process gone keeps its last)."""
        marks = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                marks[name] = cpu_seconds(process, with_children=name in self.trees)
        return marks

    def peaks(self) -> dict[str, int]:
        return dict(self._peaks)

    def reset_peaks(self) -> None:
        self._peaks.clear()
        self.sample()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)


def usage_between(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}
