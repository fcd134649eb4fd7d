"""Replaying every topic from offset 0 changes nothing (DESIGN §9.4).

Every consuming service is restarted in a fresh consumer group
(`KAMI_CONSUMER_GROUP_OVERRIDE`), so it reads all its topics again from the
first offset: every event the platform ever published reaches its handler a
second time. Afterwards every document of every service's database must be
as it was — event stores, inboxes, read models, ledger, keys — and the §9
audit must still pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import TopicPartition

from kami_actors import Person
from kami_events.mongo import connect
from tests.faults.harness import (
    FaultsPlatform,
    ScenarioLog,
    audit_platform,
    committed_topics,
    end_offsets,
    wait_quiescent,
)
from tests.faults.shopping import Market, purchase

# Written by each process for itself, not by handling messages: the relay's
# lease terms (a restarted process takes a new term).
VOLATILE_COLLECTIONS = frozenset({"leases"})

State = dict[str, dict[str, dict[str, Any]]]  # database.collection -> _id -> document


async def database_state(platform: FaultsPlatform) -> State:
    client = connect(platform.mongodb_uri, app_name="kami-faults-replay")
    state: State = {}
    try:
        for service in platform.ports:
            database = client[f"{platform.database_prefix}_{service}"]
            for name in sorted(await database.list_collection_names()):
                if name in VOLATILE_COLLECTIONS:
                    continue
                state[f"{service}.{name}"] = {
                    str(doc["_id"]): doc async for doc in database[name].find({})
                }
    finally:
        await client.close()
    return state


def differences(before: State, after: State) -> list[str]:
    found = []
    for collection in sorted(before.keys() | after.keys()):
        old, new = before.get(collection, {}), after.get(collection, {})
        for doc_id in sorted(old.keys() - new.keys()):
            found.append(f"{collection} {doc_id}: removed")
        for doc_id in sorted(new.keys() - old.keys()):
            found.append(f"{collection} {doc_id}: added {_short(new[doc_id])}")
        for doc_id in sorted(old.keys() & new.keys()):
            if old[doc_id] != new[doc_id]:
                changed = {
                    k: (old[doc_id].get(k), new[doc_id].get(k))
                    for k in old[doc_id].keys() | new[doc_id].keys()
                    if old[doc_id].get(k) != new[doc_id].get(k)
                }
                found.append(f"{collection} {doc_id}: {_short(changed)}")
    return found


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "..."


async def caught_up(
    platform: FaultsPlatform, group: str, ends: Mapping[TopicPartition, int]
) -> bool:
    committed = await committed_topics(platform, group)
    return all(committed.get(tp, -1) >= end for tp, end in ends.items() if end > 0)


@pytest.mark.timeout(600)
async def test_replaying_every_topic_from_offset_zero_changes_nothing(
    faulty: FaultsPlatform, operator: Person, market: Market, scenario: ScenarioLog
) -> None:
    rng = scenario.rng
    # Something of every kind on the topics first (a run of this test alone
    # starts from a fresh market), then rest.
    for plan in ("complete", "cancel", "deliver"):
        await purchase(rng.choice(market.buyers), market.offer, plan)
    await wait_quiescent(faulty, operator, scenario)
    consumers = [s for s in faulty.services if s != "identity"]  # identity consumes nothing
    replayed: dict[str, dict[TopicPartition, int]] = {}
    for service in consumers:
        partitions = list(await committed_topics(faulty, faulty.group_of(service)))
        replayed[service] = await end_offsets(faulty, partitions)
    messages = sum(sum(ends.values()) for ends in replayed.values())
    before = await database_state(faulty)
    scenario.note(
        f"at rest: {sum(len(docs) for docs in before.values())} documents in "
        f"{len(before)} collections; {messages} messages to replay to {len(consumers)} services"
    )

    run = f"replay-{rng.randrange(10**6)}"
    started = time.monotonic()
    await asyncio.gather(*(asyncio.to_thread(faulty.stop, s) for s in consumers))
    for service in consumers:
        faulty.service_env.setdefault(service, {})["KAMI_CONSUMER_GROUP_OVERRIDE"] = (
            f"kami-{service}-{run}"
        )
        faulty.start(service)
    await asyncio.gather(*(asyncio.to_thread(faulty.wait_ready, s, 120) for s in consumers))
    scenario.note(f"restarted {', '.join(consumers)} in groups kami-<service>-{run}")
    deadline = time.monotonic() + 240
    waiting = set(consumers)
    while waiting:
        for service in sorted(waiting):
            if await caught_up(faulty, faulty.group_of(service), replayed[service]):
                waiting.discard(service)
                scenario.note(f"{service} re-read its topics from offset 0")
        assert time.monotonic() < deadline, f"the replay never caught up: {sorted(waiting)}"
        await asyncio.sleep(0.5)
    scenario.count("messages replayed", messages)
    scenario.note(f"replayed in {time.monotonic() - started:.1f}s")
    await wait_quiescent(faulty, operator, scenario)

    after = await database_state(faulty)
    changed = differences(before, after)
    assert changed == [], "the replay changed state:\n" + "\n".join(changed[:40])
    scenario.note("every document of every service's database is as it was")
    await audit_platform(faulty, operator, scenario)
