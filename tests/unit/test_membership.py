"""The consumer-group state machine (buses/membership.py), one transition per test."""

from __future__ import annotations

from ragline.adapters.buses.group_directory import _apply
from ragline.adapters.buses.membership import Action, Membership, State, group_name

LIMIT = 10.0


def member(now: float = 0.0) -> Membership:
    return Membership("rag-ingest", LIMIT, now, jitter=1.0)


def test_a_new_member_is_joining_and_steady_once_librdkafka_says_so():
    m = member()
    assert m.state is State.JOINING and m.group == "rag-ingest"
    m.on_statistics("steady", True, 1.0)
    assert m.state is State.STEADY
    assert m.decide(100.0, 0).action is Action.KEEP  # steady for ever is fine


def test_a_member_that_never_settles_moves_the_stage_to_the_next_generation():
    m = member()
    m.on_statistics("wait-sync", True, 1.0)
    assert m.decide(LIMIT - 1, 0).action is Action.KEEP
    decision = m.decide(LIMIT + 1, 0)
    assert decision.action is Action.MOVE and decision.generation == 1
    assert "did not settle" in decision.why and "wait-sync" in decision.why


def test_ghost_leader_a_group_cycling_join_and_sync_is_moved_not_replaced_in_place():
    # Tansu naming a departed leader: members cycle wait-join -> wait-sync without end;
    # replacing a member adds members to the same broken group, a move leaves it behind
    m = member()
    for t in range(0, 12):
        m.on_statistics("wait-join" if t % 2 else "wait-sync", True, float(t))
    decision = m.decide(12.0, 0)
    assert decision.action is Action.MOVE and decision.generation == 1
    m.moved(1, 12.5, cure=True)
    assert m.group == group_name("rag-ingest", 1) == "rag-ingest.moved1"
    assert m.state is State.JOINING and m.decide(13.0, 1).action is Action.KEEP


def test_brokers_lost_replaces_the_consumer_at_once_in_the_same_group():
    m = member()
    m.on_statistics("steady", True, 1.0)
    assert m.decide(1.5, 0).action is Action.KEEP
    m.on_brokers_down(2.0)
    assert m.state is State.BROKERS_LOST
    decision = m.decide(2.1, None)  # while they are still down: drop it before it can rejoin
    assert decision.action is Action.REPLACE and decision.generation == 0
    m.replaced(61.0)  # once they answered (a long outage is not a stuck group)
    assert m.state is State.JOINING and m.group == "rag-ingest"
    assert m.decide(61.0 + LIMIT - 1, 0).action is Action.KEEP  # it has a whole limit to join


def test_statistics_without_a_live_broker_count_as_brokers_lost():
    m = member()
    m.on_statistics("steady", True, 1.0)
    m.on_statistics("steady", False, 2.0)  # error_cb can stay silent through an outage
    assert m.state is State.BROKERS_LOST


def test_old_consumer_already_rejoined_the_restarted_broker_is_still_replaced():
    # the worker polled only after librdkafka had rejoined by itself; its fetch queue still
    # holds the old log's messages, whose offsets the new log reuses
    m = member()
    m.on_statistics("steady", True, 1.0)
    m.on_statistics("steady", False, 2.0)  # statistics: no broker up (error_cb silent)
    m.on_statistics("steady", True, 5.0)
    assert m.state is State.STEADY
    assert m.decide(5.1, 0).action is Action.REPLACE
    m.replaced(5.2)
    assert m.decide(5.3, 0).action is Action.KEEP  # replaced once, not again


def test_a_peer_replacing_itself_starts_a_rebalance_clock_now_not_at_the_last_steady():
    m = member()
    m.on_statistics("steady", True, 1.0)
    m.on_statistics("steady", True, 50.0)
    m.on_statistics("wait-join", True, 51.0)  # a peer joined: rebalance
    assert m.state is State.JOINING and m.since == 51.0
    assert m.decide(51.0 + LIMIT - 1, 0).action is Action.KEEP


def test_a_peer_that_moved_the_stage_is_followed_at_once():
    m = member()
    m.on_statistics("steady", True, 1.0)
    decision = m.decide(2.0, 3)
    assert decision.action is Action.MOVE and decision.generation == 3
    m.moved(3, 2.0, cure=False)
    assert m.group == "rag-ingest.moved3" and m.failed_moves == 0


def test_a_directory_lost_with_an_empty_broker_moves_nobody_until_the_replacement():
    # members following it down one by one would split the stage between two groups; each
    # is replaced after the brokers were lost anyway, and joins the directory's group then
    m = member()
    m.moved(2, 0.0, cure=False)
    assert m.decide(1.0, 0).action is Action.KEEP
    m.on_brokers_down(2.0)
    assert m.decide(2.1, None).action is Action.REPLACE
    m.replaced(5.0, 0)  # the directory went with the broker: the base group, for all alike
    assert m.group == "rag-ingest" and m.state is State.JOINING


def test_a_replacement_with_an_unreadable_directory_keeps_its_group():
    m = member()
    m.moved(2, 0.0, cure=False)
    m.on_brokers_down(1.0)
    m.replaced(3.0, None)
    assert m.group == "rag-ingest.moved2"


def test_an_unreadable_directory_moves_nobody():
    m = member()
    m.moved(2, 0.0, cure=False)
    assert m.decide(1.0, None).action is Action.KEEP


def test_moves_that_do_not_settle_back_off_and_a_steady_group_resets_the_backoff():
    m = member()
    m.moved(1, 0.0, cure=True)
    assert m.limit_s() >= 2 * LIMIT
    m.moved(2, 0.0, cure=True)
    m.moved(3, 0.0, cure=True)
    m.moved(4, 0.0, cure=True)
    assert 8 * LIMIT <= m.limit_s() <= 8 * LIMIT * 1.5  # capped
    m.on_statistics("steady", True, 1.0)
    assert m.limit_s() == LIMIT * m._jitter


def test_between_revocation_and_join_the_clock_waits():
    m = member()
    m.on_statistics("init", True, 30.0)  # not waiting on the group yet
    assert m.decide(30.0 + LIMIT - 1, 0).action is Action.KEEP


def test_the_directory_keeps_the_highest_generation_per_group_and_skips_junk():
    generations: dict[str, int] = {}
    for raw in [
        b'{"group": "rag-ingest", "generation": 2}',
        b'{"group": "rag-ingest", "generation": 1}',  # a late duplicate of an older move
        b'{"group": "rag-retrieve", "generation": 1}',
        b"not json",
        None,
        b'{"generation": 5}',
    ]:
        _apply(generations, raw)
    assert generations == {"rag-ingest": 2, "rag-retrieve": 1}
