"""Kami's Grafana dashboards, written as code and committed as JSON.

    uv run python deploy/grafana/dashboards.py           # rewrite deploy/grafana/*.json
    uv run python deploy/grafana/dashboards.py --check   # exit 1 if a JSON file is stale

One platform overview (purchases, saga outcomes, payment-to-delivery latency,
stock, money, lag) and one dashboard per service (event handling, consumer and
outbox lag, errors, HTTP, and the service's own metrics). Every query names
only `kami_*` metrics defined in the code (tests/deploy checks that).

Gauges computed from a service's database (orders by state, keys by state,
ledger totals, ...) are reported alike by every replica, so they are combined
with `max`, never `sum`. Consumer lag is reported per partition by whichever
replica holds it: `max` per partition, then `sum`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SERVICES = (
    "identity",
    "catalog",
    "inventory",
    "ordering",
    "payment",
    "delivery",
    "aftersales",
    "reseller",
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE_WINDOW = "5m"
LEAST_STOCK = 'bottomk(15, max by (offer_id) (kami_inventory_keys{state="available"}))'

Json = dict[str, Any]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries, stat, table
    width: int = 12
    height: int = 8
    description: str = ""
    # A stat turns red at this value (and above).
    red_from: float | None = None


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def quantiles(metric: str, selector: str, by: str = "", label: str = "") -> tuple[Query, ...]:
    """p50 and p99 of a histogram, optionally split by a label."""
    group = f"le, {by}" if by else "le"
    return tuple(
        q(
            f"histogram_quantile({phi}, sum by ({group}) "
            f"(rate({metric}_bucket{selector}[{RATE_WINDOW}])))",
            f"{label}p{int(phi * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for phi in (0.5, 0.99)
    )


# -- the panels every service has ----------------------------------------------


def event_rows(service: str) -> list[Row]:
    s = f'{{service="{service}"}}'
    return [
        Row(
            "Events",
            [
                Panel(
                    "Events consumed / s by outcome",
                    (q(f"sum by (outcome) (rate(kami_events_consumed_total{s}[{RATE_WINDOW}]))"),),
                    unit="ops",
                    description="handled, duplicate (redelivery skipped), ignored, "
                    "dead_lettered, malformed",
                ),
                Panel(
                    "Handler latency",
                    quantiles("kami_event_handler_seconds", s),
                    unit="s",
                    description="Time to handle one event, retries included",
                ),
                Panel(
                    "Handler latency p99 by event type",
                    (
                        q(
                            "histogram_quantile(0.99, sum by (le, event_type) "
                            f"(rate(kami_event_handler_seconds_bucket{s}[{RATE_WINDOW}])))",
                            "{{event_type}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Events published / s by type",
                    (
                        q(
                            "sum by (event_type) "
                            f"(rate(kami_events_published_total{s}[{RATE_WINDOW}]))",
                            "{{event_type}}",
                        ),
                    ),
                    unit="ops",
                ),
            ],
        ),
        Row(
            "Lag",
            [
                Panel(
                    "Consumer lag by topic",
                    (
                        q(
                            "sum by (topic) (max by (topic, partition) "
                            f"(kami_consumer_lag_messages{s}))",
                            "{{topic}}",
                        ),
                    ),
                    description="Messages on the service's subscribed topics not yet "
                    "committed by its consumer group",
                ),
                Panel(
                    "Outbox lag",
                    (
                        q(f"max(kami_outbox_lag_seconds{s})", "oldest unpublished commit (s)"),
                        q(f"max(kami_outbox_unpublished_commits{s})", "unpublished commits"),
                    ),
                    description="Age of the oldest commit the relay has not yet published",
                ),
            ],
        ),
        Row(
            "Errors",
            [
                Panel(
                    "Handler failures / s by event type",
                    (
                        q(
                            "sum by (event_type) "
                            f"(rate(kami_event_handler_failures_total{s}[{RATE_WINDOW}]))",
                            "{{event_type}}",
                        ),
                    ),
                    unit="ops",
                    width=8,
                    description="Every failed attempt counts, retries included",
                ),
                Panel(
                    "Dead-lettered (1h)",
                    (
                        q(
                            f"sum by (event_type) (increase(kami_dead_lettered_total{s}[1h]))",
                            "{{event_type}}",
                        ),
                    ),
                    width=8,
                ),
                Panel(
                    "Event store conflicts / s",
                    (
                        q(
                            f"sum(rate(kami_event_store_conflicts_total{s}[{RATE_WINDOW}]))",
                            "conflicts",
                        ),
                    ),
                    unit="ops",
                    width=8,
                    description="Appends refused because another writer got the stream "
                    "version first (retried by the handler)",
                ),
            ],
        ),
    ]


def http_row(service: str) -> Row:
    s = f'{{service="{service}"}}'
    return Row(
        "HTTP",
        [
            Panel(
                "Requests / s by status",
                (
                    q(
                        "sum by (status) "
                        f"(rate(kami_http_request_duration_seconds_count{s}[{RATE_WINDOW}]))",
                        "{{status}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel("Request latency", quantiles("kami_http_request_duration_seconds", s), unit="s"),
            Panel(
                "Request latency p99 by route",
                (
                    q(
                        "histogram_quantile(0.99, sum by (le, method, route) "
                        f"(rate(kami_http_request_duration_seconds_bucket{s}[{RATE_WINDOW}])))",
                        "{{method}} {{route}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "5xx ratio",
                (
                    q(
                        "sum(rate(kami_http_request_duration_seconds_count"
                        f'{{service="{service}", status=~"5.."}}[{RATE_WINDOW}])) '
                        "/ sum(rate(kami_http_request_duration_seconds_count"
                        f"{s}[{RATE_WINDOW}]))",
                        "5xx",
                    ),
                ),
                unit="percentunit",
            ),
        ],
    )


# -- each service's own metrics --------------------------------------------------


def ordering_rows() -> list[Row]:
    return [
        Row(
            "Purchase saga",
            [
                Panel(
                    "Orders placed / min by delivery mode",
                    (
                        q(
                            "sum by (delivery_mode) "
                            f"(rate(kami_orders_placed_total[{RATE_WINDOW}])) * 60",
                            "{{delivery_mode}}",
                        ),
                    ),
                ),
                Panel(
                    "Orders by saga state",
                    (q("max by (state) (kami_saga_orders)", "{{state}}"),),
                ),
                Panel(
                    "Saga duration by outcome",
                    quantiles("kami_saga_duration_seconds", "", by="outcome"),
                    unit="s",
                ),
                Panel(
                    "Saga decisions / s",
                    (
                        q(
                            "sum by (trigger, outcome) "
                            f"(rate(kami_saga_decisions_total[{RATE_WINDOW}]))",
                            "{{trigger}} {{outcome}}",
                        ),
                    ),
                    unit="ops",
                    description="What each reply or deadline did to its order: applied, "
                    "compensated, duplicate, ignored, rejected",
                ),
                Panel(
                    "Sagas past their deadline",
                    (q("max(kami_saga_past_deadline)", "past deadline"),),
                    kind="stat",
                    width=6,
                    red_from=1,
                ),
            ],
        ),
        Row(
            "Commerce (coupons, flash sales)",
            [
                Panel(
                    "Coupon redemptions (1h) by funder",
                    (
                        q(
                            "sum by (funded_by) (increase(kami_coupon_redemptions_total[1h]))",
                            "{{funded_by}}",
                        ),
                    ),
                    description="Coupon uses made final by a delivery (docs/commerce.md); "
                    "seller: the seller funds the discount, platform: the operator's coupon.",
                ),
                Panel(
                    "Coupon discount redeemed (yuan / h) by funder",
                    (
                        q(
                            "sum by (funded_by) "
                            "(increase(kami_coupon_discount_fen_total[1h])) / 100",
                            "{{funded_by}}",
                        ),
                    ),
                ),
                Panel(
                    "Quota claims / min by kind and result",
                    (
                        q(
                            "sum by (kind, result) "
                            f"(rate(kami_quota_claims_total[{RATE_WINDOW}])) * 60",
                            "{{kind}} {{result}}",
                        ),
                        q(
                            f"sum by (kind) (rate(kami_quota_releases_total[{RATE_WINDOW}])) * 60",
                            "{{kind}} released",
                        ),
                    ),
                    description="Coupon uses and flash-sale keys claimed at placement "
                    "(claimed, buyer_limit, exhausted: refused with 409) and given back.",
                ),
            ],
        ),
    ]


def inventory_rows() -> list[Row]:
    return [
        Row(
            "Stock",
            [
                Panel(
                    "Keys by state",
                    (
                        q(
                            "sum by (state) (max by (offer_id, state) (kami_inventory_keys))",
                            "{{state}}",
                        ),
                    ),
                ),
                Panel(
                    "Offers with the least stock",
                    (
                        q(
                            LEAST_STOCK,
                            "{{offer_id}}",
                        ),
                    ),
                    kind="table",
                ),
                Panel(
                    "Reservations / min by outcome",
                    (
                        q(
                            "sum by (outcome) "
                            f"(rate(kami_inventory_reservations_total[{RATE_WINDOW}])) * 60",
                            "{{outcome}}",
                        ),
                    ),
                ),
                Panel(
                    "Keys imported and revealed / min",
                    (
                        q(
                            f"sum(rate(kami_inventory_keys_imported_total[{RATE_WINDOW}])) * 60",
                            "imported",
                        ),
                        q(
                            "sum by (outcome) "
                            f"(rate(kami_inventory_key_reveals_total[{RATE_WINDOW}])) * 60",
                            "reveal {{outcome}}",
                        ),
                    ),
                ),
            ],
        )
    ]


def payment_rows() -> list[Row]:
    return [
        Row(
            "Payments",
            [
                Panel(
                    "Payments / min by channel and outcome",
                    (
                        q(
                            "sum by (channel, outcome) "
                            f"(rate(kami_payments_total[{RATE_WINDOW}])) * 60",
                            "{{channel}} {{outcome}}",
                        ),
                    ),
                ),
                Panel(
                    "Channel callbacks / min",
                    (
                        q(
                            "sum by (channel, kind, outcome) "
                            f"(rate(kami_payment_callbacks_total[{RATE_WINDOW}])) * 60",
                            "{{channel}} {{kind}} {{outcome}}",
                        ),
                        q(
                            "sum by (channel, found) "
                            f"(rate(kami_payment_gateway_polls_total[{RATE_WINDOW}])) * 60",
                            "poll {{channel}} {{found}}",
                        ),
                    ),
                ),
                Panel(
                    "Refunds (1h) by source and reason",
                    (
                        q(
                            "sum by (source, reason) (increase(kami_payment_refunds_total[1h]))",
                            "{{source}} {{reason}}",
                        ),
                    ),
                ),
                Panel(
                    "Refunded and settled (yuan / h)",
                    (
                        q(
                            "sum by (source) (increase(kami_payment_refunded_fen_total[1h])) / 100",
                            "refunded from {{source}}",
                        ),
                        q(
                            "sum by (part) (increase(kami_payment_settled_fen_total[1h])) / 100",
                            "settled {{part}}",
                        ),
                    ),
                ),
            ],
        ),
        Row(
            "Ledger and deposits",
            [
                Panel(
                    "Ledger balance by account type (yuan)",
                    (
                        q(
                            "max by (account_type) (kami_ledger_balance_fen) / 100",
                            "{{account_type}}",
                        ),
                        q(
                            "sum(max by (account_type) (kami_ledger_balance_fen)) / 100",
                            "sum (must be 0)",
                        ),
                    ),
                ),
                Panel(
                    "Ledger movements / min",
                    (
                        q(
                            "sum by (purpose, outcome) "
                            f"(rate(kami_ledger_movements_total[{RATE_WINDOW}])) * 60",
                            "{{purpose}} {{outcome}}",
                        ),
                        q("max(kami_ledger_movements_in_flight)", "in flight"),
                    ),
                ),
                Panel(
                    "Sellers below the deposit minimum",
                    (q("max(kami_payment_deposits_below_minimum)", "sellers"),),
                    kind="stat",
                    width=6,
                    red_from=1,
                ),
            ],
        ),
    ]


def delivery_rows() -> list[Row]:
    return [
        Row(
            "Delivery",
            [
                Panel(
                    "Deliveries / min by mode and outcome",
                    (
                        q(
                            "sum by (mode, outcome) "
                            f"(rate(kami_delivery_outcomes_total[{RATE_WINDOW}])) * 60",
                            "{{mode}} {{outcome}}",
                        ),
                    ),
                ),
                Panel(
                    "Payment to delivery by priority",
                    quantiles(
                        "kami_delivery_queue_wait_seconds", "", by="priority", label="priority "
                    ),
                    unit="s",
                ),
                Panel(
                    "Priority lane jobs by state",
                    (q("max by (state) (kami_delivery_queue_jobs)", "{{state}}"),),
                    description="parked: an operator must act",
                ),
                Panel(
                    "Inventory call failures and vault access / min",
                    (
                        q(
                            "sum(rate(kami_delivery_inventory_failures_total"
                            f"[{RATE_WINDOW}])) * 60",
                            "inventory failures",
                        ),
                        q(
                            "sum by (action) "
                            f"(rate(kami_vault_plaintext_access_total[{RATE_WINDOW}])) * 60",
                            "vault {{action}}",
                        ),
                        q(
                            "sum by (channel) "
                            f"(rate(kami_delivery_notifications_total[{RATE_WINDOW}])) * 60",
                            "notified by {{channel}}",
                        ),
                    ),
                ),
            ],
        )
    ]


def aftersales_rows() -> list[Row]:
    return [
        Row(
            "Tickets",
            [
                Panel(
                    "Open tickets by state and type",
                    (q("max by (state, type) (kami_aftersales_tickets)", "{{state}} {{type}}"),),
                ),
                Panel(
                    "Tickets opened (1h) by type",
                    (
                        q(
                            "sum by (type) (increase(kami_aftersales_tickets_opened_total[1h]))",
                            "{{type}}",
                        ),
                    ),
                ),
            ],
        )
    ]


def reseller_rows() -> list[Row]:
    w = RATE_WINDOW
    return [
        Row(
            "Resellers",
            [
                Panel(
                    "Reseller orders (1h) by outcome",
                    (
                        q(
                            "sum by (outcome) (increase(kami_reseller_orders_total[1h]))",
                            "{{outcome}}",
                        ),
                    ),
                    description="Orders resellers placed, delivered, cancelled and refunded.",
                ),
                Panel(
                    "Webhook deliveries / min by outcome",
                    (
                        q(
                            "sum by (outcome) "
                            f"(rate(kami_reseller_webhook_deliveries_total[{w}])) * 60",
                            "{{outcome}}",
                        ),
                    ),
                    description="Attempts to deliver signed webhooks; failed ones are retried "
                    "with exponential backoff.",
                ),
                Panel(
                    "Signed requests refused / min by reason",
                    (
                        q(
                            "sum by (reason) "
                            f"(rate(kami_reseller_signed_requests_refused_total[{w}])) * 60",
                            "{{reason}}",
                        ),
                    ),
                    description="401s: stale timestamp, replayed nonce, bad signature, unknown key",
                ),
            ],
        )
    ]


OWN_ROWS = {
    "ordering": ordering_rows,
    "inventory": inventory_rows,
    "payment": payment_rows,
    "delivery": delivery_rows,
    "aftersales": aftersales_rows,
    "reseller": reseller_rows,
}


# -- the platform overview ---------------------------------------------------------


def overview_rows() -> list[Row]:
    w = RATE_WINDOW
    return [
        Row(
            "Purchases",
            [
                Panel(
                    "Orders placed / min",
                    (q(f"sum(rate(kami_orders_placed_total[{w}])) * 60"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Payments confirmed / min",
                    (q(f'sum(rate(kami_payments_total{{outcome="confirmed"}}[{w}])) * 60'),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Sagas completed (1h)",
                    (
                        q(
                            "sum(increase(kami_saga_duration_seconds_count"
                            '{outcome="completed"}[1h])) '
                            "/ sum(increase(kami_saga_duration_seconds_count[1h]))"
                        ),
                    ),
                    unit="percentunit",
                    kind="stat",
                    width=6,
                    description="Share of the sagas that ended in the last hour that ended "
                    "completed (the rest were compensated: cancelled or refunded)",
                ),
                Panel(
                    "Sagas past their deadline",
                    (q("max(kami_saga_past_deadline)"),),
                    kind="stat",
                    width=6,
                    red_from=1,
                ),
                Panel(
                    "Purchases per minute",
                    (
                        q(f"sum(rate(kami_orders_placed_total[{w}])) * 60", "placed"),
                        q(
                            f'sum(rate(kami_payments_total{{outcome="confirmed"}}[{w}])) * 60',
                            "paid",
                        ),
                        q(
                            "sum(rate(kami_delivery_outcomes_total"
                            f'{{outcome="delivered"}}[{w}])) * 60',
                            "delivered",
                        ),
                    ),
                ),
                Panel(
                    "Sagas ended / min: success vs compensated",
                    (
                        q(
                            f"sum by (outcome) (rate(kami_saga_duration_seconds_count[{w}])) * 60",
                            "{{outcome}}",
                        ),
                    ),
                    description="completed is success; cancelled and refunded are compensated",
                ),
                Panel(
                    "Payment to delivery latency",
                    quantiles("kami_delivery_queue_wait_seconds", ""),
                    unit="s",
                    description="From the order being paid to its automatic delivery's outcome",
                ),
                Panel(
                    "Orders by saga state",
                    (q("max by (state) (kami_saga_orders)", "{{state}}"),),
                ),
            ],
        ),
        Row(
            "Stock and money",
            [
                Panel(
                    "Keys by state",
                    (
                        q(
                            "sum by (state) (max by (offer_id, state) (kami_inventory_keys))",
                            "{{state}}",
                        ),
                    ),
                ),
                Panel(
                    "Offers with the least stock",
                    (
                        q(
                            LEAST_STOCK,
                            "{{offer_id}}",
                        ),
                    ),
                    kind="table",
                ),
                Panel(
                    "Refunds (1h) by source",
                    (
                        q(
                            "sum by (source) (increase(kami_payment_refunds_total[1h]))",
                            "{{source}}",
                        ),
                    ),
                ),
                Panel(
                    "Sellers below the deposit minimum",
                    (q("max(kami_payment_deposits_below_minimum)"),),
                    kind="stat",
                    width=6,
                    red_from=1,
                ),
                Panel(
                    "Open after-sales tickets",
                    (q("sum(max by (state, type) (kami_aftersales_tickets))"),),
                    kind="stat",
                    width=6,
                ),
            ],
        ),
        Row(
            "Platform health",
            [
                Panel(
                    "Outbox lag by service",
                    (q("max by (service) (kami_outbox_lag_seconds)", "{{service}}"),),
                    unit="s",
                ),
                Panel(
                    "Consumer lag by service",
                    (
                        q(
                            "sum by (service) (max by (service, topic, partition) "
                            "(kami_consumer_lag_messages))",
                            "{{service}}",
                        ),
                    ),
                ),
                Panel(
                    "Dead-lettered (1h) by service",
                    (
                        q(
                            "sum by (service) (increase(kami_dead_lettered_total[1h]))",
                            "{{service}}",
                        ),
                    ),
                ),
                Panel(
                    "HTTP 5xx ratio by service",
                    (
                        q(
                            "sum by (service) (rate(kami_http_request_duration_seconds_count"
                            f'{{status=~"5.."}}[{w}])) / sum by (service) '
                            f"(rate(kami_http_request_duration_seconds_count[{w}]))",
                            "{{service}}",
                        ),
                    ),
                    unit="percentunit",
                ),
            ],
        ),
    ]


# -- JSON ------------------------------------------------------------------------------


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            **({"instant": True, "format": "table"} if panel.kind == "table" else {}),
        }
        for i, query in enumerate(panel.queries)
    ]
    steps: list[Json] = [{"color": "green", "value": None}]
    if panel.red_from is not None:
        steps.append({"color": "red", "value": panel.red_from})
    result: Json = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
    }
    if panel.description:
        result["description"] = panel.description
    if panel.kind == "timeseries":
        result["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        result["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    return result


def dashboard_json(uid: str, title: str, rows: list[Row], description: str) -> Json:
    panels: list[Json] = []
    y = 0
    next_id = 1
    for row in rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x = 0
                y += line_height
                line_height = 0
            panels.append(panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["kami"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [
            {
                "title": "Kami",
                "type": "dashboards",
                "tags": ["kami"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                }
            ]
        },
        "panels": panels,
    }


def build() -> dict[str, Json]:
    """Every dashboard by file name."""
    dashboards = {
        "kami-overview.json": dashboard_json(
            "kami-overview",
            "Kami / Platform overview",
            overview_rows(),
            "Purchases, saga outcomes, payment-to-delivery latency, stock, money and lag",
        )
    }
    for service in SERVICES:
        rows = [*OWN_ROWS.get(service, list)(), *event_rows(service), http_row(service)]
        dashboards[f"kami-{service}.json"] = dashboard_json(
            f"kami-{service}",
            f"Kami / {service}",
            rows,
            f"The {service} service: its own metrics, event handling, lag, errors and HTTP",
        )
    return dashboards


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a JSON file is stale")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    for name, dashboard in build().items():
        path: Path = args.out / name
        text = render(dashboard)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(
            f"stale dashboards: {', '.join(stale)}; run uv run python deploy/grafana/dashboards.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
