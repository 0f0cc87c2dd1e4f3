"""Metrics, traces and logs.

Metrics: one ``Metrics`` per process (API or worker), on its own registry, served on
/metrics. Traces: OpenTelemetry spans per stage; the context rides in bus message
headers (W3C ``traceparent``), so one query is one trace across the API and every
worker. Exporting is off unless an OTLP endpoint is configured. Logs: JSON lines with
the request id, tenant and stage of the message or request being handled.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

# Buckets fitted to a 1 s p99 SLO: fine below 1 s, coarse above.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 64)


class _LagCollector:
    """``ragline_consumer_lag`` read from the bus at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Mapping[tuple[str, str, int], int]]] = []

    def collect(self):
        family = GaugeMetricFamily(
            "ragline_consumer_lag",
            "Messages not yet consumed by the group, per partition",
            labels=["group", "topic", "partition"],
        )
        for source in self.sources:
            for (group, topic, partition), lag in source().items():
                family.add_metric([group, topic, str(partition)], lag)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.query_latency = Histogram(
            "rag_query_latency_seconds",
            "Query latency: stage=total end to end, else the part spent in that stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.search_success = Counter("vector_search_success_total", "Vector searches that succeeded", registry=r)
        self.search_failure = Counter("vector_search_failure_total", "Vector searches that failed", registry=r)
        self.llm_requests = Counter(
            "llm_requests_total",
            "Answers by LLM outcome: ok, degraded (LLM failed, "
            "extractive answer), skipped (not in the sources), cached",
            ["outcome"],
            registry=r,
        )
        self.llm_ttft = Histogram(
            "llm_time_to_first_token_seconds",
            "LLM time to first token (whole answer when not streamed)",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.query_embed_batch_size = Histogram(
            "ragline_query_embed_batch_size",
            "Questions embedded together (micro-batched by concurrency)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.llm_batch_size = Histogram(
            "llm_batch_size", "Prompts per batched LLM request", buckets=BATCH_BUCKETS, registry=r
        )
        self.degraded_answers = Counter(
            "rag_degraded_answers_total", "Answers given without the LLM after it failed or timed out", registry=r
        )
        self.http_requests = Counter(
            "ragline_http_requests_total", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.inflight = Gauge("ragline_inflight_requests", "Queries being answered now", registry=r)

        self.cache_requests = Counter(
            "ragline_cache_requests_total", "Cache lookups by cache and result", ["cache", "result"], registry=r
        )
        self.cache_up = Gauge(
            "ragline_cache_up", "1 while the cache backend answers, 0 while it is skipped", registry=r
        )
        self.cache_up.set(1)

        # The pipeline: workers and the gateway.
        self.stage_messages = Counter(
            "ragline_stage_messages_total",
            "Messages a stage worker finished, by outcome",
            ["stage", "outcome"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "ragline_stage_seconds",
            "Time a stage worker spent on one message",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "ragline_dead_letters_total", "Messages sent to the dead-letter topic", ["topic", "reason"], registry=r
        )
        self.freshness = Histogram(
            "rag_ingest_freshness_seconds", "Document received -> searchable", buckets=FRESHNESS_BUCKETS, registry=r
        )
        self.duplicate_answers = Counter(
            "ragline_duplicate_answers_total", "Answers dropped because their request was already answered", registry=r
        )
        self.reply_timeouts = Counter(
            "ragline_reply_timeouts_total", "Queries whose answer did not come in time", registry=r
        )
        self._lag = _LagCollector()
        r.register(self._lag)

    def watch_lag(self, source: Callable[[], Mapping[tuple[str, str, int], int]]) -> None:
        """Export a bus's consumer lag (``bus.lag``) on this registry."""
        self._lag.sources.append(source)

    def stage_done(self, stage: str, seconds: float, outcome: str) -> None:
        self.stage_messages.labels(stage=stage, outcome=outcome).inc()
        if outcome == "ok":
            self.stage_seconds.labels(stage=stage).observe(seconds)

    def dead_letter(self, topic: str, reason: str) -> None:
        self.dead_letters.labels(topic=topic, reason=reason).inc()

    def counter(self, cache: str) -> Callable[[str, int], None]:
        """A (result, n) callback counting one cache's hits and misses."""

        def count(result: str, n: int) -> None:
            if n:
                self.cache_requests.labels(cache=cache, result=result).inc(n)

        return count

    def cache_state(self, state: str) -> None:
        self.cache_up.set(0 if state == "open" else 1)

    def observe_answer(self, answer, total_s: float | None = None) -> None:
        """Once per answer given to a caller: the time in each stage, and end to end."""
        for stage, ms in answer.timings_ms.items():
            self.query_latency.labels(stage=stage).observe(ms / 1000)
        if total_s is not None:
            self.query_latency.labels(stage="total").observe(total_s)

    def observe_llm(self, answer) -> None:
        """Once per answer the generate stage produced: what became of the LLM call."""
        if answer.cached:
            outcome = "cached"
        elif answer.degraded:
            outcome = "degraded"
            self.degraded_answers.inc()
        else:
            outcome = "skipped" if answer.model == "none" else "ok"
        self.llm_requests.labels(outcome=outcome).inc()


# -- tracing ------------------------------------------------------------------------------

_TRACER_NAME = "ragline"


def tracer():
    from opentelemetry import trace

    return trace.get_tracer(_TRACER_NAME)


def setup_tracing(service_name: str, otlp_endpoint: str | None) -> None:
    """Export spans over OTLP/HTTP when an endpoint is configured; otherwise spans are no-ops."""
    if not otlp_endpoint:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)


def inject_headers(headers: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """``headers`` plus the current trace context (``traceparent``), as bus headers."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return {**(headers or {}), **{k: v.encode() for k, v in carrier.items()}}


def extract_context(headers: Mapping[str, bytes]):
    from opentelemetry.propagate import extract

    return extract({k: v.decode("latin-1") for k, v in headers.items()})


@contextlib.contextmanager
def span(name: str, context=None, kind: str = "internal", **attributes: Any) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    kinds = {
        "internal": SpanKind.INTERNAL,
        "consumer": SpanKind.CONSUMER,
        "producer": SpanKind.PRODUCER,
        "server": SpanKind.SERVER,
        "client": SpanKind.CLIENT,
    }
    with tracer().start_as_current_span(
        name,
        context=context,
        kind=kinds[kind],
        attributes={k: v for k, v in attributes.items() if v is not None},
        record_exception=True,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except Exception as exc:
            current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


# -- logs ---------------------------------------------------------------------------------

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)
stage_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("stage", default=None)


@contextlib.contextmanager
def log_context(request_id: str | None = None, tenant: str | None = None, stage: str | None = None) -> Iterator[None]:
    tokens = [
        (var, var.set(value))
        for var, value in ((request_id_var, request_id), (tenant_var, tenant), (stage_var, stage))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, tenant, stage."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("request_id", request_id_var), ("tenant", tenant_var), ("stage", stage_var)):
            value = var.get()
            if value is not None:
                entry[key] = value
        with contextlib.suppress(Exception):
            from opentelemetry import trace

            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                entry["trace_id"] = format(ctx.trace_id, "032x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """ragline's loggers (and uvicorn's) to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
