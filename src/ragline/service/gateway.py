"""The API's side of the bus: request-reply over topics.

``Gateway`` publishes queries to ``rag-queries`` with a reply route, listens on that
route (from its end, without a consumer group) and hands each reply to the request
waiting for it. Replies are keyed by tenant and request id, and an answer's tenant is
checked before it is delivered. Several gateways (API replicas) can share one answers
topic, each listening on its own partition (``reply_partition``) or all of them; a
reply for a request this gateway does not hold is ignored, and a second answer for a
request already answered (a redelivery) is dropped and counted. Searches and document
reads go to the retrieve workers (a query's ``purpose``); documents and deletes go to
``rag-docs``, keyed by tenant and id so one document's writes keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.trace import SpanKind

from ragline.core.errors import DependencyTimeout, DependencyUnavailable, RaglineError
from ragline.core.models import Answer, Context, Delta, Document, DocumentRef, Failure, Query, new_query, reply_key
from ragline.core.ports import Bus, Delivery
from ragline.service.accepted import AcceptedSpool, Entry, new_token
from ragline.service.observability import inject_headers, tracer
from ragline.service.protocol import DELETE, KIND, RECEIPT, REPLY_TO, Topics, code_of_type, error_from

log = logging.getLogger("ragline.gateway")

_REMEMBERED = 100_000  # answered request ids kept to recognise duplicates
# An accepted write this much older than one already written is taken as skipped and sent
# again (stages run up to 32 messages at once per worker, so later writes do finish first,
# by well under a second unless a store is down).
OVERTAKEN_S = 10.0
_MAX_RESEND_DOUBLINGS = 5  # a write unconfirmed for long is sent again at most every 32 x resend_after_s


class Gateway:
    def __init__(
        self,
        bus: Bus,
        topics: Topics,
        *,
        timeout_s: float = 30.0,
        reply_partition: int | None = None,
        metrics=None,
        spool: AcceptedSpool | None = None,
        resend_after_s: float = 300.0,
    ) -> None:
        """``spool``: accepted writes kept until the ingest side confirms them, and sent again
        after a bus failure, at start, and once ``resend_after_s`` old (ragline/service/accepted.py)."""
        self.bus = bus
        self.spool = spool
        self.resend_after_s = resend_after_s
        self._resender: asyncio.Task | None = None
        self._resend_now: asyncio.Task | None = None
        # (key, token) -> (when last sent again, how often): each further send of one write
        # waits twice as long (see resend)
        self._resent: dict[tuple[str, str], tuple[float, int]] = {}
        self.topics = topics
        self.timeout_s = timeout_s
        self.reply_partition = reply_partition
        self.reply_to = topics.answers if reply_partition is None else f"{topics.answers}:{reply_partition}"
        self.metrics = metrics
        self.answered = 0
        self.duplicates = 0
        self.foreign = 0  # replies for requests another gateway (API replica) is waiting for
        self._waiting: dict[str, asyncio.Queue[Delivery | None]] = {}
        self._read_to: dict[int, int] = {}  # partition -> the next offset: a new tail goes on from there
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._listener: asyncio.Task | None = None
        self._healthy = True  # False while the listener re-attaches after a bus failure

    async def start(self) -> Gateway:
        stream = await self.bus.tail(self.topics.answers, self.reply_partition)
        self._listener = asyncio.create_task(self._listen(stream), name="gateway-replies")
        if self.spool is not None:
            # what an earlier run left, taken now: not the writes accepted from here on
            leftovers = await asyncio.to_thread(self.spool.entries)
            self._resender = asyncio.create_task(self._resend_forever(leftovers), name="gateway-resend")
        return self

    async def resend(
        self,
        older_than_s: float = 0.0,
        why: str = "",
        overtaken_by_s: float | None = None,
        entries: list[Entry] | None = None,
        everything: bool = False,
    ) -> int:
        """Publish again the accepted writes not confirmed yet: at least ``older_than_s``
        old, or with ``overtaken_by_s`` those overtaken by a confirmed write; returns how
        many were sent. One that cannot be sent now stays for the next try.

        A write sent again n times waits ``resend_after_s`` x 2^n before the next time:
        unconfirmed can mean behind, not lost, and sending everything again each round
        fed on itself (measured: a Milvus outage of 70 s left ingestion thousands of
        copies behind, 600 writes sent again every 5 s, 1,875 documents still missing a
        minute after Milvus was back). ``everything``: the bus came back (perhaps empty):
        all of them now, and the count starts again."""
        if self.spool is None:
            return 0
        now = time.monotonic()
        if everything:
            self._resent.clear()
        if entries is None:
            due = (
                await asyncio.to_thread(self.spool.entries, older_than_s)
                if overtaken_by_s is None
                else await asyncio.to_thread(self.spool.overtaken, overtaken_by_s)
            )
            entries = [e for e in due if everything or self._due_again((e.key, e.token), now)]
        sent = 0
        for entry in entries:
            _, times = self._resent.get((entry.key, entry.token), (0.0, 0))
            self._resent[(entry.key, entry.token)] = (time.monotonic(), times + 1)
            headers = {**entry.headers, REPLY_TO: self.reply_to.encode()}  # receipts to this gateway now
            try:
                await asyncio.wait_for(
                    self.bus.publish(entry.topic, entry.value, entry.key.encode(), headers), self.timeout_s
                )
            except (RaglineError, TimeoutError) as exc:
                log.warning("sending %d accepted writes again stopped after %d (%s)", len(entries), sent, exc)
                break
            sent += 1
        if sent:
            self.spool.resent += sent
            log.warning("%d accepted writes not confirmed by the ingest workers sent again (%s)", sent, why)
        return sent

    def _due_again(self, write: tuple[str, str], now: float) -> bool:
        last, times = self._resent.get(write, (0.0, 0))
        return times == 0 or now - last > self.resend_after_s * 2 ** min(times - 1, _MAX_RESEND_DOUBLINGS)

    async def _resend_forever(self, leftovers: list[Entry]) -> None:
        """What a previous run left at once; then, every 5 s, what the ingest side went past
        (a write accepted 10 s or more after it was confirmed: measured, a consumer group
        moved after a broker restart skipped 50 accepted documents, found only at the next
        restart), and what waited longer than ``resend_after_s``."""
        spool = self.spool
        assert spool is not None, "the resender runs only with a spool"
        await self.resend(why="left by an earlier run", entries=leftovers)
        while True:
            await asyncio.sleep(5.0)
            now = time.monotonic()
            forget_after = self.resend_after_s * 2 ** (_MAX_RESEND_DOUBLINGS + 1)  # confirmed long ago
            self._resent = {k: v for k, v in self._resent.items() if now - v[0] < forget_after}
            try:
                await self.resend(why="overtaken by later writes already written", overtaken_by_s=OVERTAKEN_S)
                # receipts are a courtesy (a lost one only costs a write done again), so
                # time alone also decides: measured, 40 skipped documents whose later
                # neighbours' receipts were lost too waited for the next restart. But only
                # while no receipt comes: receipts coming mean the ingest side is working,
                # and behind (a store outage), not lost; then the rule above is the one
                if time.monotonic() - spool.last_confirmed_at > self.resend_after_s / 2:
                    await self.resend(self.resend_after_s, f"older than {self.resend_after_s:g} s")
            except Exception as exc:  # the next round tries again
                log.error("sending accepted writes again failed: %s", exc)

    async def __aenter__(self) -> Gateway:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in (self._resender, self._resend_now):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                    await task
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._listener

    def query(self, text: str, tenant: str, top_k: int, *, request_id: str | None = None, **fields: Any) -> Query:
        """A validated query to send; ``request_id`` (e.g. the HTTP request's) is used
        unless the same tenant already has a request with that id waiting here."""
        usable = request_id is not None and f"{tenant}/{request_id}" not in self._waiting
        return new_query(
            text=text, tenant=tenant, top_k=top_k, **fields, **({"request_id": request_id} if usable else {})
        )

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.done() and self._healthy

    async def _listen(self, stream: AsyncGenerator[Delivery, None]) -> None:
        """Route replies to their requests; if the bus fails, listen again from its end
        (requests whose answers passed meanwhile time out with a 504)."""
        while True:
            try:
                async for delivery in stream:
                    self._route(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._healthy = False
                log.error("the reply listener on %s failed (%s); listening again in 1 s", self.topics.answers, exc)
                self._interrupt_waiting()
            finally:
                with contextlib.suppress(RuntimeError, Exception):
                    await stream.aclose()
            while True:
                await asyncio.sleep(1.0)
                try:
                    stream = await self.bus.tail(self.topics.answers, self.reply_partition, since=self._read_to)
                    self._healthy = True
                    # the broker may have come back without what it had accepted
                    if self.spool is not None and (self._resend_now is None or self._resend_now.done()):
                        self._resend_now = asyncio.create_task(self.resend(0.0, "the bus came back", everything=True))
                    break
                except Exception as exc:
                    log.error("cannot listen on %s yet: %s", self.topics.answers, exc)

    def _interrupt_waiting(self) -> None:
        """The answer stream broke (the brokers were lost, then came back): requests
        waiting now fail at once with a retryable error instead of waiting out their
        timeout. A broker that came back without its log (in memory) lost them for good;
        one that kept it may still answer, and the client's retry is then answered too
        (a question is a read: asking again is safe)."""
        for inbox in self._waiting.values():
            inbox.put_nowait(None)
        if self._waiting:
            log.warning(
                "%d requests waiting for answers were failed (retryable): the answer stream broke", len(self._waiting)
            )

    def _route(self, delivery: Delivery) -> None:
        self._read_to[delivery.partition] = delivery.offset + 1
        request_id = (delivery.key or b"").decode("utf-8", "replace")  # "tenant/request id"
        if delivery.headers.get(KIND) == b"receipt":  # "tenant/document id": a write was done
            if self.spool is not None:
                self.spool.confirm(request_id, delivery.headers.get(RECEIPT, b"").decode())
            return
        waiting = self._waiting.get(request_id)
        if waiting is not None:
            waiting.put_nowait(delivery)
        elif request_id in self._finished:
            if delivery.headers.get(KIND, b"answer") == b"answer":
                self.duplicates += 1
                if self.metrics is not None:
                    self.metrics.duplicate_answers.inc()
        else:
            self.foreign += 1

    async def ask(self, query: Query) -> Answer:
        items = self.stream(query, stream=False)
        try:
            async for item in items:
                if isinstance(item, Answer):
                    return item
        finally:
            await items.aclose()  # ends its span and forgets the request now, not at garbage collection
        raise DependencyUnavailable("the pipeline ended the reply without an answer")  # pragma: no cover

    async def stream(self, query: Query, stream: bool = True) -> AsyncGenerator[str | Answer, None]:
        """Publish the query; yield text pieces (when streamed), then the Answer."""
        attempt = None
        replies = self._exchange(query.model_copy(update={"stream": stream, "purpose": "answer"}))
        try:
            async for kind, delivery in replies:
                if kind == b"answer":
                    answer = Answer.model_validate_json(delivery.value)
                    if answer.tenant != query.tenant:  # never hand one tenant another's answer
                        self.foreign += 1
                        continue
                    self.answered += 1
                    yield answer
                    return
                if kind == b"delta":
                    delta = Delta.model_validate_json(delivery.value)
                    attempt = attempt or delta.attempt  # a redelivered generation repeats itself: keep one
                    if delta.attempt == attempt:
                        yield delta.text
        finally:
            await replies.aclose()

    async def search(self, query: Query, purpose: str = "search") -> Context:
        """The retriever's Context for ``query`` (``purpose="document"``: a document's chunks)."""
        replies = self._exchange(query.model_copy(update={"purpose": purpose}))
        try:
            async for kind, delivery in replies:
                if kind == b"context":
                    context = Context.model_validate_json(delivery.value)
                    if context.query.tenant == query.tenant:
                        return context
        finally:
            await replies.aclose()
        raise DependencyUnavailable("the pipeline ended the reply without a context")  # pragma: no cover

    async def _exchange(self, query: Query) -> AsyncGenerator[tuple[bytes, Delivery], None]:
        """Publish ``query`` and yield (kind, delivery) for each reply until the caller stops."""
        if not self.listening:
            raise DependencyUnavailable(f"not listening for answers on {self.topics.answers}; the bus is down")
        deadline = datetime.now(UTC) + timedelta(seconds=self.timeout_s)
        query = query.model_copy(update={"reply_to": self.reply_to, "deadline": deadline})
        request_id, key = query.request_id, reply_key(query)
        inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()  # None: the answer stream broke
        self._waiting[key.decode()] = inbox
        loop = asyncio.get_running_loop()
        until = loop.time() + self.timeout_s
        # Not made current (this is a generator, resumed in other contexts): its context
        # only travels in the message headers, making the workers' spans its children.
        traced = tracer().start_span(
            "gateway query", kind=SpanKind.PRODUCER, attributes={"request_id": request_id, "tenant": query.tenant}
        )
        try:
            headers = _trace_headers(traced)
            await asyncio.wait_for(
                self.bus.publish(self.topics.queries, query.model_dump_json().encode(), request_id.encode(), headers),
                self.timeout_s,
            )
            while True:
                try:
                    delivery = await asyncio.wait_for(inbox.get(), max(0.0, until - loop.time()))
                except TimeoutError:
                    if self.metrics is not None:
                        self.metrics.reply_timeouts.inc()
                    raise DependencyTimeout(
                        f"no answer to request {request_id} within {self.timeout_s:g}s: the pipeline's "
                        f"retrieve/generate workers are down or behind (see consumer lag)"
                    ) from None
                if delivery is None:
                    raise DependencyUnavailable(
                        f"request {request_id}: the stream of answers broke (the broker was lost and came "
                        "back); it may not be answered: ask again"
                    )
                kind = delivery.headers.get(KIND, b"answer")
                if kind == b"failure":
                    raise _as_error(Failure.model_validate_json(delivery.value))
                yield kind, delivery
        except TimeoutError:
            raise DependencyTimeout(f"could not publish request {request_id} within {self.timeout_s:g}s") from None
        finally:
            traced.end()
            self._waiting.pop(key.decode(), None)
            self._finished[key.decode()] = None
            while len(self._finished) > _REMEMBERED:
                self._finished.popitem(last=False)

    async def delete(self, tenant: str, document_id: str) -> None:
        """Publish a delete to the documents topic, keyed like the document's upserts."""
        ref = DocumentRef(tenant=tenant, id=document_id)
        await self._write([(f"{tenant}/{document_id}", ref.model_dump_json().encode(), {KIND: DELETE})])

    async def submit(self, documents: Sequence[Document]) -> None:
        """Publish documents to the ingestion topic; keyed by tenant and id, so one
        document's versions stay in order on one partition."""
        await self._write([(f"{doc.tenant}/{doc.id}", doc.model_dump_json().encode(), {}) for doc in documents])

    async def _write(self, writes: list[tuple[str, bytes, dict[str, bytes]]]) -> None:
        """Publish (key, value, headers) writes to the documents topic; once the broker took
        them, keep them in the spool until their receipts come (ragline/service/accepted.py)."""
        headers = inject_headers()
        entries = [
            Entry(key, new_token(), self.topics.docs, value, {**headers, **extra}, time.time())
            for key, value, extra in writes
        ]
        if self.spool is not None:
            self.spool.room_for(sum(len(e.value) for e in entries))
            for entry in entries:
                entry.headers.update({REPLY_TO: self.reply_to.encode(), RECEIPT: entry.token.encode()})
            # kept before publishing: a receipt can come back before the publish returns
            replaced = await asyncio.to_thread(self.spool.keep, entries)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self.bus.publish(e.topic, e.value, e.key.encode(), e.headers) for e in entries)),
                self.timeout_s,
            )
        except BaseException:
            if self.spool is not None:  # not accepted (503): not ours to send again
                await asyncio.to_thread(self.spool.restore, entries, replaced)
            raise


def _trace_headers(traced) -> dict[str, bytes]:
    from opentelemetry.propagate import inject
    from opentelemetry.trace import set_span_in_context

    carrier: dict[str, str] = {}
    inject(carrier, context=set_span_in_context(traced))
    return {k: v.encode() for k, v in carrier.items()}


def _as_error(failure: Failure) -> RaglineError:
    """A stage's failure as the error the caller would have had in-process (protocol.py)."""
    code = failure.code or code_of_type(failure.error_type)
    return error_from(code, f"the {failure.stage} stage failed: {failure.error}")
