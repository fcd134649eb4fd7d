"""Kafka topic names.

One topic per aggregate type (DESIGN §2): `kami.<service>.<aggregate>.v<major>`.
The Kafka key is always the aggregate id, so one aggregate's events stay in
order on one partition.
"""

from __future__ import annotations

TOPIC_PREFIX = "kami"
TOPIC_MAJOR_VERSION = 1


def topic_for(aggregate_type: str) -> str:
    """The topic carrying every event of `aggregate_type` (e.g. `ordering.order`)."""
    service, _, aggregate = aggregate_type.partition(".")
    if not service or not aggregate or "." in aggregate:
        raise ValueError(
            f"aggregate type must look like '<service>.<aggregate>', got {aggregate_type!r}"
        )
    return f"{TOPIC_PREFIX}.{service}.{aggregate}.v{TOPIC_MAJOR_VERSION}"


def dead_letter_topic(service: str) -> str:
    """Where `service`'s consumer parks messages it could not handle."""
    return f"{TOPIC_PREFIX}.{service}.dead-letter.v{TOPIC_MAJOR_VERSION}"
