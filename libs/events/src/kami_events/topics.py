"""Kafka topic names.

One topic per aggregate type (DESIGN §2): `kami.<service>.<aggregate>.v<major>`.
The Kafka key is always the aggregate id, so one aggregate's events stay in
order on one partition.

`KAMI_TOPIC_PREFIX` replaces the leading `kami` for a whole deployment: an
isolated namespace on a shared cluster (end-to-end test runs and benchmark
runs use one each). It names the consumer groups too (`<prefix>-<service>`):
two namespaces sharing a group would rebalance each other's consumers every
time one of them starts or stops. The published docs always describe the
default.
"""

from __future__ import annotations

import os

TOPIC_PREFIX = "kami"
TOPIC_MAJOR_VERSION = 1


def topic_prefix() -> str:
    return os.environ.get("KAMI_TOPIC_PREFIX") or TOPIC_PREFIX


def topic_for(aggregate_type: str) -> str:
    """The topic carrying every event of `aggregate_type` (e.g. `ordering.order`)."""
    service, _, aggregate = aggregate_type.partition(".")
    if not service or not aggregate or "." in aggregate:
        raise ValueError(
            f"aggregate type must look like '<service>.<aggregate>', got {aggregate_type!r}"
        )
    return f"{topic_prefix()}.{service}.{aggregate}.v{TOPIC_MAJOR_VERSION}"


def dead_letter_topic(service: str) -> str:
    """Where `service`'s consumer parks messages it could not handle."""
    return f"{topic_prefix()}.{service}.dead-letter.v{TOPIC_MAJOR_VERSION}"


def consumer_group_of(service: str) -> str:
    """`service`'s consumer group (`kami-<service>` by default)."""
    return f"{topic_prefix()}-{service}"
