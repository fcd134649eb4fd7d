"""Rendering the Helm chart for the tests: `helm template` into parsed manifests."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "kami"
PRODUCTION_VALUES = CHART / "values-production.yaml"
RELEASE = "kami"
NAMESPACE = "kami"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# kubernetes-validate ships schemas for: every manifest must be valid on both.
OLDEST_KUBERNETES = "1.25.0"

Manifest = dict[str, Any]


class RenderError(Exception):
    pass


def helm_template(
    helm: Path,
    values: Sequence[Path] = (),
    set_values: Iterable[str] = (),
    kube_version: str = OLDEST_KUBERNETES,
) -> list[Manifest]:
    command = [
        str(helm),
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
    ]
    for path in values:
        command += ["--values", str(path)]
    for item in set_values:
        command += ["--set", item]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RenderError(result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class Rendered:
    """One rendering of the chart, with lookups the tests need."""

    name: str
    manifests: list[Manifest]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def get(self, kind: str, name: str) -> Manifest:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {m["metadata"]["name"] for m in self.of_kind(kind)}

    def container_env(self, deployment: Manifest, secrets: dict[str, str]) -> dict[str, str]:
        """The environment the service's container starts with: its ConfigMaps,
        then its env entries; secret references resolved from the chart's own
        Secrets, else from `secrets` (what an existing Secret would hold)."""
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            config_map = self.get("ConfigMap", source["configMapRef"]["name"])
            env.update(config_map["data"])
        own_secrets = {
            m["metadata"]["name"]: {
                k: base64.b64decode(v).decode() for k, v in m.get("data", {}).items()
            }
            for m in self.of_kind("Secret")
        }
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
                continue
            ref = entry["valueFrom"]["secretKeyRef"]
            if ref["name"] in own_secrets:
                env[entry["name"]] = own_secrets[ref["name"]][ref["key"]]
            else:
                env[entry["name"]] = secrets[ref["key"]]
        return env


def load_values(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded
