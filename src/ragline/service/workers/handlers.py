"""The three stages as worker handlers, and the worker built for a stage.

Each handler parses its message, runs the stage through the engine and returns what
to publish; queries that fail reach their caller as a ``Failure`` on the reply route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from ragline.core import generation
from ragline.core.coalescing import Coalescer
from ragline.core.errors import NotFound, RetryableError
from ragline.core.models import Answer, Context, Delta, Document, DocumentRef, Failure, Query, reply_key
from ragline.core.ports import Bus, Delivery
from ragline.service.protocol import DELETE, KIND, RECEIPT, REPLY_TO, Topics, error_code, route
from ragline.service.workers.loop import Handler, OnDead, Output, Worker, _expired, _parse

log = logging.getLogger("ragline.worker")


def _failure_to_caller(stage: str, topics: Topics, query_of: Callable[[bytes], Query]) -> OnDead:
    def on_dead(delivery: Delivery, exc: Exception) -> list[Output]:
        try:
            query = query_of(delivery.value)
        except Exception:  # unparseable: there is no caller to tell
            return []
        failure = Failure(
            request_id=query.request_id,
            stage=stage,
            error_type=type(exc).__name__,
            error=str(exc),
            code=error_code(exc),
        )
        topic, partition = route(query.reply_to or topics.answers)
        return [Output(topic, failure.model_dump_json().encode(), reply_key(query), {KIND: b"failure"}, partition)]

    return on_dead


# -- the three stages as handlers ------------------------------------------------------


def ingest_handler(engine, bus: Bus | None = None, max_batch: int = 32, linger_s: float = 0.005) -> Handler:
    """Documents become searchable (the engine records their freshness, received ->
    searchable); deletes travel the same topic, keyed alike, so they keep their order.
    With ``bus``, the accepting gateway gets a receipt once the write is done.

    The documents in hand at once are written together (up to ``max_batch`` in one
    ``ingest_documents``: one embedding run, one lookup of stored hashes, one upsert),
    the first waiting ``linger_s`` for the others (linger.ms, as the producers have).
    Measured with `bench/workers.py --only ingest` against the Milvus 2.3 server: one
    document per call drained 19 documents/s, less than the resilience drill sends, so a
    backlog left by an outage never drained. A batch that fails for a reason other than
    an unavailable dependency is written again one document at a time, so one bad
    document fails alone."""
    sending: set[asyncio.Task] = set()

    async def write(items: list[Document | DocumentRef], _key: object) -> list[BaseException | None]:
        """In the order taken: runs of writes together, each delete on its own."""
        try:
            for run in _runs(items):
                await _apply(run)
            return [None] * len(items)
        except RetryableError:
            raise  # the store or the embedder is away: every document waits it out
        except Exception:
            if len(items) == 1:
                raise
        results: list[BaseException | None] = []
        for item in items:
            try:
                await _apply([item])
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    async def _apply(run: list[Document | DocumentRef]) -> None:
        if isinstance(run[0], DocumentRef):
            with contextlib.suppress(NotFound):  # already gone: a redelivery, or never there
                await engine.delete_document(run[0].id, run[0].tenant)
        else:
            await engine.ingest_documents([d for d in run if isinstance(d, Document)])

    writes: Coalescer[Document | DocumentRef, BaseException | None] = Coalescer(
        "ingest", write, max_batch=max_batch, linger_s=linger_s
    )

    async def handle(delivery: Delivery) -> list[Output]:
        if delivery.headers.get(KIND) == DELETE:
            await writes.submit(_parse(DocumentRef, delivery.value))
        else:
            await writes.submit(_parse(Document, delivery.value))
        if bus is not None:
            for receipt in _receipt(delivery):
                # A courtesy, sent beside the commit, never before it: a receipt that cannot
                # be published now (a broker just back, its producer being replaced) must not
                # hold the documents behind it (measured: ingestion stalled past the drill's
                # 60 s while receipts were retried); the gateway sends an unconfirmed write
                # again, and writing it again is a no-op.
                task = asyncio.create_task(_send(bus, receipt))
                sending.add(task)
                task.add_done_callback(sending.discard)
        return []

    return handle


def _runs(items: list[Document | DocumentRef]) -> list[list[Document | DocumentRef]]:
    """Consecutive runs to apply in order: each delete alone, writes together as long
    as no document appears twice in a run (its later version goes in the next)."""
    runs: list[list[Document | DocumentRef]] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        key = (item.tenant, item.id)
        if isinstance(item, DocumentRef) or not runs or isinstance(runs[-1][0], DocumentRef) or key in seen:
            runs.append([])
            seen.clear()
        seen.add(key)
        runs[-1].append(item)
    return runs


async def _send(bus: Bus, out: Output) -> None:
    try:
        await asyncio.wait_for(bus.publish(out.topic, out.value, out.key, out.headers, out.partition), 10)
    except Exception as exc:  # the gateway sends the write again; see ingest_handler
        log.info("receipt for %s not sent (%s)", (out.key or b"").decode("utf-8", "replace"), exc)


def _receipt(delivery: Delivery, outcome: bytes = b"written") -> list[Output]:
    """The receipt the accepting gateway waits for (ragline/service/accepted.py), if it asked."""
    reply_to = delivery.headers.get(REPLY_TO)
    if not reply_to or RECEIPT not in delivery.headers:
        return []
    topic, partition = route(reply_to.decode())
    headers = {KIND: b"receipt", RECEIPT: delivery.headers[RECEIPT], "ragline-outcome": outcome}
    return [Output(topic, b"", delivery.key, headers, partition)]


def retrieve_handler(engine, topics: Topics) -> Handler:
    async def handle(delivery: Delivery) -> list[Output]:
        query = _parse(Query, delivery.value)
        if _expired(query):
            log.info("retrieve: request %s expired before it was served; dropped", query.request_id)
            return []
        if query.purpose == "document":
            hits = await engine.store.document_chunks(query.tenant, query.text)
            context = Context(query=query, hits=hits)
        else:
            context = await engine.retrieve(query)
        if query.purpose != "answer":  # a search or a read: the context is the reply
            topic, partition = route(query.reply_to or topics.answers)
            return [Output(topic, context.model_dump_json().encode(), reply_key(query), {KIND: b"context"}, partition)]
        return [Output(topics.context, context.model_dump_json().encode(), query.request_id.encode())]

    return handle


def generate_handler(engine, topics: Topics, bus: Bus | None = None, delta_interval_s: float = 0.03) -> Handler:
    """Answers to the query's reply route; streamed queries get ``Delta`` pieces first.

    A redelivered context (the worker died after publishing, before committing) is
    answered again; the gateway keeps the first answer per request id and drops the rest.
    """

    async def handle(delivery: Delivery) -> list[Output]:
        context = _parse(Context, delivery.value)
        query = context.query
        if _expired(query):
            log.info("generate: request %s expired before it was served; dropped", query.request_id)
            return []
        topic, partition = route(query.reply_to or topics.answers)
        key = reply_key(query)
        if not query.stream or bus is None:
            answer = await engine.generate(context)
        else:
            answer = await _stream_deltas(engine, context, topic, partition, key, delta_interval_s)
        return [Output(topic, answer.model_dump_json().encode(), key, {KIND: b"answer"}, partition)]

    async def _stream_deltas(
        engine, context: Context, topic: str, partition: int | None, key: bytes, interval_s: float
    ) -> Answer:
        attempt, seq, last = uuid.uuid4().hex[:12], 0, time.perf_counter()
        buffered: list[str] = []
        answer = None

        async def flush() -> None:
            nonlocal seq, buffered, last
            if buffered and bus is not None:
                delta = Delta(request_id=context.query.request_id, text="".join(buffered), seq=seq, attempt=attempt)
                await bus.publish(topic, delta.model_dump_json().encode(), key, {KIND: b"delta"}, partition)
                seq, buffered, last = seq + 1, [], time.perf_counter()

        async for item in generation.generate_stream(context, answering=engine.answering(context.query.generator)):
            if isinstance(item, Answer):
                answer = item
            else:
                buffered.append(item)
                if time.perf_counter() - last >= interval_s:
                    await flush()
        await flush()
        assert answer is not None
        return answer

    return handle


QUERY_RETRY_BUDGET_S = 3.0  # a query's retries stop here: its caller is told (503), not left to time out


def on_dead_for(stage: str, topics: Topics) -> OnDead | None:
    if stage == "retrieve":
        return _failure_to_caller(stage, topics, Query.model_validate_json)
    if stage == "generate":
        return _failure_to_caller(stage, topics, lambda raw: Context.model_validate_json(raw).query)
    if stage == "ingest":  # dead-lettered: the gateway stops sending it again
        return lambda delivery, exc: _receipt(delivery, b"dead-lettered")
    return None


def build_worker(
    stage: str,
    engine,
    bus: Bus,
    topics: Topics,
    *,
    group: str | None = None,
    concurrency: int = 1,
    max_attempts: int = 5,
    backoff_s: float = 0.2,
    metrics=None,
    outage_patience_s: float | None = None,
) -> Worker:
    """One stage's worker, wired the same way in a worker process and in the embedded pipeline."""
    handlers = {
        "ingest": (topics.docs, lambda: ingest_handler(engine, bus)),
        "retrieve": (topics.queries, lambda: retrieve_handler(engine, topics)),
        "generate": (topics.context, lambda: generate_handler(engine, topics, bus)),
    }
    if stage not in handlers:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(handlers)}")
    topic, make = handlers[stage]
    return Worker(
        bus,
        stage,
        topic,
        group or f"ragline-{stage}",
        make(),
        topics.dlq,
        max_attempts,
        backoff_s,
        concurrency=concurrency,
        on_dead=on_dead_for(stage, topics),
        metrics=metrics,
        retry_budget_s=QUERY_RETRY_BUDGET_S if stage in ("retrieve", "generate") else None,
        outage_patience_s=outage_patience_s if stage == "ingest" else None,
    )
