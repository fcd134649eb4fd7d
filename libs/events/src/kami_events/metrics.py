"""Prometheus metrics of the shared event machinery (DESIGN §7).

Labelled by service so one process can host several (tests, the demo).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPENDED = Counter(
    "kami_events_appended_total",
    "Events committed to a service's event store",
    ["service", "event_type"],
)
CONCURRENCY_CONFLICTS = Counter(
    "kami_event_store_conflicts_total",
    "Appends refused because another writer got the stream version first",
    ["service"],
)
EVENTS_PUBLISHED = Counter(
    "kami_events_published_total",
    "Events the outbox relay published to Kafka",
    ["service", "event_type"],
)
OUTBOX_UNPUBLISHED = Gauge(
    "kami_outbox_unpublished_commits",
    "Commits in the outbox not yet published",
    ["service"],
)
OUTBOX_LAG = Gauge(
    "kami_outbox_lag_seconds",
    "Age of the oldest unpublished commit (0 when the outbox is empty)",
    ["service"],
)
EVENTS_CONSUMED = Counter(
    "kami_events_consumed_total",
    "Messages a consumer finished with, by outcome "
    "(handled, duplicate, ignored, dead_lettered, malformed)",
    ["service", "event_type", "outcome"],
)
HANDLER_FAILURES = Counter(
    "kami_event_handler_failures_total",
    "Handler attempts that raised (each retry counts)",
    ["service", "event_type"],
)
HANDLER_SECONDS = Histogram(
    "kami_event_handler_seconds",
    "Time to handle one event, retries included",
    ["service", "event_type"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEAD_LETTERED = Counter(
    "kami_dead_lettered_total",
    "Messages sent to the dead-letter topic",
    ["service", "event_type"],
)

MONGO_COMMAND_SECONDS = Histogram(
    "kami_mongo_command_seconds",
    "MongoDB commands by collection, command and the fields their filter names "
    "(on FerretDB 1.24 a filter other than exactly `_id` scans the collection in Go)",
    ["app", "collection", "command", "filter"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

CONSUMER_LAG = Gauge(
    "kami_consumer_lag_messages",
    "Messages on a partition assigned to the service's consumer group that it has not "
    "committed yet (end offset minus committed offset), refreshed periodically",
    ["service", "topic", "partition"],
)
