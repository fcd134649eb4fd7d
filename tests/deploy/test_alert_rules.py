"""The alert rules (deploy/prometheus/alerts.yaml): their structure, and each
rule fed with series through promtool's rule unit tester, which checks when it
fires, with which labels, and what its summary says."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import ALERT_RULES, REPO

RULES: dict[str, Any] = yaml.safe_load(ALERT_RULES.read_text())
ALERTS: dict[str, dict[str, Any]] = {
    rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"] if "alert" in rule
}
SEVERITIES = {"critical", "warning", "info"}

# What issue 7 asks the alerts to cover, and the metric each must watch.
REQUIRED = {
    "KamiSagasStuck": "kami_saga_past_deadline",
    "KamiOutboxLagging": "kami_outbox_lag_seconds",
    "KamiConsumerLagging": "kami_consumer_lag_messages",
    "KamiDeadLetters": "kami_dead_lettered_total",
    "KamiRefundSpike": "kami_payment_refunds_total",
    "KamiSellerDepositBelowMinimum": "kami_payment_deposits_below_minimum",
    "KamiHttpErrors": "kami_http_request_duration_seconds_count",
}


def test_the_rule_files_are_well_formed() -> None:
    group_names = [g["name"] for g in RULES["groups"]]
    assert len(group_names) == len(set(group_names))
    names = [r["alert"] for g in RULES["groups"] for r in g["rules"]]
    assert len(names) == len(set(names)), "alert names must be unique"
    for name, rule in ALERTS.items():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
        assert name.startswith("Kami"), name


def test_the_required_alerts_exist_and_watch_their_metric() -> None:
    for name, metric in REQUIRED.items():
        assert name in ALERTS, f"missing alert {name}"
        assert metric in ALERTS[name]["expr"], f"{name} does not watch {metric}"


def test_promtool_accepts_the_rules_and_the_scrape_configs(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "check", "rules", str(ALERT_RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout
    for config in sorted((REPO / "deploy" / "prometheus").glob("prometheus*.yml")):
        result = subprocess.run(
            [str(promtool), "check", "config", "--syntax-only", str(config)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# -- behaviour ----------------------------------------------------------------------


@dataclass
class Case:
    """Series (promtool's expanding notation, one sample a minute) and what the
    alert must say at `at`: nothing, or one alert per entry of `fires`
    (its labels and its rendered summary)."""

    name: str
    alert: str
    series: dict[str, str]
    at: str
    fires: list[tuple[dict[str, str], str]] = field(default_factory=list)


def _description(alert: str, labels: dict[str, str]) -> str:
    text: str = ALERTS[alert]["annotations"]["description"]
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)


CASES = [
    Case(
        "a stuck saga reported by two ordering replicas counts once",
        "KamiSagasStuck",
        {
            'kami_saga_past_deadline{instance="ordering-a"}': "0 0 3x20",
            'kami_saga_past_deadline{instance="ordering-b"}': "0 0 3x20",
        },
        at="15m",
        fires=[({"severity": "critical"}, "3 orders are past their saga deadline")],
    ),
    Case(
        "a saga past its deadline for less than 10 minutes is not yet stuck",
        "KamiSagasStuck",
        {"kami_saga_past_deadline": "0 0 3x20"},
        at="9m",
    ),
    Case(
        "an outbox over a minute behind for 5 minutes",
        "KamiOutboxLagging",
        {
            'kami_outbox_lag_seconds{service="payment", instance="a"}': "0 0 120x20",
            'kami_outbox_lag_seconds{service="ordering", instance="b"}': "1x20",
        },
        at="10m",
        fires=[
            (
                {"severity": "critical", "service": "payment"},
                "payment: the outbox is 2m 0s behind",
            )
        ],
    ),
    Case(
        "consumer lag counts each partition once, whichever replicas report it",
        "KamiConsumerLagging",
        {
            'kami_consumer_lag_messages{service="delivery", topic="kami.ordering.order.v1", '
            'partition="0", instance="a"}': "800x30",
            'kami_consumer_lag_messages{service="delivery", topic="kami.ordering.order.v1", '
            'partition="1", instance="a"}': "700x30",
            'kami_consumer_lag_messages{service="delivery", topic="kami.ordering.order.v1", '
            'partition="1", instance="b"}': "700x30",
        },
        at="15m",
        fires=[
            (
                {"severity": "warning", "service": "delivery", "topic": "kami.ordering.order.v1"},
                "delivery is 1500 messages behind on kami.ordering.order.v1",
            )
        ],
    ),
    Case(
        "consumer lag under the bound",
        "KamiConsumerLagging",
        {
            'kami_consumer_lag_messages{service="delivery", topic="t", partition="0"}': "900x30",
        },
        at="15m",
    ),
    Case(
        "a dead letter alerts at once",
        "KamiDeadLetters",
        {
            'kami_dead_lettered_total{service="inventory", event_type="OrderPlaced"}': "0 0 0 1x30",
        },
        at="5m",
        fires=[
            (
                {"severity": "warning", "service": "inventory", "event_type": "OrderPlaced"},
                "inventory dead-lettered OrderPlaced messages",
            )
        ],
    ),
    Case(
        "a dead letter older than 15 minutes no longer alerts",
        "KamiDeadLetters",
        {
            'kami_dead_lettered_total{service="inventory", event_type="OrderPlaced"}': "0 0 0 1x30",
        },
        at="25m",
    ),
    Case(
        "one handling attempt in five failing for 10 minutes",
        "KamiHandlersFailing",
        {
            'kami_event_handler_failures_total{service="payment", event_type="OrderPaid"}': (
                "0+12x30"
            ),
            'kami_events_consumed_total{service="payment", event_type="OrderPaid", '
            'outcome="handled"}': "0+60x30",
        },
        at="20m",
        fires=[
            (
                {"severity": "warning", "service": "payment"},
                "payment: 20% of event handling attempts fail",
            )
        ],
    ),
    Case(
        "5xx answers over 2% of a busy service's requests",
        "KamiHttpErrors",
        {
            'kami_http_request_duration_seconds_count{service="catalog", method="GET", '
            'route="/offers", status="500"}': "0+6x20",
            'kami_http_request_duration_seconds_count{service="catalog", method="GET", '
            'route="/offers", status="200"}': "0+54x20",
            'kami_http_request_duration_seconds_count{service="identity", method="POST", '
            'route="/auth/login", status="200"}': "0+60x20",
        },
        at="15m",
        fires=[
            (
                {"severity": "critical", "service": "catalog"},
                "catalog: 10% of HTTP requests fail with 5xx",
            )
        ],
    ),
    Case(
        "one 5xx on an idle service is not an error rate",
        "KamiHttpErrors",
        {
            'kami_http_request_duration_seconds_count{service="catalog", method="GET", '
            'route="/offers", status="500"}': "0 1x20",
            'kami_http_request_duration_seconds_count{service="catalog", method="GET", '
            'route="/offers", status="200"}': "0+1x20",
        },
        at="15m",
    ),
    Case(
        "refunds at a fifth of the payments",
        "KamiRefundSpike",
        {
            'kami_payment_refunds_total{source="escrow", reason="delivery_failed"}': "0+1x40",
            'kami_payments_total{channel="wallet", outcome="confirmed"}': "0+5x40",
            'kami_payments_total{channel="wallet", outcome="insufficient_funds"}': "0+50x40",
        },
        at="40m",
        fires=[
            (
                {"severity": "warning"},
                "Refunds are 20% of confirmed payments in the last 30 minutes",
            )
        ],
    ),
    Case(
        "a few refunds are no spike, whatever the ratio",
        "KamiRefundSpike",
        {
            'kami_payment_refunds_total{source="escrow", reason="delivery_failed"}': "0 0 1 2 3x40",
            'kami_payments_total{channel="wallet", outcome="confirmed"}': "0+0x40",
        },
        at="40m",
    ),
    Case(
        "sellers below the deposit minimum for 15 minutes",
        "KamiSellerDepositBelowMinimum",
        {
            'kami_payment_deposits_below_minimum{instance="a"}': "2x30",
            'kami_payment_deposits_below_minimum{instance="b"}': "2x30",
        },
        at="20m",
        fires=[({"severity": "info"}, "2 sellers are below the deposit minimum")],
    ),
    Case(
        "the ledger off with nothing in flight",
        "KamiLedgerUnbalanced",
        {
            'kami_ledger_balance_fen{account_type="buyer_wallet"}': "1000x20",
            'kami_ledger_balance_fen{account_type="escrow"}': "-900x20",
            "kami_ledger_movements_in_flight": "0x20",
        },
        at="10m",
        fires=[({"severity": "critical"}, "The ledger is off by 100 fen")],
    ),
    Case(
        "the ledger off while a movement is in flight is not yet unbalanced",
        "KamiLedgerUnbalanced",
        {
            'kami_ledger_balance_fen{account_type="buyer_wallet"}': "1000x20",
            'kami_ledger_balance_fen{account_type="escrow"}': "-900x20",
            "kami_ledger_movements_in_flight": "1x20",
        },
        at="10m",
    ),
    Case(
        "a balanced ledger",
        "KamiLedgerUnbalanced",
        {
            'kami_ledger_balance_fen{account_type="buyer_wallet"}': "1000x20",
            'kami_ledger_balance_fen{account_type="escrow"}': "-1000x20",
            "kami_ledger_movements_in_flight": "0x20",
        },
        at="10m",
    ),
    Case(
        "deliveries parked for 10 minutes",
        "KamiDeliveriesParked",
        {
            'kami_delivery_queue_jobs{state="parked"}': "2x20",
            'kami_delivery_queue_jobs{state="queued"}': "50x20",
        },
        at="15m",
        fires=[({"severity": "warning"}, "2 automatic deliveries are parked")],
    ),
]


def test_every_alert_has_a_case_where_it_fires() -> None:
    assert {c.alert for c in CASES if c.fires} == set(ALERTS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_alert_fires_when_it_must_and_says_what_happened(
    case: Case, promtool: Path, tmp_path: Path
) -> None:
    expected = [
        {
            "exp_labels": labels,
            "exp_annotations": {
                "summary": summary,
                "description": _description(case.alert, labels),
            },
        }
        for labels, summary in case.fires
    ]
    unit_test = {
        "rule_files": [str(ALERT_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": case.name,
                "interval": "1m",
                "input_series": [
                    {"series": series, "values": values} for series, values in case.series.items()
                ],
                "alert_rule_test": [
                    {"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}
                ],
            }
        ],
    }
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(unit_test, sort_keys=False))
    result = subprocess.run(
        [str(promtool), "test", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
