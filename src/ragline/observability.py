"""Prometheus metrics (the observability issue extends these; the names are the design's)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Buckets fitted to a 1 s p99 SLO: fine below 1 s, coarse above.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.query_latency = Histogram("rag_query_latency_seconds", "Query latency by stage", ["stage"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.search_success = Counter("vector_search_success_total", "Vector searches that succeeded",
                                      registry=self.registry)
        self.search_failure = Counter("vector_search_failure_total", "Vector searches that failed",
                                      registry=self.registry)
        self.llm_requests = Counter("llm_requests_total", "Answers by LLM outcome", ["outcome"],
                                    registry=self.registry)
        self.http_requests = Counter("ragline_http_requests_total", "HTTP requests by route and status",
                                     ["route", "status"], registry=self.registry)

        self.cache_requests = Counter("ragline_cache_requests_total", "Cache lookups by cache and result",
                                      ["cache", "result"], registry=self.registry)
        self.cache_up = Gauge("ragline_cache_up", "1 while the cache backend answers, 0 while it is skipped",
                              registry=self.registry)
        self.cache_up.set(1)

        # The pipeline: workers and the gateway.
        self.stage_messages = Counter("ragline_stage_messages_total", "Messages a stage worker finished, by outcome",
                                      ["stage", "outcome"], registry=self.registry)
        self.stage_seconds = Histogram("ragline_stage_seconds", "Time a stage worker spent on one message",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.dead_letters = Counter("ragline_dead_letters_total", "Messages sent to the dead-letter topic",
                                    ["topic", "reason"], registry=self.registry)
        self.freshness = Histogram("rag_ingest_freshness_seconds", "Document received -> searchable",
                                   buckets=FRESHNESS_BUCKETS, registry=self.registry)
        self.inflight = Gauge("ragline_inflight_requests", "Queries waiting for their answer", registry=self.registry)
        self.duplicate_answers = Counter("ragline_duplicate_answers_total",
                                         "Answers dropped because their request was already answered",
                                         registry=self.registry)
        self.reply_timeouts = Counter("ragline_reply_timeouts_total", "Queries whose answer did not come in time",
                                      registry=self.registry)

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

    def observe_answer(self, answer) -> None:
        for stage, ms in answer.timings_ms.items():
            self.query_latency.labels(stage=stage).observe(ms / 1000)
        outcome = "degraded" if answer.degraded else ("skipped" if answer.model == "none" else "ok")
        self.llm_requests.labels(outcome=outcome).inc()
