"""The protocol between the gateway and the stage workers, in one place both import:
the topics, the headers that say what a message is, reply routes, and errors carried
across the bus as stable codes (never as Python class names).

Messages themselves are the models in models.py (Query, Context, Answer, Delta,
Document, DocumentRef, Failure, DeadLetter), each with a ``schema_version``.

Errors. A stage that gives up on a query puts a ``Failure`` on the caller's reply
route; its ``code`` is one of ``ERROR_CODES`` (``error_code`` of the exception), and
the gateway turns it back into the error the caller would have had in-process
(``error_from``). ``error_type`` (the class name) is still sent, for people reading a
topic; a gateway reads it only from a Failure that has no code (a worker older than
the codes). Rolling upgrades: a Failure with a code cannot be read by a gateway older
than the codes (messages forbid unknown fields), so gateways are upgraded first.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragline.core import errors
from ragline.core.errors import RaglineError

# Headers on reply routes: what the value is.
KIND = "ragline-kind"
REPLAYED = b"replayed"
DELETE = b"delete"  # on the documents topic: a DocumentRef to delete
# On the documents topic: where the gateway that accepted the write wants its receipt, and
# the write's receipt token (ragline/service/accepted.py); a receipt is KIND b"receipt".
REPLY_TO = "ragline-reply-to"
RECEIPT = "ragline-receipt"


@dataclass(frozen=True)
class Topics:
    docs: str = "rag-docs"
    queries: str = "rag-queries"
    context: str = "rag-context"
    answers: str = "rag-answers"
    dlq: str = "rag-dlq"

    @classmethod
    def from_settings(cls, settings) -> Topics:
        return cls(
            settings.topic_docs,
            settings.topic_queries,
            settings.topic_context,
            settings.topic_answers,
            settings.topic_dlq,
        )


def route(reply_to: str) -> tuple[str, int | None]:
    """ "topic" or "topic:partition" (Kafka topic names never hold ':')."""
    topic, _, partition = reply_to.partition(":")
    return topic, int(partition) if partition.isdigit() else None


# code -> the error a gateway raises for it (most specific classes first: error_code
# picks the first class the exception is an instance of)
ERROR_CODES: dict[str, type[RaglineError]] = {
    "overloaded": errors.Overloaded,
    "unavailable": errors.DependencyUnavailable,
    "timeout": errors.DependencyTimeout,
    "rate_limited": errors.RateLimited,
    "too_large": errors.TooLarge,
    "invalid_input": errors.InvalidInput,
    "document": errors.DocumentError,
    "not_found": errors.NotFound,
    "not_in_shape": errors.NotImplementedInShape,
    "configuration": errors.ConfigurationError,
    "unauthorized": errors.Unauthorized,
    "forbidden": errors.Forbidden,
}
INTERNAL = "internal"  # anything else: a bug or an unmapped vendor error


def error_code(exc: BaseException) -> str:
    """The code a Failure carries for ``exc``."""
    for code, kind in ERROR_CODES.items():
        if isinstance(exc, kind):
            return code
    if type(exc).__name__ in ("ValidationError", "ValueError"):  # a message the stage could not use
        return "invalid_input"
    return INTERNAL


def error_from(code: str, message: str) -> RaglineError:
    """The error a caller gets for a stage's Failure with ``code``: what it would have had
    in-process, except that a stage's timeout or a store it could not reach is "unavailable"
    (503 + Retry-After: retry later), and errors whose constructors need more than a message
    (overloaded, rate limited, a document error) or that no caller could act on (internal)
    are "unavailable" too."""
    kind = ERROR_CODES.get(code)
    if kind is None or code in ("timeout", "overloaded", "rate_limited", "document"):
        return errors.DependencyUnavailable(message)
    return kind(message)


def code_of_type(error_type: str) -> str:
    """A Failure from a worker older than the codes names only the class: its code."""
    kind = getattr(errors, error_type, None)
    for code, known in ERROR_CODES.items():
        if kind is known:
            return code
    return "invalid_input" if error_type in ("ValidationError", "ValueError") else INTERNAL
