"""Bus adapters: in-process queues and Kafka."""

from __future__ import annotations

from ..errors import ConfigurationError
from ..ports import Bus


def build_bus(settings) -> Bus:
    """The bus named by ``settings.bus_url``: ``memory`` or ``kafka://host:port[,host:port]``."""
    url = settings.bus_url
    if url == "memory":
        from .memory import MemoryBus

        return MemoryBus()
    if url.startswith("kafka://"):
        from .kafka import KafkaBus

        servers = url.removeprefix("kafka://").rstrip("/")
        if not servers:
            raise ConfigurationError(f"bus_url {url!r} names no broker; use kafka://host:9092")
        return KafkaBus(servers, client_id=settings.kafka_client_id,
                        session_timeout_ms=settings.kafka_session_timeout_ms,
                        fetch_wait_max_ms=settings.kafka_fetch_wait_max_ms, linger_ms=settings.kafka_linger_ms,
                        interactive_topics=(settings.topic_queries, settings.topic_context, settings.topic_answers),
                        interactive_linger_ms=settings.kafka_interactive_linger_ms,
                        stats_interval_ms=settings.kafka_stats_interval_ms,
                        transactional_id=_transactional_id(settings) if settings.kafka_transactions else None)
    raise ConfigurationError(f"no bus configured (bus_url={url!r}); pass --bus kafka://HOST:PORT or memory")


def _transactional_id(settings) -> str:
    """Unique per process: zombie workers are fenced by their consumer group generation
    (the offsets are sent with the group's metadata), not by a stable id."""
    import os
    import socket
    import uuid

    return f"{settings.kafka_client_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def topic_specs(settings) -> list:
    """The pipeline's topics with partitions, replication and retention from settings."""
    from .kafka import TopicSpec

    def config(retention_ms: float) -> dict[str, str]:
        cfg = {"retention.ms": str(int(retention_ms))}
        if settings.topic_min_insync_replicas is not None:
            cfg["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
        return cfg

    hours = settings.topic_retention_hours * 3_600_000
    main = [settings.topic_docs, settings.topic_queries, settings.topic_context, settings.topic_answers]
    specs = [TopicSpec(name, settings.topic_partitions, settings.topic_replication_factor, config(hours))
             for name in main]
    specs.append(TopicSpec(settings.topic_dlq, settings.topic_partitions, settings.topic_replication_factor,
                           config(settings.dlq_retention_days * 86_400_000)))
    return specs
