"""A Python client for ragline's HTTP API: ``Client`` and ``AsyncClient`` (httpx).

    from ragline.client import Client

    with Client("http://127.0.0.1:8080", api_key="rl_...") as rag:
        rag.add([{"id": "faq.md", "text": "Refunds within 30 days."}], wait=True)
        print(rag.search("refund policy").hits[0].text)
        print(rag.ask("What is the refund policy?").text)
        for piece in rag.stream("What is the refund policy?"):
            print(piece if isinstance(piece, str) else piece.citations)

Both clients have the same methods (``AsyncClient``'s are coroutines, its ``stream`` and
``documents`` async iterators). Errors come back as ragline's own exceptions
(``ragline.core.errors``), with ``status`` (the HTTP status) and ``problem`` (the RFC 9457
body) attached: 400/422 InvalidInput, 413 TooLarge, 401 Unauthorized, 403 Forbidden,
404 NotFound, 429 RateLimited (``retry_after_s``), 501 NotImplementedInShape, 503
DependencyUnavailable (``retry_after_s``; also when the server cannot be reached), 504
DependencyTimeout (also when it does not answer within ``timeout``), anything else
RaglineError. Nothing is retried behind the caller's back: writes are idempotent (ids
are the caller's, or derived from the content), so retrying one is safe.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ragline.core.errors import (
    ConfigurationError,
    DependencyTimeout,
    DependencyUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    NotImplementedInShape,
    RaglineError,
    RateLimited,
    TooLarge,
    Unauthorized,
)
from ragline.core.models import Answer, Document
from ragline.service.api.schemas import (
    DeleteResponse,
    DocumentList,
    DocumentOut,
    DocumentsResponse,
    IngestionJob,
    SearchResponse,
)

__all__ = ["AsyncClient", "Client"]

_ERRORS: dict[int, type[RaglineError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: DependencyTimeout,
    413: TooLarge,
    422: InvalidInput,
    501: NotImplementedInShape,
    503: DependencyUnavailable,
    504: DependencyTimeout,
}
_UPLOAD_BATCH = 32  # files per multipart request


def base_url(url: str) -> str:
    """The server's base URL: ``http://host:8080``, also given as ``http://host:8080/``
    or ``http://host:8080/v1`` (the paths the client calls start with /v1)."""
    base = url.strip().rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    parsed = httpx.URL(base) if "://" in base else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"{url!r} is not a server URL: pass its base, e.g. http://127.0.0.1:8080")
    return base


@dataclass
class _Call:
    """One request and how to read its answer: the part both clients share."""

    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    parse: Any = None  # a pydantic model class, or None for the JSON as is


class _Api:
    def __init__(self, url: str | None, api_key: str | None, tenant: str | None, timeout: float) -> None:
        self.url = base_url(url or os.environ.get("RAGLINE_URL") or "http://127.0.0.1:8080")
        key = api_key if api_key is not None else os.environ.get("RAGLINE_API_KEY")
        self.api_key, self.tenant = key, tenant
        self.headers = {"Accept": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        if tenant:  # honoured only where the credential lets the caller choose (--no-auth, the owner's token)
            self.headers["X-Ragline-Tenant"] = tenant
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))

    # The calls: what each method sends and what it reads back.
    def _add(self, documents: Iterable[Document | Mapping[str, Any]], wait: bool) -> _Call:
        docs = [_document_body(d) for d in documents]
        return _Call("POST", "/v1/documents", {"json": {"documents": docs, "wait": wait}}, DocumentsResponse)

    def _upload(self, files: list[tuple[str, bytes]], wait: bool) -> _Call:
        parts = [("files", (name, data)) for name, data in files]
        return _Call(
            "POST", "/v1/documents/files", {"files": parts, "data": {"wait": str(wait).lower()}}, DocumentsResponse
        )

    def _page(self, prefix: str, after: str, limit: int, where: Mapping[str, str] | None = None) -> _Call:
        params: dict[str, Any] = {"prefix": prefix, "after": after, "limit": limit}
        if where:
            params["where"] = [f"{k}={v}" for k, v in where.items()]
        return _Call("GET", "/v1/documents", {"params": params}, DocumentList)

    def _get(self, document_id: str) -> _Call:
        return _Call("GET", f"/v1/documents/{_quote(document_id)}", {}, DocumentOut)

    def _delete(self, document_id: str) -> _Call:
        return _Call("DELETE", f"/v1/documents/{_quote(document_id)}", {}, DeleteResponse)

    def _ingestion(self, job_id: str) -> _Call:
        return _Call("GET", f"/v1/ingestions/{_quote(job_id)}", {}, IngestionJob)

    def _search(self, query: str, top_k: int | None, filters: Mapping[str, Any] | None, mode: str | None) -> _Call:
        body = _without_none({"query": query, "top_k": top_k, "filters": dict(filters or {}), "mode": mode})
        return _Call("POST", "/v1/search", {"json": body}, SearchResponse)

    def _ask(
        self,
        question: str,
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        mode: str | None,
        stream: bool,
        generator: str | None = None,
    ) -> _Call:
        body = _without_none(
            {
                "question": question,
                "top_k": top_k,
                "filters": dict(filters or {}),
                "mode": mode,
                "stream": stream,
                "generator": generator,
            }
        )
        return _Call("POST", "/v1/query", {"json": body}, Answer)

    def _stats(self) -> _Call:
        return _Call("GET", "/v1/stats")

    def _request(self, call: _Call) -> tuple[str, str, dict[str, Any]]:
        return call.method, self.url + call.path, call.kwargs


class Client(_Api):
    """ragline over HTTP, blocking. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, tenant, timeout)
        self._http = httpx.Client(headers=self.headers, timeout=self.timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def add(self, documents: Iterable[Document | Mapping[str, Any]], wait: bool = False) -> DocumentsResponse:
        """Add or replace documents (dicts with ``text`` and optional ``id``, ``metadata``).
        ``wait``: return once they are searchable; otherwise a job id to follow."""
        return self._call(self._add(documents, wait))

    def upload(self, paths: Iterable[str | Path], wait: bool = False) -> list[DocumentsResponse]:
        """Upload files (parsed by the server; each document's id is its file name)."""
        return [self._call(self._upload(batch, wait)) for batch in _file_batches(paths)]

    def list_documents(
        self, prefix: str = "", after: str = "", limit: int = 100, where: Mapping[str, str] | None = None
    ) -> DocumentList:
        """One page in id order; pass its ``next`` as ``after`` for the next one.
        ``where``: metadata equality filters (string values)."""
        return self._call(self._page(prefix, after, limit, where))

    def documents(
        self, prefix: str = "", page_size: int = 500, where: Mapping[str, str] | None = None
    ) -> Iterator[Any]:
        """Every document whose id starts with ``prefix`` (and matches ``where``), page after page."""
        after: str | None = ""
        while after is not None:
            page = self.list_documents(prefix, after, page_size, where)
            yield from page.documents
            after = page.next

    def get(self, document_id: str) -> DocumentOut:
        return self._call(self._get(document_id))

    def delete(self, document_id: str) -> DeleteResponse:
        return self._call(self._delete(document_id))

    def ingestion(self, job_id: str) -> IngestionJob:
        return self._call(self._ingestion(job_id))

    def search(
        self,
        query: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> SearchResponse:
        return self._call(self._search(query, top_k, filters, mode))

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
        generator: str | None = None,
    ) -> Answer:
        return self._call(self._ask(question, top_k, filters, mode, stream=False, generator=generator))

    def stream(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
        generator: str | None = None,
    ) -> Iterator[str | Answer]:
        """The answer's text as it is generated (``str`` pieces), then the ``Answer``."""
        method, url, kwargs = self._request(self._ask(question, top_k, filters, mode, stream=True, generator=generator))
        try:
            with self._http.stream(method, url, headers={"Accept": "text/event-stream"}, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise _error(response)
                events = _Events()
                for line in response.iter_lines():
                    item = events.feed(line)
                    if item is not None:
                        yield item
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url) from exc

    def stats(self) -> dict[str, Any]:
        """The caller's tenant: how many chunks, which collection and embedder."""
        return self._call(self._stats())

    def readiness(self) -> dict[str, dict[str, Any]]:
        """The server's dependencies and their checks (GET /readyz; ready or not)."""
        try:
            return _dependencies(self._http.get(f"{self.url}/readyz"))
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url) from exc

    def _call(self, call: _Call) -> Any:
        method, url, kwargs = self._request(call)
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url) from exc
        return _parse(response, call)


class AsyncClient(_Api):
    """ragline over HTTP for asyncio code: the same methods as ``Client``, awaited."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, tenant, timeout)
        self._http = httpx.AsyncClient(headers=self.headers, timeout=self.timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def add(self, documents: Iterable[Document | Mapping[str, Any]], wait: bool = False) -> DocumentsResponse:
        return await self._call(self._add(documents, wait))

    async def upload(self, paths: Iterable[str | Path], wait: bool = False) -> list[DocumentsResponse]:
        return [await self._call(self._upload(batch, wait)) for batch in _file_batches(paths)]

    async def list_documents(
        self, prefix: str = "", after: str = "", limit: int = 100, where: Mapping[str, str] | None = None
    ) -> DocumentList:
        return await self._call(self._page(prefix, after, limit, where))

    async def documents(
        self, prefix: str = "", page_size: int = 500, where: Mapping[str, str] | None = None
    ) -> AsyncIterator[Any]:
        after: str | None = ""
        while after is not None:
            page = await self.list_documents(prefix, after, page_size, where)
            for doc in page.documents:
                yield doc
            after = page.next

    async def get(self, document_id: str) -> DocumentOut:
        return await self._call(self._get(document_id))

    async def delete(self, document_id: str) -> DeleteResponse:
        return await self._call(self._delete(document_id))

    async def ingestion(self, job_id: str) -> IngestionJob:
        return await self._call(self._ingestion(job_id))

    async def search(
        self,
        query: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> SearchResponse:
        return await self._call(self._search(query, top_k, filters, mode))

    async def ask(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
        generator: str | None = None,
    ) -> Answer:
        return await self._call(self._ask(question, top_k, filters, mode, stream=False, generator=generator))

    async def stream(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
        generator: str | None = None,
    ) -> AsyncIterator[str | Answer]:
        method, url, kwargs = self._request(self._ask(question, top_k, filters, mode, stream=True, generator=generator))
        try:
            async with self._http.stream(method, url, headers={"Accept": "text/event-stream"}, **kwargs) as response:
                if response.is_error:
                    await response.aread()
                    raise _error(response)
                events = _Events()
                async for line in response.aiter_lines():
                    item = events.feed(line)
                    if item is not None:
                        yield item
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url) from exc

    async def stats(self) -> dict[str, Any]:
        return await self._call(self._stats())

    async def readiness(self) -> dict[str, dict[str, Any]]:
        try:
            return _dependencies(await self._http.get(f"{self.url}/readyz"))
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url) from exc

    async def _call(self, call: _Call) -> Any:
        method, url, kwargs = self._request(call)
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url) from exc
        return _parse(response, call)


class _Events:
    """Server-sent events, a line at a time -> answer text pieces, then the Answer; an
    ``error`` event raises."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> str | Answer | None:
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].strip())
        elif not line and self.data:
            event, payload = self.event, json.loads("\n".join(self.data))
            self.event, self.data = "message", []
            if event == "token":
                return str(payload["text"])
            if event == "answer":
                return Answer.model_validate(payload)
            if event == "error":
                raise _from_problem(int(payload.get("status", 500)), payload, None)
        return None


def _parse(response: httpx.Response, call: _Call) -> Any:
    if response.is_error:
        raise _error(response)
    body = response.json()
    return call.parse.model_validate(body) if call.parse is not None else body


def _dependencies(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """/readyz's checks: 200 (ready) and 503 (not) both carry them."""
    if response.status_code not in (200, 503):
        raise _error(response)
    return dict(response.json()["dependencies"])


def _error(response: httpx.Response) -> RaglineError:
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text[:500] or response.reason_phrase}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)[:500]}
    return _from_problem(response.status_code, problem, response.headers.get("Retry-After"))


def _from_problem(status: int, problem: dict[str, Any], retry_after: str | None) -> RaglineError:
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    wait = _seconds(retry_after)
    exc: RaglineError
    if status == 429:
        exc = RateLimited(wait if wait is not None else 1.0)
    else:
        exc = _ERRORS.get(status, RaglineError)(f"{detail} (HTTP {status})")
        if wait is not None:
            exc.retry_after_s = wait  # type: ignore[attr-defined]
    exc.status = status  # type: ignore[attr-defined]
    exc.problem = problem  # type: ignore[attr-defined]
    return exc


def _transport_error(exc: httpx.HTTPError, url: str) -> RaglineError:
    if isinstance(exc, httpx.TimeoutException):
        return DependencyTimeout(f"ragline at {url} did not answer in time ({type(exc).__name__})")
    return DependencyUnavailable(f"cannot reach ragline at {url}: {exc or type(exc).__name__}")


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None


def _document_body(doc: Document | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(doc, Document):
        return _without_none({"id": doc.id, "text": doc.text, "metadata": doc.metadata, "pages": doc.pages})
    return {k: v for k, v in doc.items() if k in ("id", "text", "metadata", "pages")}


def _file_batches(paths: Iterable[str | Path]) -> Iterator[list[tuple[str, bytes]]]:
    batch: list[tuple[str, bytes]] = []
    for path in map(Path, paths):
        batch.append((path.name, path.read_bytes()))
        if len(batch) == _UPLOAD_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _quote(value: str) -> str:
    return httpx.URL("/" + value).raw_path.decode()[1:] if value else value


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None and v != {}}
