"""The Grafana dashboards (deploy/grafana/*.json): generated from
deploy/grafana/dashboards.py and up to date with it, well-formed for Grafana,
covering what issue 7 asks of them, and every query valid PromQL."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

# One dashboard per service that consumes events (the web pages have no consumer or outbox).
from kami_cli.config import EVENT_SERVICES as SERVICES
from tests.deploy.promql import DASHBOARDS, REPO, dashboard_queries

PANEL_TYPES = {"row", "timeseries", "stat", "table"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kami_dashboards", DASHBOARDS / "dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def test_the_committed_json_is_what_the_generator_writes() -> None:
    generator = _generator()
    built = generator.build()
    assert sorted(built) == sorted(_dashboards())
    stale = [
        name
        for name, board in built.items()
        if generator.render(board) != (DASHBOARDS / name).read_text()
    ]
    assert not stale, f"stale: {stale}; run uv run python deploy/grafana/dashboards.py"


def test_there_is_an_overview_and_one_dashboard_per_service() -> None:
    boards = _dashboards()
    assert set(boards) == {"kami-overview.json", *(f"kami-{s}.json" for s in SERVICES)}
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids))


def test_each_dashboard_is_well_formed_for_grafana() -> None:
    for name, board in _dashboards().items():
        assert board["title"] and board["schemaVersion"] >= 36, name
        assert len(board["uid"]) <= 40, name
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        occupied: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            where = f"{name}: {panel['title']}"
            assert panel["type"] in PANEL_TYPES, where
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, where
            cells = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & occupied, f"{where} overlaps another panel"
            occupied |= cells
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert ref_ids and len(ref_ids) == len(set(ref_ids)), where
            for target in panel["targets"]:
                assert target["expr"].strip(), where
                assert target["datasource"] == panel["datasource"], where


def _exprs(board: dict[str, Any]) -> str:
    return "\n".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))


def test_the_overview_shows_purchases_outcomes_latency_and_stock() -> None:
    overview = _exprs(_dashboards()["kami-overview.json"])
    assert "kami_orders_placed_total" in overview  # purchases per minute
    assert 'kami_payments_total{outcome="confirmed"}' in overview
    assert (
        "sum by (outcome) (rate(kami_saga_duration_seconds_count" in overview
    )  # success vs compensated
    assert (
        "histogram_quantile(0.5, sum by (le) (rate(kami_delivery_queue_wait_seconds_bucket"
        in overview
    )
    assert (
        "histogram_quantile(0.99, sum by (le) (rate(kami_delivery_queue_wait_seconds_bucket"
        in overview
    )
    assert "kami_inventory_keys" in overview  # stock


def test_each_service_dashboard_shows_latency_lag_errors_and_http_for_that_service() -> None:
    for service in SERVICES:
        exprs = _exprs(_dashboards()[f"kami-{service}.json"])
        selector = f'{{service="{service}"}}'
        for metric in (
            "kami_event_handler_seconds_bucket",  # handler latency
            "kami_consumer_lag_messages",
            "kami_outbox_lag_seconds",
            "kami_event_handler_failures_total",  # errors
            "kami_dead_lettered_total",
            "kami_http_request_duration_seconds_bucket",  # HTTP latency
        ):
            assert f"{metric}{selector}" in exprs, f"{service}: no {metric} for the service"
        others = [s for s in SERVICES if s != service]
        assert not [s for s in others if f'service="{s}"' in exprs], service


def test_every_query_is_valid_promql(promtool: Path, tmp_path: Path) -> None:
    # promtool parses rule expressions: hand it every query as a recording rule.
    queries = list(dashboard_queries())
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        where = "\n".join(f"query_{i}: {w}" for i, (w, _) in enumerate(queries))
        raise AssertionError(f"{result.stdout}{result.stderr}\n{where}")
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_grafana_provisioning_points_at_the_dashboards_compose_mounts() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./grafana:/var/lib/grafana/dashboards/kami:ro" in volumes
    provider = yaml.safe_load(
        (DASHBOARDS / "provisioning" / "dashboards" / "kami.yaml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/kami"
    (datasource,) = yaml.safe_load(
        (DASHBOARDS / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
