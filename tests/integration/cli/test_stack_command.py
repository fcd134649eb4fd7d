"""`kami stack` runs deploy/local/stack and exits as it does. Pointed at a
stack home of its own, so the servers everyone uses are never touched."""

from __future__ import annotations

from pathlib import Path

from tests.kami_command import kami


async def test_status_and_down_of_a_stack_that_is_not_running(tmp_path: Path) -> None:
    env = {
        "KAMI_STACK_HOME": str(tmp_path / "stack"),
        # Ports nobody listens on, so "running" could not be mistaken.
        "KAMI_STACK_KAFKA_PORT": "19392",
        "KAMI_STACK_MONGO_PORT": "27318",
    }
    status = await kami("stack", "status", env=env)
    assert status.code == 3, status  # the script's "not running"
    assert "kafka" in status.stdout and "stopped" in status.stdout
    assert "ferretdb" in status.stdout

    down = await kami("stack", "down", env=env)
    assert down.code == 0, down
    assert "nothing to stop" in down.stderr


async def test_a_missing_script_is_said_plainly(tmp_path: Path) -> None:
    ran = await kami("stack", "status", "--script", str(tmp_path / "nope"))
    assert ran.code == 1
    assert f"no stack script at {tmp_path / 'nope'}" in ran.stderr
