"""Bus workers: the consume loop (loop.py), the stage handlers (handlers.py) and the
dead-letter tools (dlq.py)."""

from ..protocol import DELETE, KIND, REPLAYED, Topics, route
from .dlq import dead_letters, replay
from .handlers import build_worker, generate_handler, ingest_handler, on_dead_for, retrieve_handler
from .loop import Output, Unparseable, Worker

__all__ = [
    "DELETE",
    "KIND",
    "REPLAYED",
    "Output",
    "Topics",
    "Unparseable",
    "Worker",
    "build_worker",
    "dead_letters",
    "generate_handler",
    "ingest_handler",
    "on_dead_for",
    "replay",
    "retrieve_handler",
    "route",
]
