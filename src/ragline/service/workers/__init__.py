"""Bus workers: the consume loop (loop.py), the stage handlers (handlers.py) and the
dead-letter tools (dlq.py)."""

from ragline.service.protocol import DELETE, KIND, REPLAYED, Topics, route
from ragline.service.workers.dlq import dead_letters, replay
from ragline.service.workers.handlers import (
    build_worker,
    generate_handler,
    ingest_handler,
    on_dead_for,
    retrieve_handler,
)
from ragline.service.workers.loop import Output, Unparseable, Worker

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
