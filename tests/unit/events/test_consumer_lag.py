"""The lag gauge asks the coordinator only for offsets this member did not
commit itself since it was given its partitions."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from kami_events.consumer import IncomingMessage, PartitionAssignment, measure_lag

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeClient:
    def __init__(self, ends: dict[TopicPartition, int], committed: dict[TopicPartition, int]):
        self.ends, self.group_committed = ends, committed
        self.asked: list[TopicPartition] = []

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {p: self.ends[p] for p in partitions}

    async def committed(self, partition: TopicPartition) -> int | None:
        self.asked.append(partition)
        return self.group_committed.get(partition)

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 0)


def message(partition: TopicPartition, offset: int) -> IncomingMessage:
    return IncomingMessage(b"", None, {}, partition.topic, partition.partition, offset)


async def test_offsets_this_member_committed_are_not_asked_for() -> None:
    assignment = PartitionAssignment()
    await assignment.on_partitions_assigned({A, B})
    assignment.record_committed([message(A, 4), message(A, 9), message(A, 7)])
    client = FakeClient(ends={A: 12, B: 5}, committed={B: 2})

    lag = await measure_lag(client, assignment.partitions, assignment.committed)

    assert lag == {A: 2, B: 3}
    assert client.asked == [B]


async def test_a_rebalance_forgets_what_this_member_committed() -> None:
    assignment = PartitionAssignment()
    await assignment.on_partitions_assigned({A})
    assignment.record_committed([message(A, 9), message(B, 3)])  # B is not ours
    assert assignment.committed == {A: 10}
    await assignment.on_partitions_revoked({A})
    assert assignment.committed == {}
    await assignment.on_partitions_assigned({A, B})
    assert assignment.committed == {}
