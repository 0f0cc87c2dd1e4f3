"""The Milvus vector store: Milvus Lite for a file path, a server or cluster for a URI.

One collection per deployment. Tenants share it and every read and write is
filtered by tenant. (A partition key would prune better on large multi-tenant
servers, but Milvus 2.3 routes upserts to the wrong partition when one is set:
measured here, an upserted row was invisible to a tenant-filtered search. A plain
filtered field behaves the same on every Milvus we support.)

Reads use Strong consistency, so a search sees every write that returned before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import typing
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragline.adapters.stores.milvus_config import MilvusConfig
from ragline.adapters.stores.milvus_rpc import (
    filter_expression,
    quote,
    takes_options,
    translated,
    truncate_utf8,
    warm_column_writes,
)
from ragline.adapters.stores.ownership import DatabaseOwnership
from ragline.core.bulkhead import Bulkhead
from ragline.core.coalescing import Coalescer
from ragline.core.errors import (
    ConfigurationError,
    DependencyUnavailable,
    InvalidInput,
    RaglineError,
)
from ragline.core.models import Chunk, FilterValue, Hit
from ragline.core.ports import DocumentRow, StoredChunk
from ragline.settings import StoreSettings

log = logging.getLogger("ragline.milvus")

MAX_TEXT_BYTES = 65_535
_PAGE = 16_384  # Milvus's largest query window (limit + offset)
_WRITE_BATCH = 512
_WRITE_PARALLEL = 2  # concurrent upsert calls of one write (two cores' worth for Milvus Lite)
_WRITE_MIN = 64  # rows below which a write is not split
_RETRIES = 3  # pymilvus' own retries of a failed RPC, within the call's timeout
_PING_TIMEOUT_S = 2.0  # readiness must notice a dead Milvus within 5 s
_HIT_FIELDS = ["document_id", "number", "text", "content_hash", "metadata"]
_SENTENCES_BYTES = 65_535  # Milvus' VARCHAR limit; sentences.encode keeps within it


def _sentences_field(blob: str | None) -> str:
    """The stored form: "" for none (no nullable fields on Milvus 2.3 servers)."""
    return blob if blob and len(blob.encode()) <= _SENTENCES_BYTES else ""


class MilvusStore:
    """The VectorStore port over pymilvus' MilvusClient."""

    def __init__(self, config: MilvusConfig, dimension: int) -> None:
        self.config = config
        self.uri = config.uri
        self.collection = config.collection
        self.dimension = dimension
        self.index = config.index
        self.timeout = config.timeout_s
        self.rpc_timeout = max(1, int(self.timeout))  # an int: pymilvus then bounds its retries by time
        self.bulkhead = Bulkhead("milvus", workers=config.workers, queue=config.queue)
        self._searches: Coalescer[tuple[np.ndarray, str], list[Hit]] = Coalescer(
            "milvus search", self._search_batch, max_batch=8, max_queue=max(64, config.queue)
        )
        self._owner: DatabaseOwnership | None = None
        self._client = self._connect()
        self._revived = 0  # Milvus Lite processes started again after they died
        self._reviving: asyncio.Lock | None = None
        self._column_target: tuple[Any, Any, list[str]] | None = None  # (client, its ORM Collection, field order)
        self.full_text = False  # BM25 over the text field: Milvus Lite and servers >= 2.5
        self.has_sentences = True  # a field for sentences.encode (collections made before lack it)
        self.rrf_k = config.rrf_k
        self._ensure_collection()
        self._private()
        threading.Thread(target=warm_column_writes, name="pymilvus-warm", daemon=True).start()

    @classmethod
    def of(cls, settings: StoreSettings, dimension: int) -> MilvusStore:
        """The store ``settings.store`` describes."""
        return cls(MilvusConfig.of(settings), dimension)

    # -- set-up ------------------------------------------------------------------

    def _connect(self) -> Any:
        if not self.config.is_server:
            self._lite_path = str(Path(self.uri).expanduser())
            Path(self.uri).expanduser().parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._owner = DatabaseOwnership(Path(self.uri).expanduser())
            self._owner.acquire()  # before Milvus Lite starts: a second process fails at once
        return self._client_for_uri()

    def _client_for_uri(self) -> Any:
        from pymilvus import MilvusClient

        with translated(self.uri), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # milvus-lite's import
            return MilvusClient(uri=self.uri, token=self.config.token, timeout=self.rpc_timeout)

    # -- Milvus Lite's process -----------------------------------------------------

    def lite_process(self) -> Any:
        """The Milvus Lite child process serving this file (a Popen), or None."""
        if self.config.is_server:
            return None
        from milvus_lite.server_manager import server_manager_instance

        server = server_manager_instance._servers.get(str(Path(self._lite_path).absolute().resolve()))
        return getattr(server, "_p", None)

    def _lite_died(self) -> bool:
        process = self.lite_process()
        return process is not None and process.poll() is not None

    async def _revive_lite(self) -> None:
        """Milvus Lite's process died (killed, out of memory): the first caller starts it
        again and goes on; callers meanwhile get 503 at once (they would otherwise wait for
        the restart beyond their own deadline)."""
        self._reviving = self._reviving or asyncio.Lock()
        if self._reviving.locked():
            raise DependencyUnavailable(f"Milvus Lite at {self._lite_path} is being started again; retry shortly")
        async with self._reviving:
            if not self._lite_died():
                return  # another caller did it
            process = self.lite_process()
            log.error(
                "Milvus Lite's process for %s died (exit status %s): starting it again",
                self._lite_path,
                process.returncode if process is not None else "?",
            )
            try:
                await asyncio.wait_for(asyncio.to_thread(self._restart_lite), self.config.load_timeout_s)
            except Exception as exc:
                raise DependencyUnavailable(
                    f"Milvus Lite at {self._lite_path} died and did not start again: {exc}"
                ) from exc
            self._revived += 1

    def _restart_lite(self) -> None:
        from milvus_lite.server_manager import server_manager_instance

        with contextlib.suppress(Exception):
            self._client.close()
        server_manager_instance.release_server(self._lite_path)
        client = self._client_for_uri()
        with translated(self.uri):
            client.load_collection(self.collection, timeout=max(self.rpc_timeout, int(self.config.load_timeout_s)))
        self._client = client

    def _private(self) -> None:
        """Milvus Lite's file holds every tenant's text: readable by this user only."""
        if not self.config.is_server:
            with contextlib.suppress(OSError):
                os.chmod(Path(self.uri).expanduser(), 0o600)

    def _ensure_collection(self) -> None:
        with translated(self.uri):
            if self._client.has_collection(self.collection, timeout=self.rpc_timeout):
                self._check_schema()
            else:
                self.full_text = self._server_supports_bm25()
                self.has_sentences = True
                self._create_collection()
            # A 100k-chunk collection took more than one RPC's 10 s to load (start-up failed).
            self._client.load_collection(
                self.collection, timeout=max(self.rpc_timeout, int(self.config.load_timeout_s))
            )

    def _server_supports_bm25(self) -> bool:
        if not self.config.is_server:
            return True
        version = str(self._client.get_server_version(timeout=self.rpc_timeout)).lstrip("v")
        major_minor = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
        if major_minor < (2, 5):
            log.warning("Milvus %s has no BM25 full-text search: bm25 and hybrid retrieval serve dense", version)
            return False
        return True

    def _check_schema(self) -> None:
        info = self._client.describe_collection(self.collection, timeout=self.rpc_timeout)
        self.full_text = any(f["name"] == "sparse" for f in info["fields"])
        # Collections made before sentence vectors were stored have no field for them:
        # their answers embed the passages' sentences at answer time.
        self.has_sentences = any(f["name"] == "sentences" for f in info["fields"])
        vector = next(f for f in info["fields"] if f["name"] == "vector")
        stored = int(vector["params"]["dim"])
        if stored != self.dimension:
            raise ConfigurationError(
                f"collection {self.collection!r} holds {stored}-dimensional vectors but the "
                f"embedder makes {self.dimension}; use another collection or re-ingest"
            )

    def _create_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("tenant", DataType.VARCHAR, max_length=128)
        schema.add_field("document_id", DataType.VARCHAR, max_length=512)
        schema.add_field("number", DataType.INT64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        analyzer = {"enable_analyzer": True, "analyzer_params": {"type": self.config.bm25_analyzer}}
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, **(analyzer if self.full_text else {}))
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        schema.add_field("sentences", DataType.VARCHAR, max_length=_SENTENCES_BYTES)
        index_params = self._client.prepare_index_params()
        index_params.add_index(
            "vector", index_type=self.index.kind, metric_type="COSINE", params=self.index.build_params
        )
        if self.full_text:
            from pymilvus import Function, FunctionType

            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name="bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=["text"],
                    output_field_names=["sparse"],
                )
            )
            index_params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        extra: dict[str, Any] = {}
        if self.config.is_server:
            extra = {"num_shards": self.config.shards, "replica_number": self.config.replicas}
        self._client.create_collection(
            self.collection,
            schema=schema,
            index_params=index_params,
            consistency_level="Strong",
            timeout=self.rpc_timeout,
            **extra,
        )

    # -- the port ------------------------------------------------------------------

    async def _call(
        self, method: str | Callable[..., Any], *args: Any, timeout_s: float | None = None, **kwargs: Any
    ) -> Any:
        """One pymilvus call on the Milvus bulkhead, bounded in time.

        pymilvus bounds its retries by time only when ``timeout`` is an int (a float
        means 75 attempts, minutes against a dead server), so it gets whole seconds and
        a few retries at most; the bulkhead's deadline is the hard limit on top.
        """
        timeout_s = timeout_s or self.timeout
        rpc_timeout = max(1, int(timeout_s))
        if self._lite_died():
            await self._revive_lite()

        call = getattr(self._client, method) if isinstance(method, str) else method
        if isinstance(method, str) and takes_options(call):
            kwargs["retry_times"] = _RETRIES

        def run() -> Any:
            with translated(self.uri):
                return call(self.collection, *args, timeout=rpc_timeout, **kwargs)

        return await self.bulkhead.run(run, deadline_s=timeout_s + 0.5)

    async def upsert(self, chunks: Sequence[Chunk]) -> None:
        """Written as columns, in up to ``_WRITE_PARALLEL`` concurrent calls.

        Measured on SciFact's 12,198 chunks into Milvus Lite (BM25 field included):
        row-based upserts one after the other 4.6 s (1.2 s of it pymilvus turning rows into
        columns in Python); as columns 3.1 s (0.6 s); two calls at a time, 2.2 s — Milvus
        Lite works on concurrent writes with both cores."""
        if not chunks:
            return
        for chunk in chunks:
            if chunk.vector is None or len(chunk.vector) != self.dimension:
                raise InvalidInput(f"chunk {chunk.id} has no {self.dimension}-dimensional vector")
        parts = max(-(-len(chunks) // _WRITE_BATCH), min(_WRITE_PARALLEL, -(-len(chunks) // _WRITE_MIN)))
        size = -(-len(chunks) // parts)
        await asyncio.gather(
            *(
                self._call(self._upsert_columns, self._columns(chunks[i : i + size]))
                for i in range(0, len(chunks), size)
            )
        )

    def _columns(self, chunks: Sequence[Chunk]) -> dict[str, list[Any]]:
        columns: dict[str, list[Any]] = {
            "id": [c.id for c in chunks],
            "tenant": [c.tenant for c in chunks],
            "document_id": [c.document_id for c in chunks],
            "number": [c.number for c in chunks],
            "content_hash": [c.content_hash for c in chunks],
            "text": [truncate_utf8(c.text, MAX_TEXT_BYTES) for c in chunks],
            "metadata": [c.metadata for c in chunks],
            "vector": [c.vector for c in chunks],
        }
        if self.has_sentences:
            columns["sentences"] = [_sentences_field(c.sentences) for c in chunks]
        return columns

    def _upsert_columns(self, collection: str, columns: dict[str, list[Any]], timeout: int) -> Any:
        """pymilvus' column-based upsert (its ORM Collection: MilvusClient takes rows
        only), on the client's own connection, the fields in the schema's order."""
        from pymilvus import Collection

        client = self._client
        target = self._column_target
        if target is None or target[0] is not client:
            orm = Collection(collection, using=client._using)
            names = [f.name for f in orm.schema.fields if not getattr(f, "is_function_output", False)]
            target = self._column_target = (client, orm, names)
        _, orm, names = target
        if set(names) != set(columns):
            raise InvalidInput(f"collection {collection!r} has fields {names}, the write has {sorted(columns)}")
        return orm.upsert([columns[n] for n in names], timeout=timeout)

    async def delete_chunks(self, tenant: str, chunk_ids: Sequence[str]) -> None:
        ids = list(chunk_ids)
        for start in range(0, len(ids), _WRITE_BATCH):
            batch = ", ".join(quote(i) for i in ids[start : start + _WRITE_BATCH])
            await self._call("delete", filter=f"{filter_expression(tenant)} and id in [{batch}]")

    async def delete_document(self, tenant: str, document_id: str) -> int:
        stored = await self.stored_chunks(tenant, [document_id])
        ids = [c.id for c in stored.get(document_id, [])]
        await self.delete_chunks(tenant, ids)
        return len(ids)

    async def stored_chunks(self, tenant: str, document_ids: Sequence[str]) -> dict[str, list[StoredChunk]]:
        found: dict[str, list[StoredChunk]] = {d: [] for d in document_ids}
        fields = ["id", "document_id", "number", "content_hash"]
        for start in range(0, len(document_ids), 256):
            batch = list(document_ids[start : start + 256])
            expr = filter_expression(tenant, {"document_id": batch})
            rows = await self._call("query", filter=expr, output_fields=fields, limit=_PAGE)
            if len(rows) >= _PAGE:  # a very large document: page through it by number
                rows = [r for d in batch for r in await self._rows_by_number(tenant, d, fields)]
            for row in rows:
                found[row["document_id"]].append(
                    StoredChunk(row["id"], row["document_id"], int(row["number"]), row["content_hash"])
                )
        return found

    async def _rows_by_number(self, tenant: str, document_id: str, fields: list[str]) -> list[dict]:
        rows: list[dict] = []
        low = 0
        while True:
            document = filter_expression(tenant, {"document_id": document_id})
            expr = f"{document} and number >= {low} and number < {low + _PAGE}"
            page = await self._call("query", filter=expr, output_fields=fields, limit=_PAGE)
            if not page:
                return rows
            rows.extend(page)
            low += _PAGE

    async def search(
        self,
        tenant: str,
        vector: np.ndarray,
        top_k: int,
        filters: Mapping[str, FilterValue] | None = None,
        *,
        text: str | None = None,
        mode: str = "dense",
        with_sentences: bool = False,
    ) -> list[Hit]:
        """Top-k chunks by dense similarity, BM25 over the text, or both fused by RRF.

        Concurrent searches with the same mode, filter and k share one Milvus request
        (several vectors in one call; coalescing.py): one alone goes at once.
        """
        if mode != "dense" and (not self.full_text or not text):
            mode = "dense"
        item = (np.asarray(vector, dtype=np.float32), text or "")
        sentences = with_sentences and self.has_sentences
        return await self._searches.submit(item, (mode, filter_expression(tenant, filters), top_k, sentences))

    async def _search_batch(self, items: list[tuple[np.ndarray, str]], key: Hashable) -> list[list[Hit]]:
        mode, expr, top_k, sentences = typing.cast(tuple[str, str, int, bool], key)
        outputs = [*_HIT_FIELDS, "sentences"] if sentences else _HIT_FIELDS
        dense = {"metric_type": "COSINE", "params": self._dense_params(top_k)}
        vectors = [v.tolist() for v, _ in items]
        if mode != "dense":
            try:
                return await self._full_text_search(mode, items, dense, expr, top_k, outputs)
            except RaglineError as exc:
                if "Invalid sparse row" not in str(exc):
                    raise
                # BM25 over a collection with no text yet divides by zero inside Milvus
        results = await self._call(
            "search",
            data=vectors,
            anns_field="vector",
            limit=top_k,
            filter=expr,
            output_fields=outputs,
            search_params=dense,
            consistency_level="Strong",
        )
        return [[self._hit(r) for r in hits] for hits in results]

    async def _full_text_search(
        self, mode: str, items: list[tuple[np.ndarray, str]], dense: dict, expr: str, top_k: int, outputs: list[str]
    ) -> list[list[Hit]]:
        fields = [*outputs, "vector"]  # to report each hit's dense similarity too
        texts = [t for _, t in items]
        if mode == "bm25":
            results = await self._call(
                "search",
                data=texts,
                anns_field="sparse",
                limit=top_k,
                filter=expr,
                output_fields=fields,
                search_params={"metric_type": "BM25"},
                consistency_level="Strong",
            )
        else:
            from pymilvus import AnnSearchRequest, RRFRanker

            requests = [
                AnnSearchRequest([v.tolist() for v, _ in items], "vector", dense, limit=top_k, expr=expr),
                AnnSearchRequest(texts, "sparse", {"metric_type": "BM25"}, limit=top_k, expr=expr),
            ]
            results = await self._call(
                "hybrid_search",
                requests,
                RRFRanker(self.rrf_k),
                limit=top_k,
                output_fields=fields,
                consistency_level="Strong",
            )
        return [
            [self._hit(r, similarity=float(query @ np.asarray(r["entity"]["vector"], dtype=np.float32))) for r in hits]
            for (query, _), hits in zip(items, results)
        ]

    def _dense_params(self, top_k: int) -> dict[str, int]:
        params = dict(self.index.search_params)
        if "ef" in params:
            params["ef"] = max(params["ef"], top_k)
        return params

    @staticmethod
    def _hit(result: dict[str, Any], similarity: float | None = None) -> Hit:
        """A search result; ``score`` ranks (cosine, BM25 or RRF), ``similarity`` is always cosine."""
        entity = result["entity"]
        score = float(result["distance"])
        return Hit(
            chunk_id=result["id"],
            document_id=entity["document_id"],
            number=int(entity["number"]),
            text=entity["text"],
            score=score,
            similarity=score if similarity is None else similarity,
            content_hash=entity["content_hash"],
            metadata=entity.get("metadata") or {},
            sentences=entity.get("sentences") or None,
        )

    async def document_chunks(self, tenant: str, document_id: str) -> list[Hit]:
        """A document's chunks in order, with text and metadata (score 1.0)."""
        rows = await self._call(
            "query",
            filter=filter_expression(tenant, {"document_id": document_id}),
            output_fields=["id", *_HIT_FIELDS],
            limit=_PAGE,
        )
        hits = [self._hit({"id": r["id"], "distance": 1.0, "entity": r}) for r in rows]
        return sorted(hits, key=lambda h: h.number)

    async def documents(
        self,
        tenant: str,
        prefix: str = "",
        after: str = "",
        limit: int = 100,
        filters: Mapping[str, FilterValue] | None = None,
    ) -> list[DocumentRow]:
        # Milvus' query has no ORDER BY: the ids in range (first chunks only) are read and
        # sorted here, so a page costs a read of every id after the cursor (ids only).
        clauses = [f"{filter_expression(tenant, filters)} and number == 0"]
        if prefix:
            clauses.append(f"document_id >= {quote(prefix)}")
        if after:
            clauses.append(f"document_id > {quote(after)}")
        rows = await self._call("query", filter=" and ".join(clauses), output_fields=["document_id"], limit=_PAGE)
        if len(rows) >= _PAGE:
            raise InvalidInput(
                f"more than {_PAGE} documents match; narrow the listing with a longer prefix "
                "(a listing reads every matching id: Milvus' query has no ordering)"
            )
        ids = sorted(r["document_id"] for r in rows if r["document_id"].startswith(prefix))[:limit]
        if not ids:
            return []
        expr = f"{filter_expression(tenant, {'document_id': ids})} and number == 0"
        meta = await self._call("query", filter=expr, output_fields=["document_id", "metadata"], limit=len(ids))
        metadata = {r["document_id"]: r.get("metadata") or {} for r in meta}
        return [DocumentRow(i, metadata.get(i, {})) for i in ids]

    async def count(self, tenant: str) -> int:
        rows = await self._call("query", filter=filter_expression(tenant), output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the collection answers."""
        await self._call("get_collection_stats", timeout_s=_PING_TIMEOUT_S)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.to_thread(self._client.close), self.timeout)
        self.bulkhead.close()
        if not self.config.is_server:
            # Stop the embedded server too: it would keep the file open until this process
            # exits, and another process (a server after a CLI command) could not open it.
            with contextlib.suppress(Exception):
                from milvus_lite.server_manager import server_manager_instance

                await asyncio.to_thread(server_manager_instance.release_server, self._lite_path)
        if self._owner is not None:
            self._owner.release()
