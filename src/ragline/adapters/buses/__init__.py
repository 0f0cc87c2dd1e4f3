"""Bus adapters, chosen by the scheme of the bus URL (``bus_url``, ``settings.bus.url``):
``memory`` (in-process queues) and ``kafka://host:port[,host:port]``. A new bus is one
module and one ``BUSES.register``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragline.core.errors import ConfigurationError
from ragline.core.ports import Bus
from ragline.core.registry import Registry, scheme_of
from ragline.settings import BusSettings

BusFactory = Callable[[BusSettings], Bus]
BUSES: Registry[BusFactory] = Registry("bus", "bus_url")


def build_bus(config: BusSettings) -> Bus:
    """The bus ``config.url`` names (``settings.bus``)."""
    if not config.url:
        raise ConfigurationError("no bus configured (bus_url is empty); pass --bus kafka://HOST:PORT or memory")
    return BUSES.factory(scheme_of(config.url, default=config.url))(config)


def _memory(settings: BusSettings) -> Bus:
    from ragline.adapters.buses.memory import MemoryBus

    return MemoryBus()


def _kafka(settings: BusSettings) -> Bus:
    from ragline.adapters.buses.kafka import KafkaBus

    url = settings.url
    servers = url.removeprefix("kafka://").rstrip("/")
    if not servers:
        raise ConfigurationError(f"bus_url {url!r} names no broker; use kafka://host:9092")
    return KafkaBus(
        servers,
        client_id=settings.client_id,
        session_timeout_ms=settings.session_timeout_ms,
        fetch_wait_max_ms=settings.fetch_wait_max_ms,
        linger_ms=settings.linger_ms,
        interactive_topics=(settings.topic_queries, settings.topic_context, settings.topic_answers),
        interactive_linger_ms=settings.interactive_linger_ms,
        stats_interval_ms=settings.stats_interval_ms,
        transactional_id=_transactional_id(settings) if settings.transactions else None,
        publish_timeout_ms=settings.publish_timeout_ms,
        topic_specs=topic_specs(settings),
        groups_topic=settings.topic_groups,
        leave_group=settings.leave_group,
    )


BUSES.register("memory", _memory)
BUSES.register("kafka", _kafka)


def _transactional_id(settings: BusSettings) -> str:
    """Unique per process: zombie workers are fenced by their consumer group generation
    (the offsets are sent with the group's metadata), not by a stable id."""
    import os
    import socket
    import uuid

    return f"{settings.client_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def topic_specs(settings: BusSettings) -> list[Any]:
    """The pipeline's topics with partitions, replication and retention from settings."""
    from ragline.adapters.buses.kafka import TopicSpec

    def config(retention_ms: float) -> dict[str, str]:
        cfg = {"retention.ms": str(int(retention_ms))}
        if settings.min_insync_replicas is not None:
            cfg["min.insync.replicas"] = str(settings.min_insync_replicas)
        return cfg

    hours = settings.retention_hours * 3_600_000
    main = [settings.topic_docs, settings.topic_queries, settings.topic_context, settings.topic_answers]
    specs = [TopicSpec(name, settings.partitions, settings.replication_factor, config(hours)) for name in main]
    specs.append(
        TopicSpec(
            settings.topic_dlq,
            settings.partitions,
            settings.replication_factor,
            config(settings.dlq_retention_days * 86_400_000),
        )
    )
    # the group directory: one partition (read whole, in order), kept as long as the DLQ
    specs.append(
        TopicSpec(
            settings.topic_groups,
            1,
            settings.replication_factor,
            config(settings.dlq_retention_days * 86_400_000),
        )
    )
    return specs
