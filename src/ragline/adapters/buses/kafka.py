"""The Kafka bus over confluent-kafka: ``KafkaBus`` is ``KafkaClient`` (kafka_client.py:
producers, healing after a failed publish, topics, transactions) plus the consumers.

Consumers: one per ``consume`` call, in a consumer group, auto-commit off; ``commit``
commits a message's offset synchronously, so a stage commits only after its output is
produced. Blocking client calls run in each consumer's own threads. Each group member's
handling is a ``Membership`` (membership.py: replaced after its brokers were lost, moved
to a new group when its group does not settle); consumers re-create the topics a broker
lost, and rebuild themselves after a fatal error instead of ending. A ``tail`` reads a
topic without a group (the gateway's replies). Tansu workarounds live in tansu.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ragline.adapters.buses import tansu
from ragline.adapters.buses.kafka_client import KafkaClient, _log, _translated
from ragline.adapters.buses.membership import Action, Membership
from ragline.adapters.buses.tansu import PastEnd as _PastEnd
from ragline.core.errors import DependencyUnavailable
from ragline.core.ports import Delivery, TopicSpec

__all__ = ["KafkaBus", "TopicSpec"]


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


class KafkaBus(KafkaClient):
    name = "kafka"

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
