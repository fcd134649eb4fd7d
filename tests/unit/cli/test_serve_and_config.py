"""What `kami serve` decides before starting anything, how the local platform
recognises its `kami serve` processes, and the saved login's permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kami_cli.config import SavedLogin, load_login, now, save_login
from kami_cli.errors import CliError
from kami_cli.serve import plan_all, servable
from kami_local import is_serve_command, serve_command

SECRETS = {
    "KAMI_INVENTORY_MASTER_KEY": "A" * 43 + "=",
    "KAMI_INVENTORY_FINGERPRINT_KEY": "A" * 43 + "=",
    "KAMI_DELIVERY_VAULT_KEY": "A" * 43 + "=",
}


def test_an_unknown_service_is_refused_with_the_known_ones() -> None:
    with pytest.raises(CliError) as refused:
        servable("shipping")
    assert refused.value.exit_code == 2
    assert "unknown service 'shipping'" in refused.value.message
    assert "identity, catalog, inventory" in refused.value.message


def test_every_service_in_one_process_gets_its_own_port_database_name_and_peers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    services = [servable(name) for name in ("catalog", "inventory", "ordering", "delivery")]
    ports = {"catalog": 9102, "inventory": 9103, "ordering": 9104, "delivery": 9106}
    planned = plan_all(services, host="127.0.0.1", ports=ports, database_prefix="demo", environ={})
    assert {name: s.http_port for name, s in planned.items()} == ports
    assert {name: s.database_name for name, s in planned.items()} == {
        name: f"demo_{name}" for name in ports
    }
    assert {name: s.consumer_group for name, s in planned.items()} == {
        name: f"kami-{name}" for name in ports
    }
    assert planned["delivery"].delivery_inventory_url == "http://127.0.0.1:9103"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "variable", ["KAMI_HTTP_PORT", "KAMI_MONGODB_DATABASE", "KAMI_SERVICE_NAME"]
)
def test_single_service_variables_are_refused_in_one_process(variable: str) -> None:
    with pytest.raises(CliError, match=variable):
        plan_all(
            [servable("catalog")],
            host="127.0.0.1",
            ports={"catalog": 9102},
            database_prefix="demo",
            environ={variable: "x"},
        )


def test_a_missing_secret_is_named() -> None:
    with pytest.raises(CliError, match="inventory is not configured: KAMI_INVENTORY_MASTER_KEY"):
        plan_all(
            [servable("inventory")],
            host="127.0.0.1",
            ports={"inventory": 9103},
            database_prefix="demo",
            environ={},
        )


def test_the_local_platform_knows_its_kami_serve_processes() -> None:
    argv = serve_command("ordering")
    assert argv[-2:] == ["serve", "ordering"]
    cmdline = b"\0".join(a.encode() for a in argv) + b"\0"
    assert is_serve_command(cmdline, "ordering")
    assert not is_serve_command(cmdline, "payment")
    assert is_serve_command(b"/v/bin/python\0-m\0kami_cli\0serve\0payment\0", "payment")
    assert not is_serve_command(b"/usr/bin/python\0-m\0http.server\0serve\0payment\0", "payment")
    assert not is_serve_command(b"bash\0", "payment")


def test_the_saved_login_is_readable_by_the_user_alone(tmp_path: Path) -> None:
    path = tmp_path / "kami" / "credentials.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)  # an older, too open file is replaced
    login = SavedLogin("http://id", "13900000001", "u-1", "access", "refresh", now())
    save_login(path, login)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_login(path) == login
