"""One stage consumer's place in its consumer group, as an explicit state machine.

Pure: it is told what librdkafka reported (statistics, errors) and what the group
directory says, and answers what the consumer must do next; it touches no client, so
every transition has a unit test (tests/unit/test_membership.py). ``KafkaBus.consume``
feeds it from two threads (librdkafka's callbacks and the poll loop), so every method
takes one lock.

States:

- ``JOINING``: between subscribing (or a rebalance starting) and the group settling.
- ``STEADY``: librdkafka's join state is "steady" (the group formed, partitions held).
- ``BROKERS_LOST``: every broker connection is down.

What the consumer does (``Decision``):

- ``KEEP``: go on polling.
- ``REPLACE``: the brokers were lost: the consumer is dropped at once without a
  LeaveGroup, and a new one joins the same group once they answer again.
- ``MOVE``: leave this group for the directory's newer one (a peer moved the stage), or
  move the stage to a new group because this one did not settle in time.

A directory lower than the consumer's generation (an empty broker lost it) moves nobody
by itself: every member is replaced after the brokers were lost, and the replacement
joins the group the directory names then (the base group), all members alike.

Why replace, rather than keep a consumer that librdkafka rejoins by itself: its fetch
queue still holds messages of the old log, delivered after the new assignment, whose
offsets the empty broker's new log reuses; committing one moves the new group past
messages nobody read (our reading of what we measured: a kept consumer lost 11 and 58
accepted documents in two of two broker restarts on the stack; a replaced one, 0 in 20).
Why at once, while the brokers are still gone: a consumer kept until they answer
rejoins the restarted broker first, and once dropped lingers in the new group until its
session expires (measured: groups then took 8-10 s to settle, and were moved). Why
without a LeaveGroup: the worker notices the loss only when it polls, so the old member
may already have rejoined the restarted broker and been elected leader, and Tansu
(0.6.0, commit 510f3e2), told that the leader of a forming group left, keeps naming it
leader for ever: the ghost leader (its Forming state's leave does not reset the leader);
a dropped member is evicted when its session expires, which does reset it. A group that
still does not settle, whatever the coordinator's state, is cured by moving every member
of the stage to a fresh group whose name the group directory holds (group_directory.py):
a new group has no coordinator state to be stuck in, and the committed offsets go with
the move.
"""

from __future__ import annotations

import enum
import random
import threading
from dataclasses import dataclass


class State(enum.Enum):
    JOINING = "joining"
    STEADY = "steady"
    BROKERS_LOST = "brokers lost"


class Action(enum.Enum):
    KEEP = "keep"
    REPLACE = "replace"
    MOVE = "move"


@dataclass(frozen=True)
class Decision:
    action: Action
    generation: int = 0  # the directory generation to move to
    why: str = ""


KEEP = Decision(Action.KEEP)

# librdkafka join states in which a member is not waiting on the group
_SETTLED_JOIN_STATES = frozenset({"steady"})
_IDLE_JOIN_STATES = frozenset({"init", None})


def group_name(base: str, generation: int) -> str:
    """The consumer group of directory generation ``generation`` (0: the base name)."""
    return base if generation <= 0 else f"{base}.moved{generation}"


class Membership:
    """The state machine of one stage consumer (see the module doc).

    ``unsettled_limit_s``: how long a member may stay out of "steady" (a rebalance) before
    it moves the stage to a new group; each move that is not followed by a steady group
    doubles it (up to 8x) with jitter, so members that keep failing do not move the stage
    in lock-step for ever."""

    def __init__(self, base_group: str, unsettled_limit_s: float, now: float, jitter: float | None = None) -> None:
        self.base = base_group
        self.generation = 0  # the directory generation this consumer's group belongs to
        self.state = State.JOINING
        self.since = now  # when the current state began
        self.unsettled_limit_s = unsettled_limit_s
        self.failed_moves = 0  # moves since the last steady group
        self.moves = 0
        self.join_state: str | None = "no statistics yet"
        self.brokers_were_lost = False  # latched until the poll loop saw them answer again
        self._jitter = random.uniform(1.0, 1.5) if jitter is None else jitter
        self._lock = threading.Lock()

    @property
    def group(self) -> str:
        return group_name(self.base, self.generation)

    def limit_s(self) -> float:
        return self.unsettled_limit_s * min(8, 2**self.failed_moves) * self._jitter

    # events (librdkafka's threads)

    def on_statistics(self, join_state: str | None, brokers_up: bool | None, now: float) -> None:
        """A statistics report: the group's join state; whether any broker is up (None: no
        brokers listed)."""
        with self._lock:
            self.join_state = join_state
            if brokers_up is False:
                self._enter(State.BROKERS_LOST, now)
            elif join_state in _SETTLED_JOIN_STATES:
                self.failed_moves = 0
                self._enter(State.STEADY, now)
            elif join_state in _IDLE_JOIN_STATES:
                # between a revocation and the next join: not waiting on the group yet
                if self.state is not State.BROKERS_LOST:
                    self.since = now
            elif self.state is not State.JOINING:
                # a rebalance began (a peer joined, left or was replaced), or the brokers
                # answer again and the member rejoins: the clock starts now
                self._enter(State.JOINING, now)

    def on_brokers_down(self, now: float) -> None:
        """librdkafka said every broker is down (error_cb)."""
        with self._lock:
            self._enter(State.BROKERS_LOST, now)

    def replaced(self, now: float, directory_generation: int | None = None) -> None:
        """A new consumer once the brokers answered, in the group the directory names now
        (``directory_generation``; None: unreadable, the same group): it has a whole limit
        to join."""
        with self._lock:
            self.brokers_were_lost = False
            if directory_generation is not None:
                self.generation = directory_generation
            self._enter(State.JOINING, now, force=True)

    # the poll loop's question

    def decide(self, now: float, directory_generation: int | None) -> Decision:
        """What the consumer does now. ``directory_generation``: the stage's generation in
        the group directory (None: the directory could not be read)."""
        with self._lock:
            if self.brokers_were_lost:
                return Decision(Action.REPLACE, self.generation, "the brokers were lost")
            if directory_generation is not None and directory_generation > self.generation:
                why = f"the stage's group is now generation {directory_generation}"
                return Decision(Action.MOVE, directory_generation, why)  # a peer moved the stage: follow
            if self.state is State.JOINING and now - self.since > self.limit_s():
                return Decision(
                    Action.MOVE,
                    self.generation + 1,
                    f"group {self.group!r} did not settle in {now - self.since:.1f} s ({self.join_state})",
                )
            return KEEP

    def moved(self, generation: int, now: float, cure: bool) -> None:
        """The consumer now belongs to ``generation``'s group; ``cure``: this move was made
        because the group did not settle (counts toward the backoff)."""
        with self._lock:
            self.generation = generation
            self.moves += 1
            if cure:
                self.failed_moves += 1
                self._jitter = random.uniform(1.0, 1.5)
            self._enter(State.JOINING, now, force=True)

    def _enter(self, state: State, now: float, force: bool = False) -> None:
        if state is State.BROKERS_LOST:
            self.brokers_were_lost = True
        if force or state is not self.state:
            self.state = state
            self.since = now
