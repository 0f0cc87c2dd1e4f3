"""Tansu never answers OFFSET_OUT_OF_RANGE: a fetch position past the end of a log waits
for ever. _PastEnd finds such positions in librdkafka's statistics reports."""

from __future__ import annotations

from ragline.adapters.buses.kafka import _PastEnd


def report(**partitions: tuple[int, int, str]) -> dict:
    """{"t-0": (next_offset, hi_offset, fetch_state)} as librdkafka's statistics JSON."""
    topics: dict = {}
    for name, (position, high, state) in partitions.items():
        topic, number = name.rsplit("_", 1)
        topics.setdefault(topic, {"partitions": {}})["partitions"][number] = {
            "next_offset": position,
            "hi_offset": high,
            "lo_offset": 0,
            "fetch_state": state,
        }
    topics.setdefault("work", {"partitions": {}})["partitions"]["-1"] = {"fetch_state": "none"}  # the UA partition
    return {"topics": topics}


def test_a_position_past_the_end_in_two_reports_in_a_row_is_stuck():
    past_end = _PastEnd()
    assert past_end.observe(report(work_0=(94, 5, "active"), work_1=(3, 3, "active"))) == []
    assert past_end.observe(report(work_0=(94, 6, "active"), work_1=(3, 4, "active"))) == [("work", 0, 94, 0)]


def test_a_position_that_moved_or_caught_up_is_not_stuck():
    past_end = _PastEnd()
    past_end.observe(report(work_0=(94, 5, "active")))
    assert past_end.observe(report(work_0=(95, 5, "active"))) == []  # it read on: not the same stall
    past_end.observe(report(work_0=(7, 5, "active")))
    assert past_end.observe(report(work_0=(7, 7, "active"))) == []  # the log reached it


def test_unknown_watermarks_and_inactive_partitions_are_not_judged():
    past_end = _PastEnd()
    for _ in range(2):
        assert past_end.observe(report(work_0=(94, -1, "active"), work_1=(94, 5, "stopped"))) == []
