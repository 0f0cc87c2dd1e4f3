"""The in-process bus: per-topic logs, consumer groups and at-least-once delivery.

Each group reads every topic from the start; within a group, consumers share the
messages (competing consumers). A message handed to a consumer and not committed
before that consumer goes away (its iterator is closed or cancelled) is handed out
again, as Kafka does after a rebalance. Committing a delivery acknowledges it and
everything the same consumer was handed before it from that topic.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragline.core.errors import ConfigurationError
from ragline.core.ports import Delivery, TopicSpec


@dataclass
class _Group:
    next_offset: int = 0
    redeliver: deque[int] = field(default_factory=deque)
    inflight: dict[int, tuple[int, int]] = field(default_factory=dict)  # offset -> (consumer id, hand-out number)


class MemoryBus:
    name = "memory"
    transactional = False  # at-least-once; the stages are idempotent

    async def publish_and_commit(self, outputs: Sequence[Any], delivery: Delivery) -> None:
        raise ConfigurationError("the in-process bus has no transactions")

    async def create_topics(self, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> list[str]:
        return []  # its topics exist as soon as they are used

    def __init__(self) -> None:
        self._logs: dict[str, list[Delivery]] = defaultdict(list)
        self._groups: dict[tuple[str, str], _Group] = defaultdict(_Group)
        self._wakeup = asyncio.Event()
        self._ids = itertools.count()
        self._handouts = itertools.count()

    async def publish(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> None:
        log = self._logs[topic]
        log.append(Delivery(topic, key, value, dict(headers or {}), 0, len(log)))
        self._notify()

    async def consume(self, topics: Sequence[str], group: str) -> AsyncGenerator[Delivery, None]:
        me = next(self._ids)
        try:
            while True:
                wakeup = self._wakeup  # taken before looking, so no publish is missed
                delivery = self._take(topics, group, me)
                if delivery is not None:
                    yield delivery
                else:
                    await wakeup.wait()
        finally:
            self._release(topics, group, me)

    async def commit(self, delivery: Delivery) -> None:
        group, me, handout = delivery.handle
        state = self._groups[(group, delivery.topic)]
        done = [o for o, (owner, n) in state.inflight.items() if owner == me and n <= handout]
        for offset in done:
            del state.inflight[offset]

    async def tail(
        self, topic: str, partition: int | None = None, since: Mapping[int, int] | None = None
    ) -> AsyncGenerator[Delivery, None]:
        end = len(self._logs[topic])
        start = (since or {}).get(0, end)
        return self._tail(topic, start if start <= end else 0)

    async def _tail(self, topic: str, position: int) -> AsyncGenerator[Delivery, None]:
        log = self._logs[topic]
        while True:
            wakeup = self._wakeup
            while position < len(log):
                yield log[position]
                position += 1
            await wakeup.wait()

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    def lag(self) -> dict[tuple[str, str, int], int]:
        """Per group and topic: messages not yet committed (waiting or in hand)."""
        return {
            (group, topic, 0): len(self._logs[topic]) - state.next_offset + len(state.redeliver) + len(state.inflight)
            for (group, topic), state in list(self._groups.items())
        }

    def _take(self, topics: Sequence[str], group: str, me: int) -> Delivery | None:
        for topic in topics:
            state, log = self._groups[(group, topic)], self._logs[topic]
            if state.redeliver:
                offset = state.redeliver.popleft()
            elif state.next_offset < len(log):
                offset, state.next_offset = state.next_offset, state.next_offset + 1
            else:
                continue
            handout = next(self._handouts)
            state.inflight[offset] = (me, handout)
            original = log[offset]
            return Delivery(
                topic, original.key, original.value, original.headers, 0, offset, handle=(group, me, handout)
            )
        return None

    def _release(self, topics: Sequence[str], group: str, me: int) -> None:
        """A consumer left: what it held uncommitted goes to the others."""
        for topic in topics:
            state = self._groups[(group, topic)]
            mine = sorted(o for o, (owner, _) in state.inflight.items() if owner == me)
            for offset in mine:
                del state.inflight[offset]
            state.redeliver.extend(mine)
        if any(self._groups[(group, t)].redeliver for t in topics):
            self._notify()

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()
