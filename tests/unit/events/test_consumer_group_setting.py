"""`KAMI_CONSUMER_GROUP_OVERRIDE`: a process joins another consumer group (a
replay reads every topic again from the start), the inbox still dedupes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kami_events.runtime import ServiceRuntime
from kami_events.settings import ServiceSettings


def test_the_default_group_is_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAMI_TOPIC_PREFIX", raising=False)
    settings = ServiceSettings(service_name="ordering")
    assert settings.consumer_group == "kami-ordering"


async def test_a_namespace_of_topics_has_its_own_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two namespaces on one cluster must not share groups: a member of a
    group subscribed to other topics still rebalances it."""
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", "kami-e2e-7")
    settings = ServiceSettings(service_name="ordering")
    assert settings.consumer_group == "kami-e2e-7-ordering"
    runtime = ServiceRuntime(settings)
    try:
        assert runtime.consumer.group_id == "kami-e2e-7-ordering"
    finally:
        await runtime.mongo.close()


async def test_the_override_from_the_environment_reaches_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAMI_CONSUMER_GROUP_OVERRIDE", "kami-ordering-replay-1")
    settings = ServiceSettings(service_name="ordering")
    assert settings.consumer_group == "kami-ordering-replay-1"
    runtime = ServiceRuntime(settings)
    try:
        assert runtime.consumer.group_id == "kami-ordering-replay-1"
        # The inbox is still the service's: a replayed message is a duplicate.
        assert runtime.consumer.service == "ordering"
    finally:
        await runtime.mongo.close()


def test_a_group_name_kafka_would_refuse_is_refused() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(service_name="ordering", consumer_group_override="two words")
