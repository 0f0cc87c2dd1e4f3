"""The Kafka bus over confluent-kafka.

Producers: idempotent, acks=all, linger.ms=5; the request-reply topics (a person is
waiting) use a second producer with linger.ms=0 by default: three hops of 5 ms lingering
were most of the latency Kafka added (measured in bench/pipeline.py). Consumers: one per ``consume`` call, in a consumer
group, auto-commit off; ``commit`` commits a message's offset synchronously, so a
stage commits only after its output is produced. Blocking client calls run in
threads; delivery reports are served by a polling thread.

Healing. A publish not acknowledged within ``publish_timeout_ms`` fails with
DependencyUnavailable (the API answers 503: nothing is accepted that the broker did not
take). When that happens while the broker answers metadata requests, the producer is
wedged (an idempotent producer whose broker came back without its state waits forever:
measured with Tansu, which keeps topics in memory) and is replaced by a new one, and the
topics missing from ``topic_specs`` are re-created with their configured partitions.
Consumers re-create missing topics the same way, and rebuild themselves after a fatal
error instead of ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ConfigurationError, DependencyUnavailable
from ..ports import Delivery, TopicSpec
from ..settings import default
from . import tansu
from .group_directory import GroupDirectory
from .membership import Action, Membership


@contextlib.contextmanager
def _translated(servers: str) -> Iterator[None]:
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as exc:
        raise DependencyUnavailable(f"Kafka at {servers}: {exc}") from exc
    except BufferError as exc:
        raise DependencyUnavailable(f"Kafka producer queue full ({servers}): {exc}") from exc


_log = logging.getLogger("ragline.kafka")


class _Held:
    """The one strong reference to a consumer. A consumer replaced because its brokers were
    lost (or its group never settled) is dropped through it, in its pool's thread, so that
    librdkafka destroys it without consumer_close, that is without a LeaveGroup: the old
    member may already have rejoined the restarted broker and been made the group's leader,
    and Tansu, told that its leader left a group still forming, keeps naming it leader for
    ever, so that nobody is ever given partitions (the ghost leader; reproduced with plain
    confluent-kafka consumers: 5 of 5 runs with close(), 0 of 5 without, the group formed
    in 4 s once the dropped member's session expired)."""

    __slots__ = ("consumer",)

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer


def _abandon(held: _Held) -> None:
    """Drop the consumer without a LeaveGroup (confluent-kafka destroys a consumer that was
    never closed with RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)."""
    held.consumer = None


class _Rejoin(Exception):
    """Replace the consumer by one in directory generation ``generation``'s group;
    ``cure``: because its group did not settle (not to follow a peer's move)."""

    def __init__(self, why: str, generation: int, cure: bool, move: bool = True) -> None:
        super().__init__(why)
        self.generation = generation
        self.cure = cure
        self.move = move  # False: a new consumer in the same group (the brokers came back)


class _PastEnd:
    """Tansu workaround: the partitions whose fetch position stood past the end of their
    log in two statistics reports in a row.

    Tansu (510f3e2; upstream the same) never answers a fetch with OFFSET_OUT_OF_RANGE, so
    ``auto.offset.reset`` never applies and a consumer positioned past the end of a log
    waits, silently, until the log grows that far. A position is past the end when a
    broker came back empty and a commit for a message of the old log still reached it
    (measured on the stack: four questions in a row lost to one stalled partition of
    rag-queries after a broker restart), or a tail kept its positions through a restart.
    Past the end of a log that restarted, everything in it is new: read it from its start
    (a message read twice is an idempotent upsert or a duplicate answer the gateway drops).

    The log's end is the high watermark of the fetch responses (what the statistics call
    ``hi_offset``), never a ListOffsets answer: Tansu's in-memory storage answers "latest"
    with the base offset of the newest record batch plus one, short of the end when that
    batch holds several records (``dynostore.rs`` ``list_offsets``). A check on assignment
    that used it re-read live partitions from their start ("committed 8, log ends at 5"
    with no restart: a flaky two-retrievers pipeline test)."""

    def __init__(self) -> None:
        self._before: set[tuple[str, int, int]] = set()

    def observe(self, report: Mapping[str, Any]) -> list[tuple[str, int, int, int]]:
        """(topic, partition, position, log start) for each partition stuck past its end."""
        now: set[tuple[str, int, int]] = set()
        stuck = []
        for topic, info in report.get("topics", {}).items():
            for number, part in info.get("partitions", {}).items():
                partition, position = int(number), part.get("next_offset", -1)
                if partition < 0 or part.get("fetch_state") != "active":
                    continue
                if 0 <= part.get("hi_offset", -1) < position:
                    now.add((topic, partition, position))
                    if (topic, partition, position) in self._before:
                        stuck.append((topic, partition, position, max(0, part.get("lo_offset", 0))))
        self._before = now
        return stuck


def _member_id(consumer: Any) -> str | None:
    try:
        return consumer.memberid()
    except Exception:  # closed, or not in a group yet
        return None


def _transient_or_raise(error, servers: str) -> None:
    """A fatal consumer error ends the stream; others (a broker restarting, a partition
    moving) are logged and librdkafka recovers by itself."""
    if error.fatal():
        raise DependencyUnavailable(f"Kafka at {servers}: {error}")
    _log.warning("Kafka at %s: %s (retrying)", servers, error)


class KafkaBus:
    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = default("kafka_client_id"),
        session_timeout_ms: int = default("kafka_session_timeout_ms"),
        fetch_wait_max_ms: int = default("kafka_fetch_wait_max_ms"),
        poll_s: float = 0.1,
        linger_ms: float = default("kafka_linger_ms"),
        interactive_topics: Collection[str] = (),
        interactive_linger_ms: float = default("kafka_interactive_linger_ms"),
        stats_interval_ms: int = default("kafka_stats_interval_ms"),
        transactional_id: str | None = None,
        publish_timeout_ms: int = 5000,
        topic_specs: Sequence[TopicSpec] = (),
        groups_topic: str = default("topic_groups"),
        leave_group: bool = default("kafka_leave_group"),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """``interactive_topics`` (queries, context, answers: someone is waiting) get their
        own producer with ``interactive_linger_ms``; everything else batches for ``linger_ms``.
        ``groups_topic``: the group directory (buses/group_directory.py). ``leave_group``
        off: a consumer that stops is dropped without a LeaveGroup (its peers wait for its
        session to expire): the Tansu workaround, as Tansu keeps naming a leader that left
        a forming group as the leader, for ever (buses/membership.py)."""
        from confluent_kafka import Producer

        self.servers = bootstrap_servers
        self.client_id = client_id
        self.session_timeout_ms = session_timeout_ms
        self.fetch_wait_max_ms = fetch_wait_max_ms
        self.poll_s = poll_s
        self.extra = dict(extra or {})
        self.interactive_topics = frozenset(interactive_topics)
        # librdkafka's own log lines go through Python logging (JSON lines like the rest)
        self.extra = {"logger": logging.getLogger("ragline.kafka"), **self.extra}
        self.stats_interval_ms = stats_interval_ms
        self._lag: dict[int, dict[tuple[str, str, int], int]] = {}  # per consumer: (group, topic, partition) -> lag
        self._consumer_ids = itertools.count()
        self.publish_timeout_s = publish_timeout_ms / 1000
        self.topic_specs = list(topic_specs)
        self._last_topic_check = 0.0
        self._last_heal = float("-inf")
        self._healing = asyncio.Lock()
        self.producers_replaced = 0
        self.group_moves = 0  # consumers moved to another group (buses/membership.py)

        def producer(linger: float) -> Producer:
            return Producer(
                {
                    "bootstrap.servers": bootstrap_servers,
                    "client.id": client_id,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": linger,
                    # a message the broker has not taken by then fails (and is not sent later)
                    "message.timeout.ms": publish_timeout_ms,
                    # topics come from topic_specs with their partitions, not from auto-creation
                    "allow.auto.create.topics": False,
                    **self.extra,
                }
            )

        self._new_producer = producer
        self._linger = {"batch": linger_ms, "interactive": interactive_linger_ms}
        self._producers: dict[str, Any] = {"batch": producer(linger_ms)}
        self._producers["interactive"] = (
            producer(interactive_linger_ms) if self.interactive_topics else self._producers["batch"]
        )
        # Transactions: a stage's outputs and its input's offset commit atomically
        # (``publish_and_commit``); for brokers that support them (Tansu's read_committed
        # is not trustworthy, see ARCHITECTURE.md).
        self.transactional = transactional_id is not None
        self._tx_producer = None
        if self.transactional:
            from confluent_kafka import Producer as TxProducer

            self._tx_producer = TxProducer(
                {
                    "bootstrap.servers": bootstrap_servers,
                    "client.id": client_id,
                    "transactional.id": transactional_id,
                    "linger.ms": interactive_linger_ms,
                    "message.timeout.ms": 30_000,
                    **self.extra,
                }
            )
            with _translated(bootstrap_servers):
                self._tx_producer.init_transactions(30)
            self._tx_pool = ThreadPoolExecutor(1, thread_name_prefix="kafka-tx")  # one transaction at a time
        self.leave_group = leave_group
        self._directory = GroupDirectory(bootstrap_servers, groups_topic, self.extra)
        self._closing = threading.Event()
        self._pollers = [
            threading.Thread(target=self._serve_delivery_reports, args=(role,), daemon=True, name="kafka-producer-poll")
            for role in ("batch", "interactive", "tx")
        ]
        for thread in self._pollers:
            thread.start()

    @property
    def _producer(self) -> Any:
        return self._producers["batch"]

    @property
    def _interactive(self) -> Any:
        return self._producers["interactive"]

    def _serve_delivery_reports(self, role: str) -> None:
        """Delivery reports of the producer in that role (whichever it is now)."""
        while not self._closing.is_set():
            producer = self._tx_producer if role == "tx" else self._producers[role]
            if producer is None or (role == "interactive" and producer is self._producers["batch"]):
                self._closing.wait(0.5)
                continue
            try:
                producer.poll(0.05)
            except Exception as exc:  # a fatal producer error: its next publish fails and replaces it
                _log.warning("Kafka at %s: %s producer failed (%s)", self.servers, role, exc)
                self._closing.wait(0.2)

    async def publish(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> None:
        """Returns once the broker has acknowledged the message (acks=all); raises
        DependencyUnavailable when it has not within the publish timeout (see the module doc)."""
        try:
            await self._publish_once(topic, value, key, headers, partition)
        except DependencyUnavailable:
            await self._heal(topic)
            raise

    async def _publish_once(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Mapping[str, bytes] | None,
        partition: int | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def report(err, msg) -> None:
            outcome = (
                (lambda: done.set_exception(DependencyUnavailable(f"Kafka at {self.servers}: {err}")))
                if err is not None
                else (lambda: done.set_result(None))
            )
            loop.call_soon_threadsafe(lambda: None if done.done() else outcome())

        with _translated(self.servers):
            producer = self._interactive if topic in self.interactive_topics else self._producer
            options: dict[str, Any] = {} if partition is None else {"partition": partition}
            producer.produce(
                topic, value=value, key=key, headers=list((headers or {}).items()), on_delivery=report, **options
            )
        try:
            await asyncio.wait_for(asyncio.shield(done), self.publish_timeout_s + 1)
        except TimeoutError:
            done.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late report: read, not logged
            raise DependencyUnavailable(
                f"Kafka at {self.servers} did not acknowledge a message to {topic!r} in {self.publish_timeout_s:g} s"
            ) from None

    async def _heal(self, topic: str) -> None:
        """After a failed publish: if the broker answers, re-create missing topics and
        replace the producer that failed (it is wedged); if not, nothing to do yet."""
        now = asyncio.get_running_loop().time()
        if self._healing.locked() or now - self._last_heal < 3.0:
            return  # another publish is healing, or just did
        async with self._healing:
            self._last_heal = now
            try:
                await self.ensure_topics(force=True)
            except Exception as exc:  # the broker is down: the next failed publish tries again
                _log.warning("Kafka at %s unreachable (%s); producer kept", self.servers, exc)
                return
            # Both producers: after a broker restart the other one is wedged as well.
            old = set(self._producers.values())
            batch = self._new_producer(self._linger["batch"])
            shared = self._producers["interactive"] is self._producers["batch"]
            interactive = batch if shared else self._new_producer(self._linger["interactive"])
            self._producers.update(batch=batch, interactive=interactive)
            self.producers_replaced += 1
            _log.warning("Kafka at %s answers but a publish to %r failed: producers replaced", self.servers, topic)

            def retire() -> None:
                for producer in old:
                    with contextlib.suppress(Exception):
                        producer.purge(in_queue=True, in_flight=True)  # their publishers hear it and retry
                        producer.flush(1)

            await asyncio.to_thread(retire)

    async def ensure_topics(self, force: bool = False) -> list[str]:
        """Re-create the configured topics that are missing (at most every 5 s unless forced)."""
        now = asyncio.get_running_loop().time()
        if not self.topic_specs or (not force and now - self._last_topic_check < 5.0):
            return []
        self._last_topic_check = now
        created = await self.create_topics(self.topic_specs, timeout_s=3.0)
        if created:
            _log.warning("Kafka at %s had lost topics %s: re-created from their specs", self.servers, created)
        return created

    async def publish_and_commit(self, outputs: Sequence[Any], delivery: Delivery) -> None:
        """In one transaction: produce ``outputs`` (objects with topic, value, key, headers,
        partition) and commit ``delivery``'s offset for its consumer group."""
        from confluent_kafka import TopicPartition

        if self._tx_producer is None:
            raise ConfigurationError("publish_and_commit needs a transactional bus (transactional_id)")
        held, message, *_ = delivery.handle
        consumer = held.consumer
        if consumer is None:
            raise DependencyUnavailable(f"Kafka at {self.servers}: the consumer that took this message is gone")
        producer = self._tx_producer

        def transaction() -> None:
            producer.begin_transaction()
            try:
                for out in outputs:
                    producer.produce(
                        out.topic,
                        value=out.value,
                        key=out.key,
                        headers=list((out.headers or {}).items()),
                        **({} if out.partition is None else {"partition": out.partition}),
                    )
                producer.send_offsets_to_transaction(
                    [TopicPartition(message.topic(), message.partition(), message.offset() + 1)],
                    consumer.consumer_group_metadata(),
                    30,
                )
                producer.commit_transaction(30)
            except BaseException:
                with contextlib.suppress(Exception):
                    producer.abort_transaction(30)
                raise

        with _translated(self.servers):
            await asyncio.get_running_loop().run_in_executor(self._tx_pool, transaction)

    async def consume(self, topics: Sequence[str], group: str) -> AsyncGenerator[Delivery, None]:
        """Messages of ``topics`` for consumer group ``group`` (or the group it moved to, see
        buses/membership.py); each consumer's group handling is a ``Membership``."""
        from confluent_kafka import Consumer, KafkaError

        me = next(self._consumer_ids)
        lag = self._lag.setdefault(me, {})
        with contextlib.suppress(Exception):  # at start: the topics a broker lost, from their specs
            await self.ensure_topics(force=True)
        # Long enough for a dead member's expiry and a join (Tansu holds a JoinGroup for half
        # a session), and for three statistics reports.
        unsettled_limit_s = max(self.session_timeout_ms / 1000 + 4.0, 3 * self.stats_interval_ms / 1000)
        membership = Membership(group, unsettled_limit_s, time.monotonic())
        # a stage moved earlier: its new members join where the others are (not the base group)
        with contextlib.suppress(Exception):
            read = await asyncio.to_thread(self._directory.refresh)
            if read and read.get(group, 0) > 0:
                membership.moved(read[group], time.monotonic(), cure=False)

        past_end = _PastEnd()
        seeks: deque[tuple[str, int, int]] = deque()  # done by the poll loop, in its thread

        def stats(raw: str) -> None:  # librdkafka's statistics: group state, consumer lag per partition
            report = json.loads(raw)
            cgrp = report.get("cgrp", {})
            brokers = [b for b in report.get("brokers", {}).values() if b.get("nodeid", 0) >= 0]
            # error_cb does not always say the brokers are gone (measured: silent through a 5 s outage)
            up = any(b.get("state") == "UP" for b in brokers) if brokers else None
            membership.on_statistics(cgrp.get("join_state"), up, time.monotonic())
            lag.clear()
            for topic, info in report.get("topics", {}).items():
                for number, part in info.get("partitions", {}).items():
                    if int(number) >= 0 and part.get("consumer_lag", -1) >= 0 and part.get("fetch_state") == "active":
                        lag[(group, topic, int(number))] = part["consumer_lag"]
            for topic, partition, position, low in past_end.observe(report):
                _log.warning(
                    "%s[%d] in group %s: position %d stays past the end of the log; read from its start (%d)",
                    topic,
                    partition,
                    membership.group,
                    position,
                    low,
                )
                seeks.append((topic, partition, low))

        def on_error(error) -> None:
            if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
                membership.on_brokers_down(time.monotonic())

        epoch = [0]

        def next_epoch(*_: Any) -> None:
            epoch[0] += 1

        def on_assign(consumer: Any, partitions: list) -> None:
            next_epoch()
            _log.info(
                "group %s assigned %s (member %s)",
                membership.group,
                ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing",
                _member_id(consumer),
            )

        def new_consumer() -> Consumer:
            consumer = Consumer(
                {
                    "bootstrap.servers": self.servers,
                    "client.id": self.client_id,
                    "group.id": membership.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": self.session_timeout_ms,
                    "heartbeat.interval.ms": max(100, self.session_timeout_ms // 5),
                    "fetch.wait.max.ms": self.fetch_wait_max_ms,
                    "statistics.interval.ms": self.stats_interval_ms,
                    "stats_cb": stats,
                    "error_cb": on_error,
                    # notice soon a topic re-created after a broker came back empty (default 5 min)
                    "topic.metadata.refresh.interval.ms": 2000,
                    **self.extra,
                }
            )
            # Each assignment (or revocation, or loss) starts a new epoch: a message taken
            # in an earlier one is not committed (see commit()).
            consumer.subscribe(list(topics), on_assign=on_assign, on_revoke=next_epoch, on_lost=next_epoch)
            return consumer

        try:
            while True:
                # Its own threads (one polls, one commits): blocking polls in the shared default
                # executor starved everything else that runs in threads (measured: p90 +100 ms).
                polling = self._poll(
                    _Held(new_consumer()),
                    ThreadPoolExecutor(2, thread_name_prefix="kafka-consumer"),
                    committable=True,
                    epoch=epoch,
                    membership=membership,
                    topics=topics,
                    seeks=seeks,
                )
                try:
                    async for delivery in polling:
                        yield delivery
                    return
                except _Rejoin as rejoin:
                    if rejoin.move:
                        membership.moved(rejoin.generation, time.monotonic(), cure=rejoin.cure)
                        self.group_moves += 1
                    else:  # the brokers were lost: a new consumer once they answer
                        await self._until_brokers_answer()
                        # in the group the directory names now: after an empty restart it is
                        # gone, and every member goes back to the base group at this point
                        read = await asyncio.to_thread(self._directory.refresh)
                        membership.replaced(time.monotonic(), None if read is None else read.get(group, 0))
                    _log.warning("Kafka at %s: %s; a new consumer in group %r", self.servers, rejoin, membership.group)
                finally:
                    with contextlib.suppress(RuntimeError):  # a cancelled read already closed it
                        await polling.aclose()
        finally:
            self._lag.pop(me, None)

    async def _until_brokers_answer(self) -> None:
        """Wait until a broker answers a metadata request, then replace the producers (an
        idempotent producer whose broker lost its state stays wedged) and re-create the
        topics it lost."""
        while True:
            try:
                await self.ping(timeout_s=1.0)
            except DependencyUnavailable:
                await asyncio.sleep(0.5)
            else:
                await self._heal("")
                with contextlib.suppress(Exception):
                    await self.ensure_topics(force=True)
                return

    async def ping(self, timeout_s: float = 2.0) -> None:
        """Raise DependencyUnavailable unless the broker answers a metadata request."""
        producer = self._producers["batch"]
        with _translated(self.servers):
            await asyncio.to_thread(producer.list_topics, timeout=timeout_s)

    def lag(self) -> dict[tuple[str, str, int], int]:
        """Consumer lag of this process's consumers, as librdkafka last reported it."""
        merged: dict[tuple[str, str, int], int] = {}
        for per_consumer in list(self._lag.values()):
            merged.update(per_consumer)
        return merged

    async def tail(
        self, topic: str, partition: int | None = None, since: Mapping[int, int] | None = None
    ) -> AsyncGenerator[Delivery, None]:
        """Read ``topic`` (one partition, or all) from its current end, or from ``since``
        (see the port), without a group. The stream raises once the brokers were lost and
        answer again: tail anew, from where the last stream stopped."""
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        lost = threading.Event()  # brokers gone: once they answer, the stream ends (_Rejoin)
        past_end = _PastEnd()

        def on_error(error) -> None:
            if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
                lost.set()

        def stats(raw: str) -> None:
            # a broker restart that error_cb did not report (it can be silent through a
            # short outage) leaves this tail's positions past the end of the new logs
            stuck = past_end.observe(json.loads(raw))
            if stuck:
                _log.warning("tail of %s: positions past the end of the log (%s); tailing anew", topic, stuck)
                lost.set()

        consumer = Consumer(
            {
                "bootstrap.servers": self.servers,
                "client.id": self.client_id,
                "error_cb": on_error,
                "statistics.interval.ms": self.stats_interval_ms,
                "stats_cb": stats,
                "group.id": f"{self.client_id}-tail-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                # a topic re-created empty (its offsets restart at 0): read it from its start
                "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 2000,
                "fetch.wait.max.ms": self.fetch_wait_max_ms,
                **self.extra,
            }
        )

        def assign_at_end() -> None:
            metadata = consumer.list_topics(topic, timeout=10)
            info = metadata.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                raise DependencyUnavailable(
                    f"Kafka at {self.servers}: topic {topic!r} is not available "
                    f"({getattr(info, 'error', None)}); run `ragline topics create`"
                )
            numbers = sorted(info.partitions) if partition is None else [partition]
            starts = []
            for p in numbers:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                wanted = (since or {}).get(p)
                if wanted is not None and wanted > high:  # Tansu's listed end can be short of the real one
                    high = tansu.log_end(self.servers, self.extra, topic, p, high)
                if wanted is None:
                    # from the end; Tansu's listed end can be a few records short of it: a
                    # tail may see the newest batch's records again (replies nobody waits
                    # for any more, dropped by whoever reads the tail)
                    start = high
                elif wanted <= high:
                    start = max(low, wanted)  # where the last tail stopped
                else:
                    start = low  # the log restarted below it (a broker back without its data)
                starts.append(TopicPartition(topic, p, start))
            consumer.assign(starts)

        with contextlib.suppress(Exception):  # at start: the topics a broker lost, from their specs
            await self.ensure_topics(force=True)
        try:
            with _translated(self.servers):
                await asyncio.to_thread(assign_at_end)
        except BaseException:
            await asyncio.to_thread(consumer.close)
            raise
        # After a broker restart the caller tails again (the gateway does): a fresh consumer
        # on the topic as it is now, rather than positions on a log that may be gone.
        return self._poll(
            _Held(consumer), ThreadPoolExecutor(1, thread_name_prefix="kafka-tail"), committable=False, lost=lost
        )

    async def _poll(
        self,
        held: _Held,
        pool: ThreadPoolExecutor,
        committable: bool,
        lost: threading.Event | None = None,
        epoch: list[int] | None = None,
        membership: Membership | None = None,
        topics: Sequence[str] = (),
        seeks: deque[tuple[str, int, int]] | None = None,
    ) -> AsyncGenerator[Delivery, None]:
        """The consumer's messages as Deliveries (with what ``commit`` needs, if
        ``committable``). A tail (``lost``): once the brokers were lost and answer again,
        the stream ends with _Rejoin (the caller tails anew). A group member
        (``membership``): the producers are healed when its brokers answer again, and it
        follows its ``Membership``'s decisions (_Rejoin: replaced, or moved to another
        group). The
        consumer is closed when the iteration ends, or dropped without a LeaveGroup (see
        _Held) when it moves or when ``leave_group`` is off."""
        from confluent_kafka import KafkaError, TopicPartition

        ignorable = (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART)
        loop = asyncio.get_running_loop()
        checked = 0.0  # the last look at the brokers (lost) or at the directory
        tried_move = float("-inf")
        moving: asyncio.Future[bool] | None = None  # a group move being published
        moving_why = ""
        abandon = committable and not self.leave_group
        try:
            while True:
                if membership is not None:
                    if moving is not None and moving.done():
                        if not moving.cancelled() and moving.result() is True:
                            raise _Rejoin(moving_why, membership.generation + 1, cure=True)
                        moving = None  # not published: the next decision tries again
                    directory = self._directory.generation(membership.base)
                    decision = membership.decide(time.monotonic(), directory)
                    if decision.action is Action.REPLACE:
                        raise _Rejoin(decision.why, membership.generation, cure=False, move=False)
                    if decision.action is Action.MOVE and decision.generation == directory:
                        raise _Rejoin(decision.why, decision.generation, cure=False)  # a peer moved the stage
                    if decision.action is Action.MOVE and moving is None and loop.time() - tried_move > 5.0:
                        # this group did not settle: move the stage (published first, so that
                        # every member follows), in the background: this loop polls on
                        tried_move, moving_why = loop.time(), decision.why
                        moving = asyncio.ensure_future(
                            asyncio.to_thread(
                                self._directory.move,
                                membership.base,
                                decision.generation,
                                list(topics),
                                membership.group,
                                decision.why,
                            )
                        )
                elif lost is not None and lost.is_set() and loop.time() - checked > 1.0:
                    checked = loop.time()
                    try:
                        await loop.run_in_executor(pool, functools.partial(held.consumer.list_topics, timeout=1))
                    except Exception:  # still down
                        pass
                    else:
                        # the producers of a process whose brokers came back are wedged too
                        # (an idempotent producer whose broker lost its state): replace them now
                        await self._heal("")
                        raise _Rejoin("the brokers were lost and answer again", 0, cure=False)
                while seeks:  # positions stuck past the end of their logs (see _PastEnd)
                    topic, partition, low = seeks.popleft()
                    try:
                        await loop.run_in_executor(pool, held.consumer.seek, TopicPartition(topic, partition, low))
                    except Exception as exc:  # no longer assigned here: its new owner starts anew
                        _log.info("%s[%d]: not moved to %d (%s)", topic, partition, low, exc)
                message = await loop.run_in_executor(pool, held.consumer.poll, self.poll_s)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        with contextlib.suppress(Exception):  # a broker that came back empty
                            await self.ensure_topics()
                    elif message.error().code() not in ignorable:
                        _transient_or_raise(message.error(), self.servers)
                    continue
                yield Delivery(
                    message.topic(),
                    message.key(),
                    message.value() or b"",
                    {k: v or b"" for k, v in (message.headers() or [])},
                    message.partition(),
                    message.offset(),
                    handle=(
                        (held, message, pool, epoch, epoch[0] if epoch else 0, _member_id(held.consumer))
                        if committable
                        else None
                    ),
                )
        except _Rejoin:
            abandon = committable  # a group member that moves: no LeaveGroup (see _Held)
            raise
        finally:
            if moving is not None and not moving.done():
                moving.cancel()
            if abandon:
                await loop.run_in_executor(pool, _abandon, held)
            elif held.consumer is not None:
                await loop.run_in_executor(pool, held.consumer.close)
            pool.shutdown(wait=False)

    async def commit(self, delivery: Delivery) -> None:
        held, message, pool, epoch, taken_in, taken_as = delivery.handle
        if held.consumer is not None and _member_id(held.consumer) != taken_as:
            # The consumer left the group it took the message in and joined again: after a
            # broker restart librdkafka rejoins by itself ("Unknown member") before the
            # rebalance callbacks run (so before a new epoch). A commit now would land in
            # the group on the new, empty log, at an old log's offset: past the end of
            # a partition, which then stalls (see _PastEnd).
            _log.info(
                "%s[%d]@%d not committed: its consumer rejoined its group since",
                message.topic(),
                message.partition(),
                message.offset(),
            )
            return
        if epoch is not None and epoch[0] != taken_in:
            # Its partition was revoked or reassigned since it was taken: whoever holds the
            # partition now reads it again from the last commit. Committing it here could
            # move a partition past messages no one has handled: after a broker came back
            # empty, the topic's new log has the same offsets for other messages (measured:
            # 281 documents skipped in one drill).
            _log.info(
                "%s[%d]@%d not committed: reassigned since", message.topic(), message.partition(), message.offset()
            )
            return
        consumer = held.consumer
        try:
            if consumer is None:
                raise RuntimeError("replaced after its brokers were lost")
            with _translated(self.servers):
                await asyncio.get_running_loop().run_in_executor(
                    pool, functools.partial(consumer.commit, message=message, asynchronous=False)
                )
        except RuntimeError as exc:  # its consumer was closed or replaced (a rejoin after a broker restart)
            raise DependencyUnavailable(
                f"Kafka at {self.servers}: the consumer that took this message is gone ({exc}); it is delivered again"
            ) from exc

    async def create_topics(self, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> list[str]:
        """Create the topics that do not exist yet; returns the names created."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.servers, **self.extra})
        with _translated(self.servers):
            existing = set((await asyncio.to_thread(admin.list_topics, timeout=timeout_s)).topics)
        wanted = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                config=dict(s.config or {}),
            )
            for s in specs
            if s.name not in existing
        ]
        if not wanted:
            return []
        futures = admin.create_topics(wanted, operation_timeout=timeout_s)
        for future in futures.values():
            with _translated(self.servers):
                await asyncio.to_thread(future.result, timeout_s)
        return list(futures)

    async def close(self) -> None:
        for producer in {*self._producers.values(), self._tx_producer}:
            if producer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(producer.flush, 10)
        self._closing.set()
        self._directory.close()
        for thread in self._pollers:
            await asyncio.to_thread(thread.join, 2)
