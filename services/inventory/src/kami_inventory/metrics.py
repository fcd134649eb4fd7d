"""Inventory's own Prometheus metrics (the shared ones come from kami_events)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

KEYS_IMPORTED = Counter("kami_inventory_keys_imported_total", "Keys added to pools by imports")
RESERVATIONS = Counter(
    "kami_inventory_reservations_total",
    "Orders answered by inventory, by outcome (reserved or the failure reason)",
    ["outcome"],
)
REPLACEMENTS = Counter(
    "kami_inventory_replacements_total",
    "Approved after-sales replacements answered, by outcome (allocated or the failure reason)",
    ["outcome"],
)
KEY_REVEALS = Counter(
    "kami_inventory_key_reveals_total",
    "Keys whose secret was given to delivery (revealed) or refused (withheld)",
    ["outcome"],
)
KEYS = Gauge(
    "kami_inventory_keys",
    "Keys of an offer's pool by state: available and reserved as of the pool's last commit, "
    "sold, blocked, voided and expired as of the last refresh (expired overlaps available "
    "and blocked: keys past their expiry never sold)",
    ["offer_id", "state"],
)
