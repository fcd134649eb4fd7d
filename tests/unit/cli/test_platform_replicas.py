"""`Platform` running several processes of one service: own ports, pid
files and logs; the same database and consumer group."""

from __future__ import annotations

from pathlib import Path

from kami_local import Platform, service_of


def test_a_service_with_replicas_runs_as_processes_on_ports_of_their_own(tmp_path: Path) -> None:
    platform = Platform.isolated(
        "127.0.0.1:19092",
        "mongodb://127.0.0.1:27018/",
        home=tmp_path,
        name="t",
        extra_env={},
        replicas={"ordering": 3, "payment": 1},
    )
    assert platform.processes("ordering") == ["ordering", "ordering-2", "ordering-3"]
    assert platform.processes("payment") == ["payment"]
    assert platform.replicas("ordering") == ["ordering-2", "ordering-3"]
    ports = {platform.port_of(p) for p in platform.processes("ordering")}
    assert len(ports) == 3 and platform.port_of("ordering") == platform.ports["ordering"]
    assert platform.url("ordering-2") in platform.urls("ordering")

    first, second = platform.env_for("ordering"), platform.env_for("ordering-2")
    assert first["KAMI_HTTP_PORT"] != second["KAMI_HTTP_PORT"]
    # One service: one database, one consumer group (kami-ordering, the default).
    assert first["KAMI_MONGODB_DATABASE"] == second["KAMI_MONGODB_DATABASE"]
    assert "KAMI_CONSUMER_GROUP_OVERRIDE" not in second
    assert "KAMI_SERVICE_NAME" not in second
    assert platform.log_file("ordering-2") != platform.log_file("ordering")


def test_process_names_say_their_service() -> None:
    assert service_of("ordering") == ("ordering", 1)
    assert service_of("ordering-2") == ("ordering", 2)
    assert service_of("ordering-x") == ("ordering-x", 1)
