"""Metrics after real traffic, traces across the pipeline, JSON logs, alert rules and the dashboard."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import missing_tool
from prometheus_client.parser import text_string_to_metric_families

from ragline import Settings
from ragline.adapters.buses.memory import MemoryBus
from ragline.adapters.embedders.hashing import HashingEmbedder
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.milvus import MilvusStore
from ragline.core.models import Document, Query
from ragline.service.engine import Engine
from ragline.service.observability import JsonFormatter, Metrics, log_context
from ragline.service.pipeline import Pipeline
from ragline.service.workers import Topics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are."


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Exposition text -> {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


# -- the embedded service's /metrics after real traffic ------------------------------------


async def test_the_api_exports_each_metric_with_its_labels_after_real_traffic(serve_app):
    api = serve_app(auth_enabled=False, cache_url="memory", rate_limit_rps=0)
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        ingest = await client.post("/v1/documents", json={"documents": [{"id": "bees", "text": BEES}], "wait": True})
        assert ingest.status_code == 200
        for _ in range(3):
            assert (
                await client.post("/v1/query", json={"question": "What does the waggle dance tell?"})
            ).status_code == 200
        for i in range(2):
            assert (await client.post("/v1/search", json={"query": f"waggle {i}"})).status_code == 200
        named = await client.post(
            "/v1/query", json={"question": "How far are the flowers?"}, headers={"X-Request-ID": "trace-me-1"}
        )
        assert named.json()["request_id"] == "trace-me-1" == named.headers["x-request-id"]  # one id everywhere
        bad = await client.post("/v1/query", json={"question": ""}, headers={"X-Request-ID": "req-123"})
        assert bad.status_code == 422 and bad.headers["x-request-id"] == "req-123"
        text = (await client.get("/metrics")).text
    found = samples(text)
    assert value(found, "ragline_http_requests_total", route="/v1/query", status="200") == 4
    assert value(found, "ragline_http_requests_total", route="/v1/query", status="422") == 1
    assert value(found, "ragline_http_requests_total", route="/v1/search", status="200") == 2
    assert value(found, "rag_query_latency_seconds_count", stage="total") == 4
    assert value(found, "rag_query_latency_seconds_count", stage="search") >= 1
    assert value(found, "vector_search_success_total") == 4 + 2  # the answer cache keys on the context: always searched
    assert value(found, "vector_search_failure_total") == 0
    assert value(found, "llm_requests_total", outcome="ok") == 2  # the extractive "LLM" answered twice
    assert value(found, "llm_requests_total", outcome="cached") == 2
    assert value(found, "ragline_cache_requests_total", cache="answer", result="hit") == 2
    assert value(found, "ragline_cache_requests_total", cache="answer", result="miss") == 2
    assert value(found, "rag_ingest_freshness_seconds_count") == 1
    assert value(found, "ragline_inflight_requests") == 0
    assert value(found, "rag_degraded_answers_total") == 0
    bucket_bounds = {dict(labels)["le"] for (name, labels) in found if name == "rag_query_latency_seconds_bucket"}
    assert {"0.8", "1.0", "1.5"} <= bucket_bounds  # fitted to the 1 s SLO


# -- traces: one query, one trace, a span from each stage -------------------------------------


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def traced_pipeline(request, tmp_path, span_exporter):
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(*(f"rag-{name}-{suffix}" for name in ("docs", "queries", "context", "answers", "dlq")))
    if request.param == "memory":
        bus = MemoryBus()
    else:
        from ragline.adapters.buses.kafka import KafkaBus, TopicSpec

        bus = KafkaBus(request.getfixturevalue("kafka_broker").bootstrap, session_timeout_ms=2000)
        await bus.create_topics([TopicSpec(name, partitions=2) for name in vars(topics).values()])
    settings = Settings.load(
        milvus_uri=str(tmp_path / "t.db"),
        embedder="hashing",
        generator="extractive",
        min_relevance=0.0,
        cache_url="none",
    )
    embedder = HashingEmbedder()
    engine = Engine(settings, embedder, MilvusStore.of(settings.store, embedder.dimension), ExtractiveGenerator())
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    async with Pipeline(engine, bus, topics, timeout_s=60) as pipeline:
        yield pipeline, topics
    await engine.close()
    await bus.close()


async def test_a_query_through_the_pipeline_is_one_trace_with_a_span_from_each_stage(traced_pipeline, span_exporter):
    pipeline, topics = traced_pipeline
    span_exporter.clear()
    answer = await pipeline.gateway.ask(Query(text="What does the waggle dance tell?"))
    assert answer.citations
    expected = {"gateway query", f"{topics.queries} process", "retrieve", f"{topics.context} process", "generate"}

    def finished() -> dict:
        spans = [
            s
            for s in span_exporter.get_finished_spans()
            if s.attributes.get("request_id") == answer.request_id or s.name in ("retrieve", "generate")
        ]
        return {s.name: s for s in spans}

    # a worker's "process" span ends after its output is published and its offset
    # committed, so it may finish just after the answer reached the gateway
    deadline = asyncio.get_running_loop().time() + 10
    while not expected <= set(finished()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    by_name = finished()
    assert expected <= set(by_name), sorted(by_name)
    trace_ids = {by_name[name].context.trace_id for name in expected}
    assert len(trace_ids) == 1  # one trace across the gateway and the workers (over Kafka: via headers)
    root = by_name["gateway query"]
    assert by_name[f"{topics.queries} process"].parent.span_id == root.context.span_id
    assert by_name["retrieve"].parent.span_id == by_name[f"{topics.queries} process"].context.span_id
    assert by_name[f"{topics.context} process"].parent.span_id == by_name[f"{topics.queries} process"].context.span_id
    assert by_name["generate"].parent.span_id == by_name[f"{topics.context} process"].context.span_id


# -- logs ------------------------------------------------------------------------------------------


def test_log_lines_are_json_with_request_id_tenant_and_stage():
    record = logging.LogRecord(
        "ragline.worker", logging.WARNING, __file__, 1, "dead letter from %s", ("retrieve",), None
    )
    with log_context(request_id="r-1", tenant="acme", stage="retrieve"):
        line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "dead letter from retrieve" and entry["level"] == "warning"
    assert (entry["request_id"], entry["tenant"], entry["stage"]) == ("r-1", "acme", "retrieve")
    assert "request_id" not in json.loads(JsonFormatter().format(record))  # context ends with the block


# -- alert rules and the dashboard ------------------------------------------------------------------


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing_tool(
            "promtool not installed (Debian package `prometheus`; scripts/setup.sh --test installs it as root)"
        )
    return found


def test_the_alert_and_recording_rules_are_valid():
    done = subprocess.run(
        [_promtool(), "check", "rules", str(DEPLOY / "prometheus" / "ragline.rules.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_fires_on_bad_series_and_stays_silent_on_good_ones():
    tests = DEPLOY / "prometheus" / "tests" / "ragline.rules.test.yml"
    done = subprocess.run(
        [_promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=120, cwd=tests.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr
    covered = {
        case["alertname"]
        for test in yaml.safe_load(tests.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((DEPLOY / "prometheus" / "ragline.rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert alerts == covered  # every alert has a test
    assert {
        "RAGHighLatency",
        "RAGErrorBudgetBurnFast",
        "RAGErrorBudgetBurnSlow",
        "RAGDeadLetters",
        "RAGConsumerLagHigh",
        "RAGIngestFreshnessSlow",
    } <= alerts


_PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "vector",
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "clamp_min",
    "abs",
    "deriv",
    "le",
    "e",
    "inf",
    "nan",
    "bool",
}


def metric_names(expr: str) -> set[str]:
    """The metric (or recorded series) names an expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {n for n in names if n.lower() not in _PROMQL_WORDS and not re.fullmatch(r"[0-9.e]+", n)}


def exported_names() -> set[str]:
    """Every series name ragline's metrics expose (histograms and counters with their suffixes)."""
    metrics = Metrics()
    metrics.watch_lag(lambda: {("g", "t", 0): 1})
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in ("_total", "_bucket", "_sum", "_count"))
    return names


def test_every_dashboard_and_rule_query_names_a_metric_the_code_exports():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "ragline.rules.yml").read_text())["groups"]
    recorded = {rule["record"] for group in rules for rule in group["rules"] if "record" in rule}
    known = exported_names() | recorded
    dashboard = json.loads((DEPLOY / "grafana" / "ragline-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [rule["expr"] for group in rules for rule in group["rules"]]
    unknown = {name for expr in exprs for name in metric_names(expr)} - known
    assert not unknown, f"queries name series nobody exports: {sorted(unknown)}"
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in (
        "latency",
        "queries per second",
        "error rate",
        "cache hit rate",
        "consumer lag",
        "dead letters",
        "freshness",
        "degraded",
    ):
        assert topic in titles
    assert metric_names('sum(rate(foo_total{a="b"}[5m])) / bar') == {"foo_total", "bar"}  # the parser itself


async def test_the_memory_bus_reports_consumer_lag_per_group():
    bus = MemoryBus()
    metrics = Metrics()
    metrics.watch_lag(bus.lag)
    for i in range(5):
        await bus.publish("rag-queries", b"q%d" % i)
    stream = bus.consume(["rag-queries"], "ragline-retrieve")
    first = await anext(stream)
    await bus.commit(first)
    await anext(stream)  # in hand, not committed: still lag
    assert (
        metrics.registry.get_sample_value(
            "ragline_consumer_lag", {"group": "ragline-retrieve", "topic": "rag-queries", "partition": "0"}
        )
        == 4
    )
    await stream.aclose()
    await asyncio.sleep(0)
