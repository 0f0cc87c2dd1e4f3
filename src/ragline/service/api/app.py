"""The FastAPI app: the factory, its lifespan and the middleware around the routes.

Routes live one module per resource under ``api/routes``; errors become problem
details in ``api/problems.py``; authentication, body limits and security headers run
in ``api/middleware.py`` before a route sees the request. The routes depend only on
the seam (``ragline.seam``), served by the embedded engine or, with a bus, by the
pipeline; ``_service`` is the one place that picks the shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ragline.adapters import caches
from ragline.adapters.stores import ownership
from ragline.core.limits import Limits
from ragline.seam import Service
from ragline.seam.bus import BusService
from ragline.seam.local import LocalService
from ragline.service.api.auth import Authenticator, JWTConfig, KeyStore
from ragline.service.api.jobs import Jobs
from ragline.service.api.middleware import Guard, GuardConfig, RequestContext
from ragline.service.api.problems import PROBLEM_RESPONSES, install_error_handlers, install_openapi
from ragline.service.api.ratelimit import RateLimiter, RedisRateLimiter
from ragline.service.api.routes import chat, documents, health, pages, query
from ragline.service.api.schemas import DocumentsRequest
from ragline.service.api.server import SERVER_SHARE
from ragline.service.engine import Engine
from ragline.service.observability import Metrics
from ragline.service.parse_lanes import ParseLanes
from ragline.settings import Settings

log = logging.getLogger("ragline.api")


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The app; it builds what answers (engine, or gateway) from settings at start-up
    unless an engine is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(app.state.parsers.close)
            app.state.service = await _service(settings, engine, app, stack)
            # Tell CLI commands on this machine where the owner of the database listens.
            ownership.announce(url=local_url(settings), token=auth.owner_token)
            yield
            # Shutdown: unfinished ingestion gets part of the grace period, then is spooled.
            await app.state.jobs.close(grace_s=settings.shutdown_grace_s * SERVER_SHARE)

    app = FastAPI(
        title="ragline",
        version=_version(),
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        docs_url=None,
        redoc_url=None,
        description="Retrieval-augmented answers over your documents, per tenant. Errors are "
        "RFC 9457 problem details (application/problem+json).",
    )
    install_openapi(app, DocumentsRequest)
    keys = KeyStore(Path(settings.keys_file))
    keys.check()  # a corrupt keys file is a configuration error now, not a 500 per request
    app.state.settings = settings
    app.state.keys = keys
    app.state.limits = Limits.of(settings.limits)
    app.state.parsers = ParseLanes(
        settings.upload_parse_workers,
        settings.parse_queue,
        settings.parse_deadline_s,
        memory_mb=settings.parse_memory_mb,
        nice=settings.background_nice,
        processes=settings.parse_in_processes,
    )
    app.state.metrics = engine.metrics if engine is not None else Metrics()
    app.state.jobs = Jobs(
        Path(settings.spool_dir) if settings.spool_dir else None, max_queued=settings.ingest_queue_jobs
    )
    auth = Authenticator(keys, _jwt_config(settings), settings.auth_enabled, settings.default_tenant)
    app.state.auth = auth
    app.add_middleware(Guard, config=_guard_config(settings), authenticator=auth, limiter=_limiter(settings))
    app.add_middleware(RequestContext)
    install_error_handlers(app)
    for router in (query.router, documents.router, chat.router, health.router, pages.router):
        app.include_router(router)
    app.mount(pages.SWAGGER_ASSETS, StaticFiles(directory=pages.swagger_dir()), name="swagger-assets")
    return app


def local_url(settings: Settings) -> str:
    """Where a client on this machine reaches the server."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


async def _service(settings: Settings, engine: Engine | None, app: FastAPI, stack: AsyncExitStack) -> Service:
    """The seam's factory, the one place that knows the shape: the embedded engine; with a
    bus, the pipeline (in this process for ``memory``)."""
    if settings.bus_url and settings.bus_url != "memory":
        return await _bus_service(settings, app, stack)
    if engine is None:
        engine = Engine.from_settings(settings)
        app.state.metrics = engine.metrics
        stack.push_async_callback(engine.close)
        # The answerer's tagger loads now (0.4-2 s), not on the first question.
        from ragline.core import entities

        await asyncio.to_thread(entities.warm)
    if not settings.bus_url:
        local = LocalService(engine, app.state.jobs)
        app.state.jobs.resume(local.write_now)  # jobs a previous shutdown spooled
        return local
    from ragline.adapters.buses import build_bus
    from ragline.service.pipeline import Pipeline
    from ragline.service.workers import Topics

    bus = build_bus(settings.bus)
    stack.push_async_callback(bus.close)
    pipeline = await Pipeline(
        engine,
        bus,
        Topics.from_settings(settings),
        concurrency=settings.worker_concurrency,
        timeout_s=settings.reply_timeout_s,
        max_attempts=settings.worker_max_attempts,
        backoff_s=settings.worker_backoff_s,
    ).start()
    stack.push_async_callback(pipeline.close, settings.shutdown_grace_s * SERVER_SHARE)
    return BusService(pipeline.gateway, settings.bus_url, settings.generator)


async def _bus_service(settings: Settings, app: FastAPI, stack: AsyncExitStack) -> BusService:
    """A gateway over Kafka: no embedding model, no Milvus connection in this process."""
    from ragline.adapters.buses import build_bus
    from ragline.service.gateway import Gateway
    from ragline.service.workers import Topics

    bus = build_bus(settings.bus)
    stack.push_async_callback(bus.close)
    spool = None
    if settings.spool_dir:  # a 202 means it will be indexed, even if the broker forgets it
        from ragline.service.accepted import AcceptedSpool

        spool = AcceptedSpool(Path(settings.spool_dir) / "accepted", max_bytes=settings.accepted_spool_mb * 1_000_000)
    gateway = Gateway(
        bus,
        Topics.from_settings(settings),
        timeout_s=settings.reply_timeout_s,
        reply_partition=settings.reply_partition,
        metrics=app.state.metrics,
        spool=spool,
        resend_after_s=settings.accepted_resend_after_s,
    )
    app.state.metrics.watch_lag(bus.lag)
    await gateway.start()
    stack.push_async_callback(gateway.close)
    return BusService(gateway, settings.bus_url, settings.generator)


def _guard_config(settings: Settings) -> GuardConfig:
    return GuardConfig(
        auth_enabled=settings.auth_enabled,
        query_body_bytes=int(settings.max_query_body_kb * 1000),
        document_body_bytes=int(settings.max_body_mb * 1_000_000),
        body_timeout_s=settings.http_body_timeout_s,
        metrics_require_key=settings.metrics_require_key,
        auth_failures_per_minute=settings.auth_failures_per_minute,
        requests_per_tenant=settings.http_max_requests_per_tenant,
    )


def _limiter(settings: Settings) -> Any:
    """Buckets in Redis when Redis is the cache (limits hold across replicas), else in-process."""
    if caches.is_shared(settings.cache):
        return RedisRateLimiter(
            settings.cache_url,
            settings.rate_limit_rps,
            settings.rate_limit_burst,
            settings.cache_prefix,
            settings.cache_timeout_s,
            settings.cache_breaker_open_s,
        )
    return RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)


def _jwt_config(settings: Settings) -> JWTConfig:
    public_key = Path(settings.jwt_public_key_file).read_text() if settings.jwt_public_key_file else None
    return JWTConfig(
        secret=settings.jwt_secret,
        public_key=public_key,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        tenant_claim=settings.jwt_tenant_claim,
    )


def _version() -> str:
    from ragline import __version__

    return __version__
