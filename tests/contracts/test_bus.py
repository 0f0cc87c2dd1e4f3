"""The Bus contract, run against the in-process bus and a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from ragline.adapters.buses.memory import MemoryBus


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(request) -> AsyncIterator:
    if request.param == "memory":
        backend = MemoryBus()
    else:
        from ragline.adapters.buses.kafka import KafkaBus

        broker = request.getfixturevalue("kafka_broker")
        backend = KafkaBus(broker.bootstrap, session_timeout_ms=2000)
    yield backend
    await backend.close()


async def topic(bus, partitions: int = 2) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    if hasattr(bus, "create_topics"):
        from ragline.adapters.buses.kafka import TopicSpec

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


async def test_committing_a_delivery_acknowledges_those_handed_out_before_it(bus):
    t = await topic(bus, partitions=1)
    for value in (b"a", b"b", b"c"):
        await bus.publish(t, value, key=b"k")
    stream = bus.consume([t], "g")
    try:
        handed = [await asyncio.wait_for(anext(stream), 30) for _ in range(2)]
        await bus.commit(handed[1])  # a and b, as Kafka commits an offset
    finally:
        await stream.aclose()
    assert [d.value for d in await take(bus, [t], "g", 1)] == [b"c"]


async def test_tail_reads_what_is_published_after_it_started_and_nothing_before(bus):
    t = await topic(bus)
    await bus.publish(t, b"old", key=b"k")
    stream = await bus.tail(t)
    try:
        await bus.publish(t, b"new-1", key=b"k")
        await bus.publish(t, b"new-2", key=b"k")
        got = [(await asyncio.wait_for(anext(stream), 30)).value for _ in range(2)]
    finally:
        await stream.aclose()
    assert got == [b"new-1", b"new-2"]


async def test_a_new_tail_goes_on_where_the_last_one_stopped(bus):
    # the gateway's reply listener after a broker outage: answers published between its
    # two tails must not be skipped (each would be a request waiting out its timeout)
    t = await topic(bus, partitions=1)
    stream = await bus.tail(t)
    try:
        await bus.publish(t, b"first", key=b"k")
        first = await asyncio.wait_for(anext(stream), 30)
    finally:
        await stream.aclose()
    await bus.publish(t, b"between", key=b"k")  # while nobody tails
    stream = await bus.tail(t, since={first.partition: first.offset + 1})
    try:
        await bus.publish(t, b"after", key=b"k")
        got = [(await asyncio.wait_for(anext(stream), 30)).value for _ in range(2)]
    finally:
        await stream.aclose()
    assert got == [b"between", b"after"]


async def test_a_tail_since_an_offset_past_the_log_reads_it_from_its_start(bus):
    # a broker back without its data: the log restarted below where the last tail stopped
    t = await topic(bus, partitions=1)
    await bus.publish(t, b"only", key=b"k")
    stream = await bus.tail(t, since={0: 1_000})
    try:
        got = (await asyncio.wait_for(anext(stream), 30)).value
    finally:
        await stream.aclose()
    assert got == b"only"


async def test_a_message_can_be_sent_to_one_partition_and_tailed_there(bus):
    t = await topic(bus, partitions=2)
    stream = await bus.tail(t, partition=1)
    try:
        await bus.publish(t, b"for-one", key=b"k", partition=1)
        delivery = await asyncio.wait_for(anext(stream), 30)
    finally:
        await stream.aclose()
    assert delivery.value == b"for-one"
    assert delivery.partition == (1 if bus.name == "kafka" else 0)  # the in-process bus has one partition


async def test_lag_counts_what_a_group_has_not_committed(bus):
    if bus.name == "kafka":  # a bus whose librdkafka statistics come often
        from ragline.adapters.buses.kafka import KafkaBus

        bus = KafkaBus(bus.servers, session_timeout_ms=2000, stats_interval_ms=200)
    t = await topic(bus, partitions=1)
    for i in range(5):
        await bus.publish(t, b"%d" % i, key=b"k")
    stream = bus.consume([t], "g")
    handed = [await asyncio.wait_for(anext(stream), 30) for _ in range(2)]
    await bus.commit(handed[1])
    reading = asyncio.ensure_future(_read_on(stream))  # a live consumer polls (and so reports), as a worker does
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while bus.lag().get(("g", t, 0)) != 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        assert bus.lag().get(("g", t, 0)) == 3  # handed out but uncommitted messages still count
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            await reading
        with contextlib.suppress(RuntimeError):
            await stream.aclose()
        if bus.name == "kafka":
            await bus.close()


async def _read_on(stream) -> None:
    async for _ in stream:
        pass
