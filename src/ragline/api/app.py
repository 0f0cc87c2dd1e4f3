"""The FastAPI app: ragline's HTTP API over the engine.

Errors are translated in one place (``_problem``) into application/problem+json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import Engine
from ..errors import (DependencyTimeout, DependencyUnavailable, DocumentError, Forbidden, InvalidInput,
                      NotFound, RaglineError, RateLimited, Unauthorized)
from ..ids import content_hash
from ..ingest.loaders import SUPPORTED_SUFFIXES, load_file
from ..models import Answer, Document
from ..observability import log_context, request_id_var, span
from ..settings import Settings
from . import openai_compat
from .auth import Authenticator, JWTConfig, KeyStore, Principal
from .deps import IngestCaller, QueryCaller
from .ratelimit import RateLimiter, RedisRateLimiter, retry_after_header
from .schemas import (DeleteResponse, DocumentOut, DocumentsRequest, DocumentsResponse, Problem, QueryRequest,
                      SearchRequest, SearchResponse)

log = logging.getLogger("ragline.api")

_STATUS: list[tuple[type[RaglineError], int, str]] = [
    (Unauthorized, 401, "Unauthorized"), (Forbidden, 403, "Forbidden"), (NotFound, 404, "Not Found"),
    (InvalidInput, 422, "Invalid input"), (DocumentError, 422, "Unreadable document"),
    (RateLimited, 429, "Too Many Requests"), (DependencyTimeout, 504, "Dependency timed out"),
    (DependencyUnavailable, 503, "Dependency unavailable"),
]

_PROBLEM_CODES = {400: "Malformed request", 401: "Missing or invalid credentials", 403: "Missing scope",
                  404: "Not found in the caller's tenant", 413: "Request body too large",
                  422: "Invalid request", 429: "Rate limited (see Retry-After)",
                  500: "Internal error", 503: "A dependency is unavailable", 504: "A dependency timed out"}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}
    for code, text in _PROBLEM_CODES.items()
}


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None,
            errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


def _problem(exc: RaglineError) -> JSONResponse:
    """ragline's error tree -> HTTP status and problem details: the one place that maps them."""
    for kind, status, title in _STATUS:
        if isinstance(exc, kind):
            headers = {"Retry-After": retry_after_header(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
            if status == 401:
                headers = {"WWW-Authenticate": "Bearer"}
            return problem(status, title, str(exc), headers)
    return problem(500, "Internal error", str(exc))


class BodyLimit:
    """413 for request bodies over ``max_bytes``, declared or streamed, before they are read whole."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted_receive, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send) -> None:
        response = problem(413, "Payload Too Large", f"request bodies are limited to {self.max_bytes} bytes")
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class RequestContext:
    """Each request: an id (``X-Request-ID``, taken from the caller or made) in every
    log line and in the response; counted by route template and status."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 128 and given.isprintable() else uuid.uuid4().hex
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
                if metrics is not None:
                    metrics.http_requests.labels(route=route, status=str(status)).inc()


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The app; it builds the engine from settings at start-up unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = engine or Engine.from_settings(settings)
        app.state.metrics = app.state.engine.metrics
        app.state.tasks = set()
        app.state.gateway = None
        bus = pipeline = None
        try:
            if settings.bus_url:
                bus, pipeline, app.state.gateway = await _start_gateway(settings, app.state.engine)
            yield
        finally:
            if app.state.tasks:  # drain background ingestion before closing the store
                await asyncio.gather(*app.state.tasks, return_exceptions=True)
            if pipeline is not None:
                await pipeline.close(grace_s=settings.shutdown_grace_s)
            elif app.state.gateway is not None:
                await app.state.gateway.close()
            if bus is not None:
                await bus.close()
            if engine is None:
                await app.state.engine.close()

    app = FastAPI(title="ragline", version="0.1.0", lifespan=lifespan, responses=PROBLEM_RESPONSES,
                  description="Retrieval-augmented answers over your documents, per tenant. Errors are "
                              "RFC 9457 problem details (application/problem+json).")
    _register_problem_schema(app)
    app.state.settings = settings
    keys = KeyStore(Path(settings.keys_file))
    app.state.keys = keys
    app.state.auth = Authenticator(keys, _jwt_config(settings), settings.auth_enabled, settings.default_tenant)
    app.state.limiter = _limiter(settings)
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_body_mb * 1_000_000))
    app.add_middleware(RequestContext)
    _install_error_handlers(app)
    _install_routes(app)
    openai_compat.install(app)
    return app


async def _start_gateway(settings: Settings, engine: Engine):
    """Queries through the bus: workers in this process (memory) or elsewhere (Kafka)."""
    from ..buses import build_bus
    from ..pipeline import Gateway, Pipeline
    from ..workers import Topics

    bus = build_bus(settings)
    topics = Topics.from_settings(settings)
    try:
        if settings.bus_url == "memory":
            pipeline = await Pipeline(engine, bus, topics, concurrency=settings.worker_concurrency,
                                      timeout_s=settings.reply_timeout_s, max_attempts=settings.worker_max_attempts,
                                      backoff_s=settings.worker_backoff_s).start()
            return bus, pipeline, pipeline.gateway
        gateway = Gateway(bus, topics, timeout_s=settings.reply_timeout_s, reply_partition=settings.reply_partition,
                          metrics=engine.metrics)
        engine.metrics.watch_lag(bus.lag)
        return bus, None, await gateway.start()
    except BaseException:
        await bus.close()
        raise


def _register_problem_schema(app: FastAPI) -> None:
    """Put the Problem model in the spec's components, where PROBLEM_RESPONSES points."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            for path in schema["paths"].values():  # FastAPI's own 422 schema is not what we send
                for operation in path.values():
                    operation.get("responses", {})["422"] = PROBLEM_RESPONSES[422]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _limiter(settings: Settings):
    """Buckets in Redis when Redis is the cache (limits hold across replicas), else in-process."""
    if settings.cache_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRateLimiter(settings.cache_url, settings.rate_limit_rps, settings.rate_limit_burst,
                                settings.cache_prefix, settings.cache_timeout_s)
    return RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)


def _jwt_config(settings: Settings) -> JWTConfig:
    public_key = Path(settings.jwt_public_key_file).read_text() if settings.jwt_public_key_file else None
    return JWTConfig(secret=settings.jwt_secret, public_key=public_key, audience=settings.jwt_audience,
                     issuer=settings.jwt_issuer, tenant_claim=settings.jwt_tenant_claim)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RaglineError)
    async def ragline_error(request: Request, exc: RaglineError) -> JSONResponse:
        return _problem(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "Internal error", f"unexpected {type(exc).__name__}; see the server log")


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def sse(event: str, data: Any) -> str:
    payload = data.model_dump_json() if hasattr(data, "model_dump_json") else json.dumps(data)
    return f"event: {event}\ndata: {payload}\n\n"


def _install_routes(app: FastAPI) -> None:
    @app.post("/v1/query", response_model=Answer, tags=["answers"],
              responses={200: {"content": {"text/event-stream": {}}}})
    async def query(body: QueryRequest, request: Request, who: QueryCaller):
        engine = _engine(request)
        if body.stream:
            return StreamingResponse(_answer_events(request, engine, body, who), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        gateway = request.app.state.gateway
        metrics = request.app.state.metrics
        started = time.perf_counter()
        with metrics.inflight.track_inprogress(), span("POST /v1/query", kind="server", tenant=who.tenant):
            if gateway is not None:
                answer = await gateway.ask(_bus_query(request, body, who))
            else:
                answer = await engine.ask(body.question, who.tenant, body.top_k, body.filters, body.mode)
        metrics.observe_answer(answer, time.perf_counter() - started)
        return answer

    @app.post("/v1/search", response_model=SearchResponse, tags=["retrieval"])
    async def search(body: SearchRequest, request: Request, who: QueryCaller) -> SearchResponse:
        context = await _engine(request).search(body.query, who.tenant, body.top_k, body.filters, body.mode)
        return SearchResponse(hits=context.hits, mode=context.mode, notice=context.notice,
                              timings_ms=context.timings_ms)

    @app.post("/v1/documents", response_model=DocumentsResponse, tags=["documents"],
              responses={202: {"model": DocumentsResponse}})
    async def upsert_documents(body: DocumentsRequest, request: Request, who: IngestCaller):
        docs = [Document(tenant=who.tenant, id=d.id or f"doc-{content_hash(d.text)[:16]}", text=d.text,
                         metadata=d.metadata) for d in body.documents]
        return await _ingest(request, docs, body.wait, [])

    @app.post("/v1/documents/files", response_model=DocumentsResponse, tags=["documents"],
              responses={202: {"model": DocumentsResponse}})
    async def upload_documents(request: Request, who: IngestCaller, files: Annotated[list[UploadFile], File()],
                               wait: Annotated[bool, Form()] = False):
        docs, errors = [], []
        for upload in files:
            try:
                docs.append(await _load_upload(upload, who.tenant, request.app.state.settings))
            except DocumentError as exc:
                errors.append(str(exc))
        if not docs:
            raise InvalidInput("no file could be read: " + "; ".join(errors))
        return await _ingest(request, docs, wait, errors)

    @app.get("/v1/documents/{document_id:path}", response_model=DocumentOut, tags=["documents"])
    async def get_document(document_id: str, request: Request, who: QueryCaller) -> DocumentOut:
        chunks = await _engine(request).store.document_chunks(who.tenant, document_id)
        if not chunks:
            raise NotFound(f"no document {document_id!r}")
        return DocumentOut(id=document_id, tenant=who.tenant, chunks=chunks, metadata=chunks[0].metadata)

    @app.delete("/v1/documents/{document_id:path}", response_model=DeleteResponse, tags=["documents"])
    async def delete_document(document_id: str, request: Request, who: IngestCaller) -> DeleteResponse:
        removed = await _engine(request).delete_document(document_id, who.tenant)
        return DeleteResponse(id=document_id, deleted_chunks=removed)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"model": Problem}})
    async def readyz(request: Request):
        checks = await _readiness(_engine(request), request.app.state.gateway)
        ok = all(c["status"] == "ok" for c in checks.values() if c.get("required"))
        body = {"status": "ok" if ok else "unavailable", "dependencies": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse((resources.files("ragline") / "api" / "static" / "index.html").read_text())


async def _answer_events(request: Request, engine: Engine, body: QueryRequest, who: Principal) -> AsyncIterator[str]:
    """SSE: `token` events as text arrives, then `answer`; an `error` event if it fails midway."""
    gateway = request.app.state.gateway
    metrics = request.app.state.metrics
    started = time.perf_counter()
    metrics.inflight.inc()
    try:
        items = (gateway.stream(_bus_query(request, body, who)) if gateway is not None
                 else engine.stream(body.question, who.tenant, body.top_k, body.filters, body.mode))
        async for item in items:
            if isinstance(item, Answer):
                metrics.observe_answer(item, time.perf_counter() - started)
                yield sse("answer", item)
            else:
                yield sse("token", {"text": item})
    except RaglineError as exc:
        yield sse("error", json.loads(_problem(exc).body))
    finally:
        metrics.inflight.dec()


def _bus_query(request: Request, body: QueryRequest, who: Principal):
    return request.app.state.gateway.query(
        body.question, who.tenant, body.top_k or request.app.state.settings.answer_top_k,
        request_id=request_id_var.get(), filters=dict(body.filters or {}), mode=body.mode)


async def _ingest(request: Request, docs: list[Document], wait: bool, errors: list[str]):
    engine = _engine(request)
    ids = [d.id for d in docs]
    gateway = request.app.state.gateway
    if gateway is not None:
        if wait:
            raise InvalidInput("wait=true is not available while ingestion goes through the bus; the documents "
                               "are searchable once the ingest workers have them (poll GET /v1/documents/{id})")
        await gateway.submit(docs)
        return JSONResponse(DocumentsResponse(status="accepted", ids=ids, errors=errors).model_dump(mode="json"),
                            status_code=202)
    if wait:
        started = time.perf_counter()
        report = await engine.ingest_documents(docs)
        return DocumentsResponse(status="searchable", ids=ids, report=report, errors=errors,
                                 seconds=time.perf_counter() - started)
    task = asyncio.create_task(engine.ingest_documents(docs))
    request.app.state.tasks.add(task)
    task.add_done_callback(_forget(request.app.state.tasks))
    return JSONResponse(DocumentsResponse(status="accepted", ids=ids, errors=errors).model_dump(mode="json"),
                        status_code=202)


def _forget(tasks: set) -> Callable[[asyncio.Task], None]:
    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background ingestion failed: %s", task.exception())
    return done


async def _load_upload(upload: UploadFile, tenant: str, settings: Settings) -> Document:
    name = Path(upload.filename or f"upload-{uuid.uuid4().hex[:8]}.txt").name
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(name, f"unsupported file type {suffix or '(none)'}; use .txt .md .html .pdf")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(await upload.read())
        doc = load_file(path, tenant, int(settings.max_document_mb * 1_000_000), document_id=name)
    return doc.model_copy(update={"metadata": {**doc.metadata, "source": name}})


async def _readiness(engine: Engine, gateway: Any = None) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    try:
        await asyncio.wait_for(engine.store.ping(), 5)
        checks["vector_store"] = {"status": "ok", "required": True}
    except (RaglineError, TimeoutError) as exc:
        checks["vector_store"] = {"status": "unavailable", "required": True, "error": str(exc)}
    if engine.cache is not None:
        checks["cache"] = {"status": "ok", "required": False, "backend": engine.cache.name}
        try:
            await asyncio.wait_for(engine.cache.ping(), 2)
        except (RaglineError, TimeoutError) as exc:
            checks["cache"].update(status="unavailable", error=f"{exc}; serving without the cache")
    if gateway is not None:
        checks["bus"] = {"status": "ok" if gateway.listening else "unavailable", "required": True,
                         "url": engine.settings.bus_url}
    checks["llm"] = {"status": "ok", "required": False, "generator": engine.settings.generator}
    ping = getattr(engine.generator, "ping", None)
    if ping is not None:
        try:
            await asyncio.wait_for(ping(), 3)
        except (RaglineError, TimeoutError) as exc:
            checks["llm"].update(status="unavailable", error=f"{exc}; answers are extractive meanwhile")
    return checks
