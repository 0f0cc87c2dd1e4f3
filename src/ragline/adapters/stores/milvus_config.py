"""What the Milvus adapter needs, and nothing else: built from Settings at the edge."""

from __future__ import annotations

from dataclasses import dataclass

from ragline.core.errors import ConfigurationError
from ragline.core.registry import scheme_of
from ragline.settings import Settings

SERVER_SCHEMES = ("http", "https", "tcp", "grpc")  # a Milvus server or cluster; a plain path is Milvus Lite


def is_server_uri(uri: str) -> bool:
    return scheme_of(uri) in SERVER_SCHEMES


@dataclass(frozen=True)
class IndexSpec:
    kind: str  # FLAT, IVF_FLAT, HNSW
    build_params: dict[str, int]
    search_params: dict[str, int]

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexSpec:
        kind, server = settings.index, is_server_uri(settings.milvus_uri)
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
    """What the Milvus adapter needs, and nothing else (built from Settings at the edge)."""

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
    def from_settings(cls, settings: Settings) -> MilvusConfig:
        return cls(
            uri=settings.milvus_uri, token=settings.milvus_token or "", collection=settings.collection,
            index=IndexSpec.from_settings(settings), timeout_s=settings.milvus_timeout_s,
            workers=settings.milvus_workers, queue=settings.milvus_queue, rrf_k=settings.rrf_k,
            bm25_analyzer=settings.bm25_analyzer, shards=settings.shards, replicas=settings.replicas,
            load_timeout_s=settings.milvus_load_timeout_s,
        )  # fmt: skip
