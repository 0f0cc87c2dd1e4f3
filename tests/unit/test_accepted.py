"""The gateway's spool of accepted writes (ragline/service/accepted.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from ragline import DependencyUnavailable
from ragline.service.accepted import AcceptedSpool, Entry, new_token


def entry(key: str, value: bytes = b"{}", age_s: float = 0.0) -> Entry:
    return Entry(key, new_token(), "rag-docs", value, {"h": b"\x00\x01"}, time.time() - age_s)


def test_a_kept_write_survives_a_new_spool_on_the_same_directory_byte_for_byte(tmp_path):
    kept = entry("t/a", b"\xff binary \x00")
    AcceptedSpool(tmp_path).keep([kept])
    assert AcceptedSpool(tmp_path).entries() == [kept]


def test_a_receipt_removes_its_write_but_not_a_newer_write_of_the_same_document(tmp_path):
    spool = AcceptedSpool(tmp_path)
    old, new = entry("t/a"), entry("t/a")
    spool.keep([old])
    spool.keep([new])  # the document written again before the first receipt came
    assert spool.pending == 1
    assert not spool.confirm("t/a", old.token)
    assert spool.entries() == [new]
    assert spool.confirm("t/a", new.token) and spool.pending == 0
    assert not spool.confirm("t/a", new.token)  # a second receipt (a redelivery): nothing left


def test_entries_come_oldest_first_and_only_those_old_enough(tmp_path):
    spool = AcceptedSpool(tmp_path)
    spool.keep([entry("t/new", age_s=1), entry("t/old", age_s=500), entry("t/mid", age_s=100)])
    assert [e.key for e in spool.entries()] == ["t/old", "t/mid", "t/new"]
    assert [e.key for e in spool.entries(older_than_s=60)] == ["t/old", "t/mid"]


def test_past_its_bound_the_spool_refuses_more_with_a_retryable_error(tmp_path):
    spool = AcceptedSpool(tmp_path, max_bytes=2000)
    spool.keep([entry("t/a", b"x" * 1000)])
    spool.room_for(10)
    with pytest.raises(DependencyUnavailable, match="waiting for the ingest workers"):
        spool.room_for(1000)


def test_a_torn_file_is_moved_aside_not_sent(tmp_path):
    spool = AcceptedSpool(tmp_path)
    spool.keep([entry("t/a"), entry("t/b")])
    torn = next(tmp_path.glob("*.json"))
    torn.write_bytes(b'{"key": "t/')
    assert len(spool.entries()) == 1
    assert len(list(tmp_path.glob("*.bad"))) == 1


def test_a_write_the_broker_refused_is_dropped_and_the_accepted_one_it_replaced_put_back(tmp_path):
    spool = AcceptedSpool(tmp_path)
    accepted = entry("t/a", b"v1")
    spool.keep([accepted])
    refused = entry("t/a", b"v2")
    replaced = spool.keep([refused, entry("t/b")])
    spool.restore([refused], replaced)
    assert [e.value for e in spool.entries()] == [b"v1", b"{}"]


def test_a_write_overtaken_by_a_confirmed_later_one_is_due_again_at_once(tmp_path):
    spool = AcceptedSpool(tmp_path)
    skipped, slow, later = entry("t/skipped", age_s=30), entry("t/slow", age_s=5), entry("t/later", age_s=2)
    spool.keep([skipped, slow, later])
    assert spool.overtaken(10) == []  # nothing confirmed yet: nothing to compare with
    spool.confirm("t/later", later.token)
    assert [e.key for e in spool.overtaken(10)] == ["t/skipped"]  # "slow" is within the margin


async def test_a_write_still_unconfirmed_is_sent_again_ever_less_often_until_the_bus_comes_back(tmp_path):
    """Unconfirmed can mean behind: sending every waiting write again each round fed on
    itself (a 70 s Milvus outage left ingestion thousands of copies behind). A write
    sent again n times waits resend_after_s x 2^n; a bus that came back resets it."""
    from ragline.adapters.buses.memory import MemoryBus
    from ragline.service.gateway import Gateway
    from ragline.service.protocol import Topics

    bus = MemoryBus()
    spool = AcceptedSpool(tmp_path)
    spool.keep([entry("t/waiting", age_s=60)])
    gateway = Gateway(bus, Topics(), spool=spool, resend_after_s=0.2)
    sent = []
    for _ in range(24):  # 2.4 s of rounds every 0.1 s: due at 0, then 0.2, 0.4, 0.8 s after each
        sent.append(await gateway.resend(0.0, "test"))
        await asyncio.sleep(0.1)
    assert 3 <= sum(sent) <= 5, sent  # every 0.2 s it would be 8 or more
    assert sent[0] == 1 and sent[1] == 0
    assert await gateway.resend(0.0, "the bus came back", everything=True) == 1
    assert await gateway.resend(0.0, "test") == 0  # just sent: the count starts again
