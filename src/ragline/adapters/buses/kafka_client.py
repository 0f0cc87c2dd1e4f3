"""The Kafka bus's connection and producing side: producers (idempotent, acks=all,
linger.ms=5; the request-reply topics get their own with linger 0), healing after a
failed publish, topic creation, transactions. ``KafkaBus`` (kafka.py) adds the consumers.

Healing. A publish not acknowledged within ``publish_timeout_ms`` fails with
DependencyUnavailable (the API answers 503: nothing is accepted that the broker did not
take). When that happens while the broker answers metadata requests, the producer is
wedged (an idempotent producer whose broker came back without its state waits forever:
measured with Tansu, which keeps topics in memory) and is replaced by a new one, and the
topics missing from ``topic_specs`` are re-created with their configured partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ragline.adapters.buses.group_directory import GroupDirectory
from ragline.core.errors import ConfigurationError, DependencyUnavailable
from ragline.core.ports import Delivery, TopicSpec
from ragline.settings import default


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


class KafkaClient:
    """What both sides share: the connection settings, the producers, the topics."""

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

    async def ping(self, timeout_s: float = 2.0) -> None:
        """Raise DependencyUnavailable unless the broker answers a metadata request."""
        producer = self._producers["batch"]
        with _translated(self.servers):
            await asyncio.to_thread(producer.list_topics, timeout=timeout_s)

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
