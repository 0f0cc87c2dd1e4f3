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
