"""The worker loop: run one stage over a topic, at least once, never losing a message.

For each message: parse it, run the stage, publish its output, and only then commit.
Up to ``concurrency`` messages are in hand at once (so an LLM can batch them), and
offsets are committed in order per partition: a message is acknowledged only when it
and every message before it are done. Retryable errors are retried with exponential
backoff; after ``max_attempts`` (a stage nobody waits on, ingestion: after its
``outage_patience_s``, since a dependency that is down is waited out, not blamed on the
message), and at once for permanent errors and messages that do not parse, the message
goes to the dead-letter topic with the error, the stage, the
attempt count and timestamps: a poison message never blocks its partition. When the
message was a query, the caller also gets a ``Failure`` on its reply route at once.

``stop()`` is a graceful shutdown: no new messages are taken, those in hand finish
within the grace period or are handed back uncommitted (another worker gets them).

Transient bus faults do not stop a worker: publishing its outputs is retried with
backoff (up to 5 s apart) for as long as the broker is away, without counting against
the message's attempts (a good message is never dead-lettered because the broker
restarted), and a failed offset commit (a rebalance: ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID; a broker restart) is logged and passed over: the message is then
delivered again, to this worker or another, and the stages are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ragline.core.errors import DependencyUnavailable, InvalidInput, RetryableError
from ragline.core.models import DeadLetter, Query
from ragline.core.ports import Bus, Delivery
from ragline.service.observability import extract_context, inject_headers, log_context, span

log = logging.getLogger("ragline.worker")
_MAX_PAUSE_S = 5.0  # between two attempts at one message


@dataclass(frozen=True)
class Output:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, bytes] | None = None
    partition: int | None = None


Handler = Callable[[Delivery], Awaitable[list[Output]]]
# What to tell the caller when a message is given up: outputs for its reply route.
OnDead = Callable[[Delivery, Exception], list[Output]]


@dataclass
class _Lane:
    """The deliveries of one partition in the order they were taken; commits follow it."""

    order: deque[Delivery] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Worker:
    def __init__(
        self,
        bus: Bus,
        stage: str,
        topic: str,
        group: str,
        handler: Handler,
        dlq_topic: str,
        max_attempts: int = 5,
        backoff_s: float = 0.1,
        *,
        concurrency: int = 1,
        on_dead: OnDead | None = None,
        metrics=None,
        retry_budget_s: float | None = None,
        outage_patience_s: float | None = None,
    ) -> None:
        self.bus = bus
        self.stage = stage
        self.topic = topic
        self.group = group
        self.handler = handler
        self.dlq_topic = dlq_topic
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.concurrency = concurrency
        self.on_dead = on_dead
        self.metrics = metrics
        # Queries: someone waits (the gateway, 30 s at most). Retrying a dead store for
        # five attempts of 10 s each outlived that wait, so the caller got a 504 after
        # 30 s; past this budget the query is given up and its caller told at once (503).
        self.retry_budget_s = retry_budget_s
        # Nobody waits (ingestion): a retryable failure is a dependency that is down or
        # overloaded, not a poison message; it is retried (pauses up to 5 s) until this
        # long has passed, and only then dead-lettered. None: max_attempts decides.
        self.outage_patience_s = outage_patience_s
        self.processed = 0
        self.dead = 0
        self.running = False
        # With transactions, outputs and the offset commit together, one message at a time
        # (committing a message's offset commits every earlier one of its partition).
        self.transactional = bus.transactional
        if self.transactional and concurrency > 1:
            log.info("%s: Kafka transactions on, so one message at a time (concurrency %d ignored)", stage, concurrency)
            self.concurrency = 1
        self._stop = asyncio.Event()
        self._pending: asyncio.Future | None = None
        self.failure: Exception | None = None

    def stop(self) -> None:
        """Take no more messages; ``run`` returns once those in hand are done or handed back."""
        self._stop.set()

    async def run(self, limit: int | None = None, grace_s: float = 10.0) -> None:
        """Consume until stopped or cancelled, or until ``limit`` messages are taken and done."""
        stream = self.bus.consume([self.topic], self.group)
        slots = asyncio.Semaphore(self.concurrency)
        lanes: dict[tuple[str, int], _Lane] = {}
        tasks: set[asyncio.Task] = set()
        taken = 0
        self.running = True
        try:
            while not self._stop.is_set() and (limit is None or taken < limit):
                await slots.acquire()
                delivery = await self._next(stream)
                if delivery is None:
                    slots.release()
                    break
                taken += 1
                lane = lanes.setdefault((delivery.topic, delivery.partition), _Lane())
                lane.order.append(delivery)
                task = asyncio.create_task(self._process(delivery, lane, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                _, late = await asyncio.wait(set(tasks), timeout=grace_s if self._stop.is_set() else None)
                for task in late:  # not done in time: hand them back (uncommitted, redelivered)
                    task.cancel()
                if late:
                    log.warning("%s: %d messages handed back at shutdown", self.stage, len(late))
                    await asyncio.gather(*late, return_exceptions=True)
        finally:
            self.running = False
            for task in tasks:
                task.cancel()
            if self._pending is not None:  # only now, as it closes the consumer the commits need
                self._pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, RuntimeError):
                    await self._pending
                self._pending = None
            with contextlib.suppress(RuntimeError):  # a cancelled anext() already unwound it
                await stream.aclose()
        if self.failure is not None:
            raise DependencyUnavailable(f"the {self.stage} worker stopped: {self.failure}") from self.failure

    async def _next(self, stream) -> Delivery | None:
        """The next message, or None once stopped (the pending read is left for ``run`` to drop)."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(stream))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({self._pending, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not self._pending.done():
            return None
        delivery, self._pending = self._pending.result(), None
        return delivery

    async def _process(self, delivery: Delivery, lane: _Lane, slots: asyncio.Semaphore) -> None:
        try:
            await self.handle(delivery)
            if self.transactional:  # committed inside the transaction
                lane.order.remove(delivery)
                return
            lane.done.add(delivery.offset)
            async with lane.lock:
                last = None
                while lane.order and lane.order[0].offset in lane.done:
                    last = lane.order.popleft()
                    lane.done.discard(last.offset)
                if last is not None:
                    try:
                        await self.bus.commit(last)
                    except RetryableError as exc:
                        log.warning(
                            "%s: commit of %s[%d]@%d failed (%s); delivered again unless a later commit covers it",
                            self.stage,
                            last.topic,
                            last.partition,
                            last.offset,
                            exc,
                        )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, RetryableError) and self._stop.is_set():
                log.warning("%s: stopping while the bus is away (%s); the message is handed back", self.stage, exc)
                return
            # Not transient (a bug, or the bus closed under us): the message stays
            # uncommitted, and so would everything after it in its partition: stop, so
            # that a restart hands them all out again, rather than run on unacknowledged.
            log.exception("%s: could not finish a message from %s; stopping the worker", self.stage, self.topic)
            self.failure = self.failure or exc
            self.stop()
        finally:
            slots.release()

    async def handle(self, delivery: Delivery) -> bool:
        """Process one message and publish its outputs (or its dead letter); True on success.

        Traced as a consumer span whose parent comes from the message's headers; the
        outputs carry this span's context on, so a query is one trace across workers."""
        request_id = (delivery.key or b"").decode("utf-8", "replace") or None
        with (
            log_context(request_id=request_id, stage=self.stage),
            span(
                f"{delivery.topic} process",
                context=extract_context(delivery.headers),
                kind="consumer",
                stage=self.stage,
                request_id=request_id,
                partition=delivery.partition,
                offset=delivery.offset,
            ),
        ):
            return await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> bool:
        first_failure = None
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                outputs = await self.handler(delivery)
            except Unparseable as exc:  # the message itself is malformed: no retry can help
                return await self._dead(delivery, exc, "unparseable", attempt, first_failure)
            except RetryableError as exc:
                first_failure = first_failure or _now()
                pause = min(_MAX_PAUSE_S, self.backoff_s * 2 ** (attempt - 1))
                elapsed = time.perf_counter() - started
                if self.outage_patience_s is not None:
                    if self._stop.is_set():
                        raise  # handed back uncommitted: the next worker waits it out
                    give_up = elapsed + pause > self.outage_patience_s
                else:
                    over_budget = self.retry_budget_s is not None and elapsed + pause > self.retry_budget_s
                    give_up = attempt >= self.max_attempts or over_budget
                if give_up:
                    return await self._dead(delivery, exc, "retryable", attempt, first_failure)
                log.log(
                    logging.WARNING if attempt in (self.max_attempts, 20) else logging.INFO,
                    "%s: attempt %d failed (%s); retrying in %.1f s",
                    self.stage,
                    attempt,
                    exc,
                    pause,
                )
                if self.outage_patience_s is not None:
                    await _sleep_unless(self._stop, pause)
                else:
                    await asyncio.sleep(pause)
                continue
            except Exception as exc:  # a permanent error, or a bug: dead-letter it, never crash-loop
                return await self._dead(delivery, exc, "permanent", attempt, first_failure)
            await self._emit_patiently(outputs, delivery)  # fails only when stopping
            self.processed += 1
            if self.metrics is not None:
                self.metrics.stage_done(self.stage, time.perf_counter() - started, "ok")
            return True

    async def _emit_patiently(self, outputs: list[Output], delivery: Delivery) -> None:
        """_emit, retried while the bus is unavailable (backoff up to 5 s); gives up only
        when the worker is stopping (the message then stays uncommitted)."""
        delay = self.backoff_s
        while True:
            try:
                await self._emit(outputs, delivery)
                return
            except RetryableError as exc:
                if self._stop.is_set():
                    raise
                log.warning("%s: could not publish (%s); retrying in %.1f s", self.stage, exc, delay)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def _emit(self, outputs: list[Output], delivery: Delivery) -> None:
        """Publish outputs, carrying the current trace context; with transactions, also
        commit ``delivery`` in the same transaction."""
        traced = [Output(o.topic, o.value, o.key, inject_headers(o.headers), o.partition) for o in outputs]
        if self.transactional:
            await self.bus.publish_and_commit(traced, delivery)
            return
        await asyncio.gather(*(self.bus.publish(o.topic, o.value, o.key, o.headers, o.partition) for o in traced))

    async def _dead(
        self, delivery: Delivery, exc: Exception, kind: str, attempts: int, first_failure: datetime | None
    ) -> bool:
        letter = DeadLetter(
            topic=delivery.topic,
            stage=self.stage,
            payload=delivery.value.decode("utf-8", "replace"),
            error=f"{type(exc).__name__}: {exc}"[:2000],
            error_kind=kind,
            attempts=attempts,
            first_failure_at=first_failure or _now(),
        )
        log.warning("dead letter from %s (%s after %d attempts): %s", self.stage, kind, attempts, letter.error)
        dead = Output(
            self.dlq_topic,
            letter.model_dump_json().encode(),
            delivery.key,
            {"ragline-stage": self.stage.encode(), "ragline-error-kind": kind.encode()},
        )
        tell = self.on_dead(delivery, exc) if self.on_dead else []  # the caller need not wait for a timeout
        if self.transactional:
            await self._emit_patiently([dead, *tell], delivery)
        else:
            await self._emit_patiently([dead], delivery)
            with contextlib.suppress(Exception):  # telling the caller is a courtesy; the letter is kept
                await self._emit(tell, delivery)
        self.dead += 1
        if self.metrics is not None:
            self.metrics.dead_letter(delivery.topic, kind)
            self.metrics.stage_done(self.stage, 0.0, "dead")
        return False


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Unparseable(InvalidInput):
    """A message that is not the model its topic carries."""


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        raise Unparseable(f"not a {model.__name__}: {str(exc)[:300]}") from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _expired(query: Query) -> bool:
    return query.deadline is not None and query.deadline < _now()
