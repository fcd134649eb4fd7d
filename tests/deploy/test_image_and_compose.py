"""The Dockerfile, deploy/compose.yaml and the secrets generator. Docker does not
run here: the files are read as what they are (instructions, YAML) and held to
what the image and the compose stack must do."""

from __future__ import annotations

import json
import re
import shlex

import yaml

from kami_local import SERVICES
from kami_secrets import env_file, kubernetes_secret
from tests.deploy.chart import CHART, REPO, load_values

DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, arguments in _instructions():
        if instruction == "FROM":
            current = []
            stages[arguments.split()[-1]] = current
        current.append((instruction, arguments))
    return stages


def _pinned_uv() -> str:
    common = (REPO / "scripts" / "lib" / "common.sh").read_text()
    match = re.search(r'^UV_VERSION="([^"]+)"', common, re.MULTILINE)
    assert match
    return match.group(1)


def test_every_stage_builds_on_python_311_slim() -> None:
    args = dict(a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    froms = [a for i, a in _instructions() if i == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert all(a.startswith("${PYTHON_IMAGE} AS ") for a in froms)


def test_the_build_installs_the_pinned_uv_and_only_the_locked_dependencies() -> None:
    build = _stages()["build"]
    args = dict(a.split("=", 1) for i, a in build if i == "ARG")
    assert args["UV_VERSION"] == _pinned_uv()
    runs = [a for i, a in build if i == "RUN"]
    assert any('pip install --no-cache-dir "uv==${UV_VERSION}"' in r for r in runs)
    syncs = [shlex.split(r.split("uv sync", 1)[1]) for r in runs if "uv sync" in r]
    assert syncs, "no uv sync"
    for flags in syncs:
        assert "--frozen" in flags and "--no-dev" in flags
    # The first sync installs the dependencies alone (a layer cached until the lock
    # changes), the last the workspace itself.
    assert "--no-install-workspace" in syncs[0]
    assert "--no-install-workspace" not in syncs[-1]


def test_the_runtime_runs_as_a_non_root_user_and_serves_the_named_service() -> None:
    runtime = list(_stages().values())[-1]
    users = [a for i, a in runtime if i == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}
    assert int(user) >= 1000
    created = " ".join(a for i, a in runtime if i == "RUN")
    assert f"--uid {user}" in created
    (entrypoint,) = [a for i, a in runtime if i == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["kami", "serve"]
    assert not [a for i, a in runtime if i == "CMD"], "the service must be named"
    env = " ".join(a for i, a in runtime if i == "ENV")
    assert "KAMI_HTTP_HOST=0.0.0.0" in env
    assert "PATH=/app/.venv/bin:$PATH" in env


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "**/.venv", ".local-stack", "**/__pycache__"} <= ignored
    for needed in ("uv.lock", "pyproject.toml", "libs", "services"):
        assert needed not in ignored


def test_compose_runs_every_service_from_the_image_on_its_port() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    for name, port in SERVICES.items():
        service = services[name]
        assert service["image"] == "kami:dev"
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert service["command"] == [name]
        assert service["environment"]["KAMI_HTTP_PORT"] == str(port)
        assert service["environment"]["KAMI_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "replicaSet=rs0" in service["environment"]["KAMI_MONGODB_URI"]
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["entrypoint"][:3] == ["kami", "topics", "create"]
    assert "--replSet" in services["mongodb"]["command"]
    assert services["mongodb"]["image"].startswith("mongo:7")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_prometheus_scrapes_every_compose_service() -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (kami,) = [job for job in config["scrape_configs"] if job["job_name"] == "kami"]
    assert kami["honor_labels"] is True
    targets = {t for group in kami["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{port}" for name, port in SERVICES.items()}
    assert config["rule_files"] == ["alerts.yaml"]


def test_the_chart_gives_each_service_the_port_the_platform_uses() -> None:
    values = load_values(CHART / "values.yaml")
    assert {name: s["port"] for name, s in values["services"].items()} == SERVICES


def _read_env_file(text: str) -> dict[str, str]:
    """What docker compose reads back from KEY="value" lines."""
    values = {}
    for line in text.splitlines():
        key, _, quoted = line.partition("=")
        assert quoted.startswith('"') and quoted.endswith('"'), line
        values[key] = re.sub(
            r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), quoted[1:-1]
        )
    return values


def test_generated_secrets_survive_the_env_file_and_the_kubernetes_secret() -> None:
    values = {
        "KAMI_AUTH_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n",
        "KAMI_PAYMENT_ALIPAY_SECRET": 'with "quotes" and \\ backslash',
    }
    assert _read_env_file(env_file(values)) == values
    manifest = json.loads(kubernetes_secret(values, "kami-secrets"))
    assert manifest["metadata"]["name"] == "kami-secrets"
    assert manifest["stringData"] == values


def test_the_generator_makes_every_secret_the_chart_hands_out() -> None:
    from kami_local import generate_secrets

    values = load_values(CHART / "values.yaml")
    handed_out = {
        key
        for service in values["services"].values()
        for key in service.get("secretKeys", values["defaults"]["secretKeys"])
    }
    assert handed_out == set(generate_secrets())


def test_the_compose_secrets_file_is_not_committed() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "deploy/kami-secrets.env" in ignored
