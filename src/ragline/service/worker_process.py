"""Worker processes: one or more stages over the configured bus, with a small HTTP
server on ``--metrics-port`` for /metrics, /healthz and /readyz (Kubernetes probes).

SIGTERM and SIGINT are a graceful shutdown: stop taking messages, finish those in
hand (or hand them back uncommitted after the grace period), leave the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence

from ragline.adapters.buses import build_bus
from ragline.core.errors import ConfigurationError, RaglineError
from ragline.service.engine import Engine
from ragline.service.workers import Topics, Worker, build_worker
from ragline.settings import Settings

log = logging.getLogger("ragline.worker")

STAGES = ("ingest", "retrieve", "generate")


def health_app(workers: Sequence[Worker], engine: Engine):
    """/metrics, /healthz (the process is alive) and /readyz (consuming, store reachable)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def metrics(request) -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request) -> JSONResponse:
        body: dict = {
            "workers": {w.stage: {"consuming": w.running, "processed": w.processed, "dead": w.dead} for w in workers}
        }
        ok = all(w.running for w in workers)
        if any(w.stage in ("ingest", "retrieve") for w in workers):
            try:
                await asyncio.wait_for(engine.store.ping(), 5)
                body["vector_store"] = "ok"
            except (RaglineError, TimeoutError) as exc:
                ok, body["vector_store"] = False, f"unavailable: {exc}"
        body["status"] = "ok" if ok else "unavailable"
        return JSONResponse(body, status_code=200 if ok else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)])


async def run_workers(
    settings: Settings, stages: Sequence[str], group_prefix: str = "ragline", host: str = "0.0.0.0"
) -> None:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigurationError(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    bus = build_bus(settings.bus)
    engine = Engine.from_settings(settings)
    topics = Topics.from_settings(settings)
    workers = [
        build_worker(
            stage,
            engine,
            bus,
            topics,
            group=f"{group_prefix}-{stage}",
            concurrency=settings.worker_concurrency,
            max_attempts=settings.worker_max_attempts,
            backoff_s=settings.worker_backoff_s,
            metrics=engine.metrics,
            outage_patience_s=settings.worker_outage_patience_s,
        )
        for stage in stages
    ]
    engine.metrics.watch_lag(bus.lag)
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for worker in workers:
            worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all)
    server = None
    if settings.worker_metrics_port:
        import uvicorn

        config = uvicorn.Config(
            health_app(workers, engine),
            host=host,
            port=settings.worker_metrics_port,
            log_level="warning",
            lifespan="off",
        )
        server = _quiet_server_class()(config)
        serving = asyncio.create_task(server.serve())
    log.info("worker %s consuming from %s", "+".join(stages), settings.bus_url)
    try:
        await asyncio.gather(*(w.run(grace_s=settings.shutdown_grace_s) for w in workers))
    finally:
        if server is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
        await engine.close()
        await bus.close()
        log.info(
            "worker %s stopped: %s",
            "+".join(stages),
            ", ".join(f"{w.stage} processed {w.processed}, dead-lettered {w.dead}" for w in workers),
        )


def _quiet_server_class() -> type:
    import contextlib

    import uvicorn

    class QuietServer(uvicorn.Server):
        """The metrics server without signal handlers of its own: ours stop the workers first."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer
