"""`kami topics create`: every topic of the event catalogue and every
service's dead-letter topic, in the namespace `KAMI_TOPIC_PREFIX` names."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kami_cli.config import EVENT_SERVICES
from kami_cli.errors import CliError
from kami_events.catalogue import AGGREGATE_BASES
from kami_events.topics import dead_letter_topic, topic_for


def catalogue_topics() -> list[str]:
    """One topic per aggregate type, then one dead-letter topic per service."""
    events = [topic_for(base.aggregate_type) for base in AGGREGATE_BASES]
    return [*dict.fromkeys(events), *(dead_letter_topic(s) for s in EVENT_SERVICES)]


@dataclass(frozen=True)
class TopicOutcome:
    topic: str
    created: bool
    partitions: int


async def create_topics(
    bootstrap: str, topics: list[str], *, partitions: int, replication_factor: int
) -> list[TopicOutcome]:
    """Create what is missing; an existing topic is left as it is (and said so)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    try:
        await admin.start()
    except KafkaError as exc:
        raise CliError(f"Kafka at {bootstrap} is unreachable: {exc!r}") from None
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        created: set[str] = set()
        for topic in missing:
            try:
                response = await admin.create_topics(
                    [NewTopic(topic, partitions, replication_factor)]
                )
            except TopicAlreadyExistsError:
                continue  # created meanwhile (another run, auto-creation)
            for name, code, message in _topic_errors(response):
                if code == TopicAlreadyExistsError.errno:
                    continue
                if code:
                    raise CliError(f"Kafka refused to create {name}: {message} (error {code})")
                created.add(name)
        described = await admin.describe_topics(topics)
        counts = {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()
    return [TopicOutcome(t, t in created, counts.get(t, 0)) for t in topics]


def _topic_errors(response: object) -> list[tuple[str, int, str]]:
    """(topic, error code, message) from a CreateTopics response of any version."""
    rows = []
    for error in getattr(response, "topic_errors", []):
        name, code = error[0], error[1]
        message = error[2] if len(error) > 2 else ""
        rows.append((str(name), int(code), str(message or "")))
    return rows
