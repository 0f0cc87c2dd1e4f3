"""The group directory: which consumer group each stage uses now, kept in a topic.

A stage's group moves when it does not settle (buses/membership.py): the member that
decides publishes ``{"group": BASE, "generation": N, ...}`` to the directory topic
(``rag-groups``, one partition) after committing the old group's offsets to the new one,
and every member of the stage follows once it reads it. The directory is read whole
(it holds a few records per move) by one thread per bus, every ``refresh_s``; the
consumers' poll loops only look at what it read last, so a slow or dead broker never
holds a poll (measured: reading it inline slowed recovery from a broker restart from
~2.5 s to ~8 s).

Moves agree without a vote: two members that decide at once both move generation N to
N+1, whose name is fixed (``group_name``), and the highest generation wins. A broker that
comes back empty has lost the directory with the groups: every stage goes back to its
base group, which is as new there as any other.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ragline.adapters.buses import tansu
from ragline.adapters.buses.membership import group_name

_log = logging.getLogger("ragline.kafka")


class GroupDirectory:
    def __init__(self, servers: str, topic: str, extra: Mapping[str, Any], refresh_s: float = 1.0) -> None:
        self.servers = servers
        self.topic = topic
        self.extra = dict(extra)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one read at a time (one consumer object)
        self._consumer: Any = None
        self._producer: Any = None
        self._generations: dict[str, int] | None = None
        self._reader: threading.Thread | None = None
        self._closing = threading.Event()
        self._published: dict[str, tuple[int, float]] = {}  # this process's moves: (generation, when)

    def generation(self, base: str) -> int | None:
        """The stage's current generation (0 when never moved), as last read; None when the
        last read failed or none finished yet (the caller keeps its group). Never blocks."""
        if self._reader is None:
            with self._lock:
                if self._reader is None:
                    self._reader = threading.Thread(target=self._read_forever, daemon=True, name="kafka-directory")
                    self._reader.start()
        generations = self._generations
        return None if generations is None else generations.get(base, 0)

    def _read_forever(self) -> None:
        while not self._closing.is_set():
            self.refresh()
            self._closing.wait(self.refresh_s)
        self._drop_consumer()

    def refresh(self) -> dict[str, int] | None:
        """Read the directory now (blocking); what ``generation`` answers from then on."""
        with self._reading:
            started = time.monotonic()
            read = self._read()
            with self._lock:
                if read is not None:
                    # a move this process published after the read began is newer than the read
                    late = {b: g for b, (g, at) in self._published.items() if at >= started and g > read.get(b, 0)}
                    read = {**read, **late}
                self._generations = read
            return read

    def close(self) -> None:
        self._closing.set()

    def _read(self) -> dict[str, int] | None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        try:
            if self._consumer is None:
                self._consumer = Consumer(
                    {
                        "bootstrap.servers": self.servers,
                        "group.id": f"ragline-directory-{uuid.uuid4().hex[:12]}",  # never joined or committed
                        "enable.auto.commit": False,
                        "enable.partition.eof": True,
                        "fetch.wait.max.ms": 10,
                        **self.extra,
                    }
                )
            consumer = self._consumer
            metadata = consumer.list_topics(self.topic, timeout=2)
            info = metadata.topics.get(self.topic)
            if info is None or info.error is not None:
                # no directory: an empty broker (created again from its spec by ensure_topics)
                # or one never moved; either way every stage is in its base group
                return {}
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=2)
            generations: dict[str, int] = {}
            if high <= low:
                return generations
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        break
                    continue
                _apply(generations, message.value())
                if message.offset() >= high - 1:
                    break
            else:
                return None  # not read to its end: keep what each consumer has
            return generations
        except Exception as exc:  # the broker is down: nobody moves
            _log.info("group directory %r unreadable (%s)", self.topic, exc)
            self._drop_consumer()
            return None

    def _drop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:  # closing a consumer whose broker is gone
                pass

    def move(
        self,
        base: str,
        generation: int,
        topics: Sequence[str],
        old_group: str,
        why: str,
    ) -> bool:
        """Move ``base``'s stage to ``generation``: copy ``old_group``'s committed offsets of
        ``topics`` to the new group, then publish the record. Blocking, with clients of its
        own (never the moving consumer's, which goes on polling meanwhile: a poll loop held
        here kept its group from forming). Returns whether the record was published (False:
        try again later)."""
        from confluent_kafka import Consumer, Producer, TopicPartition

        new = group_name(base, generation)
        committed: list[Any] = []
        old_consumer = Consumer({"bootstrap.servers": self.servers, "group.id": old_group, **self.extra})
        carried = ""
        try:
            partitions = []
            for topic in topics:
                info = old_consumer.list_topics(topic, timeout=2).topics.get(topic)
                if info is not None and info.error is None:
                    partitions += [TopicPartition(topic, p) for p in sorted(info.partitions)]
            committed = [tp for tp in old_consumer.committed(partitions, timeout=5) if tp.offset >= 0]
            # each carried offset with where its log ends: an offset past the end would skip
            # what is written up to it (said in the log, and not carried)
            ends = {(tp.topic, tp.partition): old_consumer.get_watermark_offsets(tp, timeout=2)[1] for tp in committed}
            for tp in committed:  # Tansu's listed end can be short of the real one: read it
                if tp.offset > ends[(tp.topic, tp.partition)]:
                    listed = ends[(tp.topic, tp.partition)]
                    ends[(tp.topic, tp.partition)] = tansu.log_end(
                        self.servers, self.extra, tp.topic, tp.partition, listed
                    )
            past = [tp for tp in committed if tp.offset > ends[(tp.topic, tp.partition)]]
            if past:
                _log.error(
                    "group %r: committed offsets past the end of their logs, not carried: %s",
                    base,
                    ", ".join(f"{_at(tp)} (end {ends[tp.topic, tp.partition]})" for tp in past),
                )
                committed = [tp for tp in committed if tp not in past]
            carried = ", ".join(f"{_at(tp)}/{ends[tp.topic, tp.partition]}" for tp in committed)
            if committed:
                seeder = Consumer({"bootstrap.servers": self.servers, "group.id": new, **self.extra})
                try:  # generation-less: accepted while the new group has no members
                    seeder.commit(offsets=committed, asynchronous=False)
                except Exception as exc:  # a peer's move got there first: its members commit
                    _log.info("offsets for group %r not copied (%s)", new, exc)
                finally:
                    seeder.close()
            record = {"group": base, "generation": generation, "name": new, "why": why, "offsets": len(committed)}
            if self._producer is None:
                self._producer = Producer(
                    {"bootstrap.servers": self.servers, "acks": "all", "message.timeout.ms": 5000, **self.extra}
                )
            failed: list[Any] = []
            self._producer.produce(
                self.topic,
                json.dumps(record).encode(),
                key=base.encode(),
                on_delivery=lambda error, _: failed.append(error) if error else None,
            )
            if self._producer.flush(6) != 0 or failed:
                self._producer = None  # a producer whose broker came back empty: a new one next time
                raise RuntimeError(f"not acknowledged: {failed or 'timeout'}")
        except Exception as exc:
            _log.warning("group %r not moved to %r (%s)", base, new, exc)
            return False
        finally:
            old_consumer.close()  # never subscribed: no group to leave
        with self._lock:
            self._published[base] = (generation, time.monotonic())
            if self._generations is not None:
                self._generations = {**self._generations, base: max(self._generations.get(base, 0), generation)}
        _log.warning("group %r moved to %r: %s (offsets carried, offset/end: %s)", base, new, why, carried or "none")
        return True


def _apply(generations: dict[str, int], raw: bytes | None) -> None:
    try:
        record = json.loads(raw or b"")
        base, generation = str(record["group"]), int(record["generation"])
    except (ValueError, KeyError, TypeError):
        return  # not a directory record: ignored
    generations[base] = max(generations.get(base, 0), generation)


def _at(tp: Any) -> str:
    return f"{tp.topic}[{tp.partition}]@{tp.offset}"
