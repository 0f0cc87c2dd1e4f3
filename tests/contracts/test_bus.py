"""The Bus contract, run against the in-process bus and a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from ragline.buses.memory import MemoryBus


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(request) -> AsyncIterator:
    if request.param == "memory":
        backend = MemoryBus()
    else:
        from ragline.buses.kafka import KafkaBus

        broker = request.getfixturevalue("kafka_broker")
        backend = KafkaBus(broker.bootstrap, session_timeout_ms=2000)
    yield backend
    await backend.close()


async def topic(bus, partitions: int = 2) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    if hasattr(bus, "create_topics"):
        from ragline.buses.kafka import TopicSpec

        await bus.create_topics([TopicSpec(name, partitions=partitions)])
    return name


async def take(bus, topics: list[str], group: str, n: int, commit: bool = True, timeout: float = 30):
    """The first n deliveries a fresh consumer of the group gets."""
    got = []
    stream = bus.consume(topics, group)

    async def run():
        async for delivery in stream:
            got.append(delivery)
            if commit:
                await bus.commit(delivery)
            if len(got) == n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await stream.aclose()
    return got


async def test_a_published_message_is_consumed_with_its_key_value_and_headers(bus):
    t = await topic(bus)
    await bus.publish(t, b"value", key=b"k", headers={"trace": b"abc"})
    [d] = await take(bus, [t], "g", 1)
    assert (d.topic, d.key, d.value, d.headers["trace"]) == (t, b"k", b"value", b"abc")


async def test_every_group_gets_every_message(bus):
    t = await topic(bus)
    for i in range(5):
        await bus.publish(t, str(i).encode(), key=b"same")
    for group in ("g1", "g2"):
        assert [d.value for d in await take(bus, [t], group, 5)] == [b"0", b"1", b"2", b"3", b"4"]


async def test_an_uncommitted_message_is_delivered_again_to_the_group(bus):
    t = await topic(bus)
    await bus.publish(t, b"work", key=b"k")
    [first] = await take(bus, [t], "g", 1, commit=False)
    [again] = await take(bus, [t], "g", 1)
    assert again.value == first.value == b"work"


async def test_a_committed_message_is_not_delivered_again(bus):
    t = await topic(bus)
    await bus.publish(t, b"one", key=b"k")
    await take(bus, [t], "g", 1)
    await bus.publish(t, b"two", key=b"k")
    [d] = await take(bus, [t], "g", 1)
    assert d.value == b"two"


async def test_messages_with_one_key_keep_their_order(bus):
    t = await topic(bus, partitions=3)
    for i in range(20):
        await bus.publish(t, str(i).encode(), key=b"query-1")
    assert [int(d.value) for d in await take(bus, [t], "g", 20)] == list(range(20))
