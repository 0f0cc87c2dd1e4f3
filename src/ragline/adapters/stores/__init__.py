"""VectorStore adapters, chosen by the scheme of ``milvus_uri``.

``memory://`` the in-memory store; ``http(s)://``, ``tcp://`` and ``grpc://`` a Milvus
server or cluster; a plain file path Milvus Lite. A new store is one module and one
``STORES.register(scheme, factory)``.
"""

from __future__ import annotations

from collections.abc import Callable

from ragline.adapters.stores.milvus_config import SERVER_SCHEMES
from ragline.core.ports import VectorStore
from ragline.core.registry import Registry, scheme_of
from ragline.settings import Settings

StoreFactory = Callable[[Settings, int], VectorStore]
STORES: Registry[StoreFactory] = Registry("vector store", "milvus_uri")


def build_store(settings: Settings, dimension: int) -> VectorStore:
    return STORES.factory(scheme_of(settings.milvus_uri))(settings, dimension)


def _milvus(settings: Settings, dimension: int) -> VectorStore:
    from ragline.adapters.stores.milvus import MilvusStore

    return MilvusStore.from_settings(settings, dimension)


def _memory(settings: Settings, dimension: int) -> VectorStore:
    from ragline.adapters.stores.memory import MemoryStore

    return MemoryStore(dimension)


for _scheme in ("file", *SERVER_SCHEMES):
    STORES.register(_scheme, _milvus)
STORES.register("memory", _memory)
