"""The in-process bus: per-topic logs, consumer groups and at-least-once delivery.

Each group reads every topic from the start; within a group, consumers share the
messages (competing consumers). A message handed to a consumer and not committed
before that consumer goes away (its iterator is closed or cancelled) is handed out
again, as Kafka does after a rebalance.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..ports import Delivery


@dataclass
class _Group:
    next_offset: int = 0
    redeliver: deque[int] = field(default_factory=deque)
    inflight: dict[int, int] = field(default_factory=dict)  # offset -> consumer id


class MemoryBus:
    def __init__(self) -> None:
        self._logs: dict[str, list[Delivery]] = defaultdict(list)
        self._groups: dict[tuple[str, str], _Group] = defaultdict(_Group)
        self._wakeup = asyncio.Event()
        self._ids = itertools.count()

    async def publish(self, topic: str, value: bytes, key: bytes | None = None,
                      headers: Mapping[str, bytes] | None = None) -> None:
        log = self._logs[topic]
        log.append(Delivery(topic, key, value, dict(headers or {}), 0, len(log)))
        self._notify()

    async def consume(self, topics: Sequence[str], group: str) -> AsyncIterator[Delivery]:
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
        group = delivery.handle
        self._groups[(group, delivery.topic)].inflight.pop(delivery.offset, None)

    async def close(self) -> None:
        return None

    def _take(self, topics: Sequence[str], group: str, me: int) -> Delivery | None:
        for topic in topics:
            state, log = self._groups[(group, topic)], self._logs[topic]
            if state.redeliver:
                offset = state.redeliver.popleft()
            elif state.next_offset < len(log):
                offset, state.next_offset = state.next_offset, state.next_offset + 1
            else:
                continue
            state.inflight[offset] = me
            original = log[offset]
            return Delivery(topic, original.key, original.value, original.headers, 0, offset, handle=group)
        return None

    def _release(self, topics: Sequence[str], group: str, me: int) -> None:
        """A consumer left: what it held uncommitted goes to the others."""
        for topic in topics:
            state = self._groups[(group, topic)]
            mine = sorted(o for o, owner in state.inflight.items() if owner == me)
            for offset in mine:
                del state.inflight[offset]
            state.redeliver.extend(mine)
        if any(self._groups[(group, t)].redeliver for t in topics):
            self._notify()

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()
