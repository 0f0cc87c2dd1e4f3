"""Bus workers: run one stage over a topic, at least once, never losing a message.

For each message: parse it, run the stage, publish its output, and only then commit.
Retryable errors are retried with exponential backoff; after ``max_attempts``, and at
once for permanent errors and messages that do not parse, the message goes to the
dead-letter topic with the error, the stage, the attempt count and timestamps, and
is committed there: a poison message never blocks its partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import ValidationError

from . import stages
from .errors import RetryableError
from .models import Context, DeadLetter, Document, Query
from .ports import Bus, Delivery

log = logging.getLogger("ragline.worker")


@dataclass(frozen=True)
class Topics:
    docs: str = "rag-docs"
    queries: str = "rag-queries"
    context: str = "rag-context"
    answers: str = "rag-answers"
    dlq: str = "rag-dlq"


@dataclass(frozen=True)
class Output:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, bytes] | None = None


Handler = Callable[[Delivery], Awaitable[list[Output]]]


class Worker:
    def __init__(self, bus: Bus, stage: str, topic: str, group: str, handler: Handler, dlq_topic: str,
                 max_attempts: int = 5, backoff_s: float = 0.1) -> None:
        self.bus = bus
        self.stage = stage
        self.topic = topic
        self.group = group
        self.handler = handler
        self.dlq_topic = dlq_topic
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.processed = 0
        self.dead = 0

    async def run(self, limit: int | None = None) -> None:
        """Consume until cancelled, or until ``limit`` messages are done."""
        stream = self.bus.consume([self.topic], self.group)
        try:
            async for delivery in stream:
                await self.handle(delivery)
                if limit is not None and self.processed + self.dead >= limit:
                    return
        finally:
            await stream.aclose()

    async def handle(self, delivery: Delivery) -> bool:
        """Process one message; True if it succeeded, False if it was dead-lettered."""
        first_failure = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                outputs = await self.handler(delivery)
                for out in outputs:
                    await self.bus.publish(out.topic, out.value, out.key, out.headers)
                await self.bus.commit(delivery)
                self.processed += 1
                return True
            except (ValidationError, ValueError) as exc:
                return await self._dead(delivery, exc, "unparseable", attempt, first_failure)
            except RetryableError as exc:
                first_failure = first_failure or _now()
                if attempt == self.max_attempts:
                    return await self._dead(delivery, exc, "retryable", attempt, first_failure)
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            except Exception as exc:  # a permanent error, or a bug: dead-letter it, never crash-loop
                return await self._dead(delivery, exc, "permanent", attempt, first_failure)
        return False

    async def _dead(self, delivery: Delivery, exc: Exception, kind: str, attempts: int,
                    first_failure: datetime | None) -> bool:
        letter = DeadLetter(topic=delivery.topic, stage=self.stage, payload=delivery.value.decode("utf-8", "replace"),
                            error=f"{type(exc).__name__}: {exc}"[:2000], error_kind=kind, attempts=attempts,
                            first_failure_at=first_failure or _now())
        log.warning("dead letter from %s (%s after %d attempts): %s", self.stage, kind, attempts, letter.error)
        await self.bus.publish(self.dlq_topic, letter.model_dump_json().encode(), delivery.key,
                               {"ragline-stage": self.stage.encode()})
        await self.bus.commit(delivery)
        self.dead += 1
        return False


def _now() -> datetime:
    return datetime.now(timezone.utc)


def ingest_handler(engine) -> Handler:
    async def handle(delivery: Delivery) -> list[Output]:
        await engine.ingest_documents([Document.model_validate_json(delivery.value)])
        return []
    return handle


def retrieve_handler(engine, topics: Topics) -> Handler:
    async def handle(delivery: Delivery) -> list[Output]:
        query = Query.model_validate_json(delivery.value)
        context = await stages.retrieve(query, embedder=engine.embedder, store=engine.store,
                                        mode=engine.settings.retrieval_mode)
        return [Output(topics.context, context.model_dump_json().encode(), query.request_id.encode())]
    return handle


def generate_handler(engine, topics: Topics) -> Handler:
    async def handle(delivery: Delivery) -> list[Output]:
        context = Context.model_validate_json(delivery.value)
        answer = await stages.generate(context, answering=engine.answering())
        return [Output(context.query.reply_to or topics.answers, answer.model_dump_json().encode(),
                       context.query.request_id.encode())]
    return handle


async def dead_letters(bus: Bus, dlq_topic: str, group: str, idle_s: float = 1.0) -> list[DeadLetter]:
    """Every dead letter the group has not committed, read until the topic stays idle."""
    letters: list[DeadLetter] = []
    stream = bus.consume([dlq_topic], group)
    try:
        while True:
            try:
                delivery = await asyncio.wait_for(anext(stream), idle_s)
            except TimeoutError:
                return letters
            letters.append(DeadLetter.model_validate_json(delivery.value))
    finally:
        with contextlib.suppress(RuntimeError):  # a cancelled anext() already unwound it
            await stream.aclose()


async def replay(bus: Bus, letters: list[DeadLetter]) -> int:
    """Send dead letters' payloads back to the topics they came from."""
    for letter in letters:
        await bus.publish(letter.topic, letter.payload.encode())
    return len(letters)
