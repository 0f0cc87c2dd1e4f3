"""Tansu workarounds that more than one Kafka client here needs (named as such).

Tansu's in-memory storage (510f3e2; upstream ``dynostore.rs`` ``list_offsets`` the same)
answers ListOffsets "latest" with the base offset of the newest record batch plus one:
short of the log's end whenever that batch holds more than one record. What
``get_watermark_offsets`` returns for the high end is therefore a lower bound there, and
"an offset past the end of its log" read from it can be a live offset (seen: "committed 8,
log ends at 5" with no restart). ``log_end`` reads the real end from a fetch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any


def log_end(
    servers: str, extra: Mapping[str, Any], topic: str, partition: int, listed: int, timeout_s: float = 2.0
) -> int:
    """The end of ``topic[partition]``'s log (the offset its next record gets), given the
    ``listed`` high end a ListOffsets gave: read from the newest batch it points at up to
    the end-of-partition event. At least ``listed``; ``listed`` itself when the read times out."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    probe = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"ragline-probe-{uuid.uuid4().hex[:12]}",  # never joins: assign only
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            **extra,
        }
    )
    end = listed
    try:
        probe.assign([TopicPartition(topic, partition, max(0, listed - 1))])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = probe.poll(0.1)
            if message is None:
                continue
            error, offset = message.error(), message.offset()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and offset is not None:
                    return max(end, offset)
                continue
            if offset is not None:
                end = max(end, offset + 1)
        return end
    finally:
        probe.close()


class PastEnd:
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
