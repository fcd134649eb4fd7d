"""What the dashboards and alert rules query, and which metrics the code defines."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana"
ALERT_RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"

METRIC_NAME = re.compile(r"\bkami_[a-z0-9_]+")
# The series prometheus-client exposes for one metric of each type.
EXPOSED_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
}


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query of every dashboard."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard: dict[str, Any] = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']} ({target['refId']})", target["expr"]


def alert_queries() -> Iterator[tuple[str, str]]:
    rules: dict[str, Any] = yaml.safe_load(ALERT_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"{ALERT_RULES.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def referenced_metrics(expr: str) -> set[str]:
    """The kami_* series names a query mentions (label values never start with kami_)."""
    return set(METRIC_NAME.findall(expr))


def _constant(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def defined_metrics(roots: list[Path]) -> dict[str, str]:
    """Every prometheus-client metric defined in the Python files under `roots`:
    name (as given, with namespace/subsystem joined) -> type."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if ".venv" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if kind not in EXPOSED_SUFFIXES:
                    continue
                keywords = {k.arg: k.value for k in node.keywords if k.arg}
                name = _constant(node.args[0] if node.args else keywords.get("name"))
                if name is None:
                    continue
                prefix = [
                    part
                    for part in (
                        _constant(keywords.get("namespace")),
                        _constant(keywords.get("subsystem")),
                    )
                    if part
                ]
                full = "_".join([*prefix, name])
                if full.startswith("kami_"):
                    found[full] = kind
    return found


def exposed_series(definitions: dict[str, str]) -> set[str]:
    """The series names Prometheus sees for these definitions: a counter named
    `x` or `x_total` is exposed as `x_total`, a histogram `h` as `h_bucket`,
    `h_sum` and `h_count`."""
    series: set[str] = set()
    for name, kind in definitions.items():
        base = name.removesuffix("_total") if kind == "Counter" else name
        series.update(base + suffix for suffix in EXPOSED_SUFFIXES[kind])
    return series
