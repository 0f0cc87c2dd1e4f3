"""The dead-letter topic: list what failed, replay it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from pydantic import ValidationError

from ragline.core.models import DeadLetter
from ragline.core.ports import Bus
from ragline.service.protocol import KIND, REPLAYED


async def dead_letters(
    bus: Bus, dlq_topic: str, group: str | None = None, idle_s: float = 1.0, include_replayed: bool = False
) -> list[DeadLetter]:
    """Every dead letter on the topic, read from the start until it stays idle.

    A fresh group per call (nothing is committed), so listing never hides a letter.
    Letters already replayed are left out unless ``include_replayed``.
    """
    letters: list[DeadLetter] = []
    replayed: set[str] = set()
    stream = bus.consume([dlq_topic], group or f"ragline-dlq-reader-{uuid.uuid4().hex[:8]}")
    try:
        while True:
            try:
                delivery = await asyncio.wait_for(anext(stream), idle_s)
            except TimeoutError:
                break
            if delivery.headers.get(KIND) == REPLAYED:
                replayed.add(delivery.value.decode())
                continue
            with contextlib.suppress(ValidationError, ValueError):
                letters.append(DeadLetter.model_validate_json(delivery.value))
    finally:
        with contextlib.suppress(RuntimeError):  # a cancelled anext() already unwound it
            await stream.aclose()
    return [lt for lt in letters if include_replayed or lt.id not in replayed]


async def replay(bus: Bus, letters: list[DeadLetter], dlq_topic: str | None = None) -> int:
    """Send dead letters' payloads back to the topics they came from (and note it on the DLQ)."""
    for letter in letters:
        await bus.publish(letter.topic, letter.payload.encode(), None, {"ragline-replay-of": letter.id.encode()})
        if dlq_topic is not None:
            await bus.publish(dlq_topic, letter.id.encode(), None, {KIND: REPLAYED})
    return len(letters)
