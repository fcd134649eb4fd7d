"""The FastStream Kafka broker every service uses."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from kami_events.settings import ServiceSettings


def make_broker(settings: ServiceSettings, **options: object) -> KafkaBroker:
    """A broker whose producer is idempotent with acks=all, so a retried send
    is neither lost nor duplicated nor reordered within a partition."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"kami-{settings.service_name}",
        enable_idempotence=True,
        acks="all",
        **options,  # type: ignore[arg-type]
    )
