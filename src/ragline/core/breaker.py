"""A circuit breaker: stop paying a dead dependency's timeout on every call.

After ``failures_to_open`` consecutive failures the breaker opens: ``allow()`` says no
for ``open_s`` seconds. Then calls are let through again (half-open); a success
closes it, a failure opens it anew. State changes are logged and reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("ragline.breaker")


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failures_to_open: int = 3,
        open_s: float = 5.0,
        on_state_change: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self.on_state_change = on_state_change
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self.opened_at < self.open_s else "half-open"

    def allow(self) -> bool:
        return self.state != "open"

    def failure(self, error: Exception) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open and self.state != "open":
            self.opened_at = time.monotonic()
            log.warning("%s unavailable (%s); skipping it for %.0fs", self.name, error, self.open_s)
            self._report("open")

    def success(self) -> None:
        was_open = self.opened_at is not None
        self.failures, self.opened_at = 0, None
        if was_open:
            log.warning("%s is back", self.name)
            self._report("closed")

    def _report(self, state: str) -> None:
        if self.on_state_change is not None:
            self.on_state_change(state)
