"""Every kami_* metric a dashboard or an alert rule queries is defined in the code,
so a renamed or removed metric cannot leave a panel silently empty or an alert
silently unable to fire."""

from __future__ import annotations

import pytest

from tests.deploy.promql import (
    REPO,
    alert_queries,
    dashboard_queries,
    defined_metrics,
    exposed_series,
    referenced_metrics,
)

# Metrics other engineers are adding in the same round of work (issue 7), which
# the dashboards and alerts already use. The lead deletes this list once they
# have landed; an entry that is defined in the code fails the test below, so a
# stale entry cannot linger.
BEING_ADDED: dict[str, str] = {}

DEFINED = defined_metrics([REPO / "libs", REPO / "services"])


def test_the_scan_finds_the_metrics_the_code_defines() -> None:
    # A scan that found nothing would let every reference fail open below.
    assert DEFINED["kami_outbox_lag_seconds"] == "Gauge"
    assert DEFINED["kami_events_consumed_total"] == "Counter"
    assert DEFINED["kami_event_handler_seconds"] == "Histogram"
    assert DEFINED["kami_saga_duration_seconds"] == "Histogram"
    assert exposed_series({"kami_x_total": "Counter", "kami_h": "Histogram"}) == {
        "kami_x_total",
        "kami_x_created",
        "kami_h_bucket",
        "kami_h_sum",
        "kami_h_count",
        "kami_h_created",
    }


def test_the_being_added_list_holds_only_metrics_not_yet_defined() -> None:
    landed = sorted(name for name in BEING_ADDED if name in DEFINED)
    assert not landed, f"defined in the code now: delete them from BEING_ADDED: {landed}"


@pytest.mark.parametrize(
    ("source", "queries"),
    [("dashboards", list(dashboard_queries())), ("alert rules", list(alert_queries()))],
)
def test_every_queried_metric_is_defined(source: str, queries: list[tuple[str, str]]) -> None:
    assert queries, f"no {source} found"
    known = exposed_series({**DEFINED, **BEING_ADDED})
    unknown = [
        f"{where}: {name}"
        for where, expr in queries
        for name in sorted(referenced_metrics(expr))
        if name not in known
    ]
    assert not unknown, "queries name metrics no code defines:\n" + "\n".join(unknown)
