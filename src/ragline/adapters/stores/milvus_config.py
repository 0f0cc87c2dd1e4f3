"""What the Milvus adapter needs, and nothing else: built from the store settings group."""

from __future__ import annotations

from dataclasses import dataclass

from ragline.core.errors import ConfigurationError
from ragline.core.registry import scheme_of
from ragline.settings import StoreSettings

SERVER_SCHEMES = ("http", "https", "tcp", "grpc")  # a Milvus server or cluster; a plain path is Milvus Lite


def is_server_uri(uri: str) -> bool:
    return scheme_of(uri) in SERVER_SCHEMES


@dataclass(frozen=True)
class IndexSpec:
    kind: str  # FLAT, IVF_FLAT, HNSW
    build_params: dict[str, int]
    search_params: dict[str, int]

    @classmethod
    def of(cls, settings: StoreSettings) -> IndexSpec:
        kind, server = settings.index, is_server_uri(settings.url)
        if kind == "auto":
            kind = "HNSW" if server else "FLAT"
        if kind == "HNSW" and not server:
            raise ConfigurationError("Milvus Lite supports only FLAT and IVF_FLAT indexes, not HNSW")
        if kind == "IVF_FLAT":
            return cls(kind, {"nlist": settings.ivf_nlist}, {"nprobe": settings.ivf_nprobe})
        if kind == "HNSW":
            return cls(
                kind, {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction}, {"ef": settings.hnsw_ef}
            )
        return cls("FLAT", {}, {})


@dataclass(frozen=True)
class MilvusConfig:
    """What the Milvus adapter needs, and nothing else (built from the store settings group)."""

    uri: str
    token: str
    collection: str
    index: IndexSpec
    timeout_s: float
    workers: int
    queue: int
    rrf_k: int
    bm25_analyzer: str
    shards: int
    replicas: int
    load_timeout_s: float = 600.0  # loading a large collection at start-up (not one RPC's 10 s)

    @property
    def is_server(self) -> bool:
        return is_server_uri(self.uri)

    @classmethod
    def of(cls, settings: StoreSettings) -> MilvusConfig:
        return cls(
            uri=settings.url, token=settings.token or "", collection=settings.collection, index=IndexSpec.of(settings),
            timeout_s=settings.timeout_s, workers=settings.workers, queue=settings.queue, rrf_k=settings.rrf_k,
            bm25_analyzer=settings.bm25_analyzer, shards=settings.shards, replicas=settings.replicas,
            load_timeout_s=settings.load_timeout_s,
        )  # fmt: skip
