"""ragline's one error tree.

    RaglineError
     +-- RetryableError        the same call may succeed later: retry with backoff
     |    +-- DependencyUnavailable   a store, broker, cache or LLM cannot be reached
     |    +-- DependencyTimeout       it answered too slowly
     |    +-- Overloaded              a bulkhead's queue is full: refused at once
     |    +-- RateLimited             the caller sent too much; retry after a while
     +-- PermanentError        retrying cannot help: report it or dead-letter it
          +-- InvalidInput            malformed request, message or document
          +-- DocumentError           one document could not be loaded (binary, empty, too big...)
          +-- NotFound
          +-- ConfigurationError      settings that cannot work
          +-- Unauthorized / Forbidden

Each adapter maps its vendor's exceptions into this tree in one place; the workers
retry only ``RetryableError`` and send everything else to the dead-letter topic.
"""

from __future__ import annotations


class RaglineError(Exception):
    """Base of every error ragline raises on purpose."""


class RetryableError(RaglineError):
    """A transient failure: the same call may succeed later."""


class DependencyUnavailable(RetryableError):
    """A dependency (Milvus, Kafka, Redis, the LLM) cannot be reached."""


class DependencyTimeout(RetryableError):
    """A dependency answered too slowly."""


class Overloaded(DependencyUnavailable):
    """A bulkhead (see bulkhead.py) is full: the request is refused now rather than queued."""

    retry_after_s = 1.0

    def __init__(self, name: str, capacity: int) -> None:
        super().__init__(f"ragline is busy: the {name} queue is full ({capacity} waiting or running); retry shortly")
        self.bulkhead = name
        self.capacity = capacity

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return type(self), (self.bulkhead, self.capacity)


class RateLimited(RetryableError):
    """Too many requests from one caller; try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return type(self), (self.retry_after_s,)


class PermanentError(RaglineError):
    """Retrying cannot help."""


class InvalidInput(PermanentError):
    """A malformed request, message or argument."""


class TooLarge(InvalidInput):
    """A request over one of the documented size limits (HTTP 413)."""


class DocumentError(PermanentError):
    """One document could not be loaded; the rest of a batch goes on."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:  # pickled across the parser processes
        return type(self), (self.source, self.reason)


class NotFound(PermanentError):
    """The thing asked for does not exist (in the caller's tenant)."""


class NotImplementedInShape(PermanentError):
    """What this deployment shape does not offer (e.g. listing through the bus gateway)."""


class ConfigurationError(PermanentError):
    """Settings that cannot work."""


class Unauthorized(PermanentError):
    """No valid credentials."""


class Forbidden(PermanentError):
    """Valid credentials without the right to do this."""
