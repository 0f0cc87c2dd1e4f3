"""VectorStore adapters, chosen by the scheme of the store URL
(``milvus_uri``, grouped as ``settings.store.url``).

``memory://`` the in-memory store; ``http(s)://``, ``tcp://`` and ``grpc://`` a Milvus
server or cluster; a plain file path Milvus Lite. A new store is one module and one
``STORES.register(scheme, factory)``.
"""

from __future__ import annotations

from collections.abc import Callable

from ragline.adapters.stores.milvus_config import SERVER_SCHEMES
from ragline.core.ports import VectorStore
from ragline.core.registry import Registry, scheme_of
from ragline.settings import StoreSettings

StoreFactory = Callable[[StoreSettings, int], VectorStore]
STORES: Registry[StoreFactory] = Registry("vector store", "milvus_uri")


def build_store(config: StoreSettings, dimension: int) -> VectorStore:
    """The store ``config.url`` names (``settings.store``)."""
    return STORES.factory(scheme_of(config.url))(config, dimension)


def _milvus(config: StoreSettings, dimension: int) -> VectorStore:
    from ragline.adapters.stores.milvus import MilvusStore

    return MilvusStore.of(config, dimension)


def _memory(config: StoreSettings, dimension: int) -> VectorStore:
    from ragline.adapters.stores.memory import MemoryStore

    return MemoryStore(dimension)


for _scheme in ("file", *SERVER_SCHEMES):
    STORES.register(_scheme, _milvus)
STORES.register("memory", _memory)
