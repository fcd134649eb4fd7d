"""The restart scenarios touch only servers the run owns: the checks of
`StackControl.of_run`, on a stack home of stand-in processes (no servers)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Servers
from tests.faults.stack_control import STACK_HOME_VARIABLE, NotOurs, StackControl

KAFKA, MONGO = "127.0.0.1:19999", "mongodb://127.0.0.1:29999/"


@pytest.fixture
def stack_home(tmp_path: Path) -> Iterator[Path]:
    """A stack home whose pid files name live processes that look like the
    stack's servers by their command line (as `deploy/local/stack` checks)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "server.properties").write_text(
        "controller.quorum.voters=1@127.0.0.1:20000\n"
    )
    stand_ins = []
    for name, mark, port in (
        ("kafka", "kafka.Kafka", "19999"),
        ("ferretdb", "kami-ferretdb", "29999"),
    ):
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", mark])
        stand_ins.append(process)
        shows_command_line(process.pid, mark)
        (tmp_path / "run" / f"{name}.pid").write_text(str(process.pid))
        (tmp_path / "run" / f"{name}.port").write_text(port)
    # FerretDB on PostgreSQL, as the stack records it.
    (tmp_path / "run" / "ferretdb.backend").write_text("postgresql\n")
    (tmp_path / "run" / "postgresql.port").write_text("25999\n")
    try:
        yield tmp_path
    finally:
        for process in stand_ins:
            process.kill()
            process.wait()


def shows_command_line(pid: int, mark: str, timeout: float = 10) -> None:
    """Wait until the stand-in has exec'd: until then its command line is
    still the forking pytest's, and the control rightly takes it for no server."""
    deadline = time.monotonic() + timeout
    while mark.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"process {pid} never showed {mark!r}"
        time.sleep(0.01)


def test_servers_given_from_outside_are_not_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STACK_HOME_VARIABLE, raising=False)
    with pytest.raises(NotOurs, match="external to this run"):
        StackControl.of_run(Servers(KAFKA, MONGO, "environment"))


def test_the_stack_named_by_the_run_is_controlled(
    stack_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STACK_HOME_VARIABLE, str(stack_home))
    control = StackControl.of_run(Servers(KAFKA, MONGO, "environment"))
    assert (control.kafka_port, control.mongo_port, control.controller_port) == (
        19999,
        29999,
        20000,
    )
    env = control.env()
    assert env["KAMI_STACK_HOME"] == str(stack_home)
    assert env["KAMI_STACK_KAFKA_PORT"] == "19999"
    # `up` brings FerretDB back on the backend and PostgreSQL it ran on.
    assert env["KAMI_STACK_MONGO_BACKEND"] == "postgresql"
    assert env["KAMI_STACK_PG_PORT"] == "25999"
    pid = control.pid("kafka")
    assert pid is not None
    assert control.stop("kafka", timeout=5) == pid
    assert control.pid("kafka") is None


def test_a_stack_on_other_ports_than_the_runs_servers_is_refused(
    stack_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STACK_HOME_VARIABLE, str(stack_home))
    with pytest.raises(RuntimeError, match="but this run uses"):
        StackControl.of_run(Servers("127.0.0.1:19092", MONGO, "environment"))


def test_a_pid_that_is_not_the_server_is_not_taken_for_it(
    stack_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pid file naming some other live process (a pid reused): not ours."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (stack_home / "run" / "ferretdb.pid").write_text(str(other.pid))
        monkeypatch.setenv(STACK_HOME_VARIABLE, str(stack_home))
        with pytest.raises(RuntimeError, match="no live ferretdb"):
            StackControl.of_run(Servers(KAFKA, MONGO, "environment"))
    finally:
        other.kill()
        other.wait()


def test_a_stack_this_session_started_is_ours(
    stack_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STACK_HOME_VARIABLE, raising=False)
    control = StackControl.of_run(Servers(KAFKA, MONGO, "local stack", stack_home))
    assert control.home == stack_home
