"""The Kafka bus over confluent-kafka.

Producer: idempotent, acks=all, linger.ms=5 (transactions can be switched on for
brokers that support them). Consumers: one per ``consume`` call, in a consumer
group, auto-commit off; ``commit`` commits a message's offset synchronously, so a
stage commits only after its output is produced. Blocking client calls run in
threads; delivery reports are served by a polling thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DependencyUnavailable
from ..ports import Delivery


@contextlib.contextmanager
def _translated(servers: str) -> Iterator[None]:
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as exc:
        raise DependencyUnavailable(f"Kafka at {servers}: {exc}") from exc
    except BufferError as exc:
        raise DependencyUnavailable(f"Kafka producer queue full ({servers}): {exc}") from exc


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 6
    replication_factor: int = 1
    config: Mapping[str, str] | None = None


class KafkaBus:
    def __init__(self, bootstrap_servers: str, *, client_id: str = "ragline", session_timeout_ms: int = 6000,
                 fetch_wait_max_ms: int = 20, poll_s: float = 0.1, extra: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka import Producer

        self.servers = bootstrap_servers
        self.client_id = client_id
        self.session_timeout_ms = session_timeout_ms
        self.fetch_wait_max_ms = fetch_wait_max_ms
        self.poll_s = poll_s
        self.extra = dict(extra or {})
        self._producer = Producer({
            "bootstrap.servers": bootstrap_servers, "client.id": client_id, "enable.idempotence": True,
            "acks": "all", "linger.ms": 5, "message.timeout.ms": 30_000, **self.extra})
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._serve_delivery_reports, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    def _serve_delivery_reports(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)

    async def publish(self, topic: str, value: bytes, key: bytes | None = None,
                      headers: Mapping[str, bytes] | None = None) -> None:
        """Returns once the broker has acknowledged the message (acks=all)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def report(err, msg) -> None:
            outcome = (lambda: done.set_exception(DependencyUnavailable(f"Kafka at {self.servers}: {err}"))) \
                if err is not None else (lambda: done.set_result(None))
            loop.call_soon_threadsafe(lambda: None if done.done() else outcome())

        with _translated(self.servers):
            self._producer.produce(topic, value=value, key=key, headers=list((headers or {}).items()),
                                   on_delivery=report)
        await done

    async def consume(self, topics: Sequence[str], group: str) -> AsyncIterator[Delivery]:
        from confluent_kafka import Consumer, KafkaError

        consumer = Consumer({
            "bootstrap.servers": self.servers, "client.id": self.client_id, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms, "heartbeat.interval.ms": max(100, self.session_timeout_ms // 5),
            "fetch.wait.max.ms": self.fetch_wait_max_ms, **self.extra})
        consumer.subscribe(list(topics))
        try:
            while True:
                message = await asyncio.to_thread(consumer.poll, self.poll_s)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                        continue
                    raise DependencyUnavailable(f"Kafka at {self.servers}: {message.error()}")
                yield Delivery(message.topic(), message.key(), message.value() or b"",
                               {k: v or b"" for k, v in (message.headers() or [])},
                               message.partition(), message.offset(), handle=(consumer, message))
        finally:
            await asyncio.to_thread(consumer.close)

    async def commit(self, delivery: Delivery) -> None:
        consumer, message = delivery.handle
        with _translated(self.servers):
            await asyncio.to_thread(consumer.commit, message=message, asynchronous=False)

    async def create_topics(self, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> list[str]:
        """Create the topics that do not exist yet; returns the names created."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.servers, **self.extra})
        existing = set((await asyncio.to_thread(admin.list_topics, timeout=timeout_s)).topics)
        wanted = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                           config=dict(s.config or {})) for s in specs if s.name not in existing]
        if not wanted:
            return []
        futures = admin.create_topics(wanted, operation_timeout=timeout_s)
        for name, future in futures.items():
            with _translated(self.servers):
                await asyncio.to_thread(future.result, timeout_s)
        return list(futures)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._producer.flush, 10)
        self._closing.set()
        await asyncio.to_thread(self._poller.join, 2)

