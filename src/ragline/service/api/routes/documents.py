"""Documents: write (JSON batches or file uploads), read, delete; ingestion jobs.

A batch is validated document by document before anything is accepted: invalid ones
are reported by index, valid ones are written. Large bodies are decoded and files
parsed on the CPU bulkhead, never on the event loop.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ragline.core.errors import DependencyUnavailable, DocumentError, InvalidInput, NotFound, Overloaded
from ragline.core.ids import content_hash
from ragline.core.limits import Limits, check_text
from ragline.core.models import Document
from ragline.ingest.loaders import load_file
from ragline.seam import catalogue_of
from ragline.service.api.deps import IngestCaller, QueryCaller
from ragline.service.api.routes._common import service
from ragline.service.api.schemas import (
    DeleteResponse,
    DocumentIn,
    DocumentList,
    DocumentOut,
    DocumentsResponse,
    IngestionJob,
    TenantStats,
)
from ragline.service.parse_lanes import ParseDeadline

router = APIRouter(tags=["documents"])

_MAX_BATCH = 1000
_INLINE_BODY = 64_000  # JSON bodies up to this size are decoded on the event loop
_BATCH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DocumentsRequest"}}},
    }
}


@router.post(
    "/v1/documents",
    response_model=DocumentsResponse,
    responses={202: {"model": DocumentsResponse}},
    openapi_extra=_BATCH_SCHEMA,
)
async def upsert_documents(request: Request, who: IngestCaller) -> Any:
    raw = await request.body()
    limits = request.app.state.limits
    if len(raw) <= _INLINE_BODY:  # decoded here in well under a millisecond: no queue to wait in
        docs, rejected, wait = parse_batch(raw, who.tenant, limits)
    else:  # a large body holds the GIL for a while: in a parse child, in the tenant's turn
        docs, rejected, wait = await request.app.state.parsers.run(who.tenant, parse_batch, raw, who.tenant, limits)
    return await _accept(request, who.tenant, docs, rejected, wait)


@router.post("/v1/documents/files", response_model=DocumentsResponse, responses={202: {"model": DocumentsResponse}})
async def upload_documents(
    request: Request,
    who: IngestCaller,
    files: Annotated[list[UploadFile], File()],
    wait: Annotated[bool, Form()] = False,
) -> Any:
    docs, rejected = [], []
    max_bytes = int(request.app.state.settings.max_document_mb * 1_000_000)
    for index, upload in enumerate(files):
        name = Path(upload.filename or f"upload-{uuid.uuid4().hex[:8]}.txt").name
        try:
            data = await upload.read()
            parsers = request.app.state.parsers
            docs.append(await parsers.run(who.tenant, _load_upload, name, data, who.tenant, max_bytes))
        except DocumentError as exc:
            rejected.append({"index": index, "id": name, "error": exc.reason})
        except ParseDeadline as exc:
            rejected.append({"index": index, "id": name, "error": f"{exc}: the file is too slow to parse"})
        except Overloaded:
            raise  # the parsers' queue is full: 503 + Retry-After for the request
        except MemoryError:
            rejected.append({"index": index, "id": name, "error": "parsing it needs more memory than allowed"})
        except DependencyUnavailable as exc:  # the child died: past its memory cap, most often
            rejected.append({"index": index, "id": name, "error": f"{exc}: the file is too large or malformed"})
    if not docs:
        raise InvalidInput("no file could be read: " + "; ".join(f"{r['id']}: {r['error']}" for r in rejected))
    return await _accept(request, who.tenant, docs, rejected, wait)


@router.get("/v1/ingestions/{job_id}", response_model=IngestionJob)
async def ingestion(job_id: str, request: Request, who: IngestCaller) -> dict[str, Any]:
    return request.app.state.jobs.get(who.tenant, job_id).view()


@router.get("/v1/documents", response_model=DocumentList)
async def list_documents(
    request: Request,
    who: QueryCaller,
    prefix: Annotated[str, Query(max_length=512, description="Only ids that start with this.")] = "",
    after: Annotated[str, Query(max_length=512, description="The cursor: `next` of the previous page.")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    where: Annotated[
        list[str] | None, Query(max_length=8, description="Metadata filters KEY=VALUE (all must match).")
    ] = None,
) -> DocumentList:
    """The caller's documents in id order, a page at a time (each with its chunk count, a
    hash of its chunks' content, and its metadata); `next` is the cursor of the next page."""
    for name, value in (("prefix", prefix), ("after", after), *(("where", w) for w in where or [])):
        if not value.isprintable():
            raise InvalidInput(f"{name} must be printable text (no control characters)")
    filters: dict[str, Any] = {}
    for pair in where or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"where: KEY=VALUE, got {pair!r}")
        filters[key] = value
    request.app.state.limits.check_filters(filters)
    documents, cursor = await catalogue_of(service(request)).documents(who.tenant, prefix, after, limit, filters)
    return DocumentList(documents=documents, next=cursor)


@router.get("/v1/stats", response_model=TenantStats)
async def stats(request: Request, who: QueryCaller) -> dict[str, Any]:
    """How many chunks the caller's tenant has, in which collection, with which embedder."""
    return await catalogue_of(service(request)).stats(who.tenant)


@router.get("/v1/documents/{document_id:path}", response_model=DocumentOut)
async def get_document(document_id: str, request: Request, who: QueryCaller) -> DocumentOut:
    chunks = await service(request).document(who.tenant, document_id)
    if not chunks:
        raise NotFound(f"no document {document_id!r}")
    return DocumentOut(id=document_id, tenant=who.tenant, chunks=chunks, metadata=chunks[0].metadata)


@router.delete(
    "/v1/documents/{document_id:path}", response_model=DeleteResponse, responses={202: {"model": DeleteResponse}}
)
async def delete_document(document_id: str, request: Request, who: IngestCaller) -> Any:
    removed = await service(request).delete(who.tenant, document_id)
    if removed is None:  # queued on the documents topic, in order with the document's writes
        return JSONResponse(
            DeleteResponse(id=document_id, deleted_chunks=None, status="accepted").model_dump(), status_code=202
        )
    return DeleteResponse(id=document_id, deleted_chunks=removed, status="deleted")


def parse_batch(raw: bytes, tenant: str, limits: Limits) -> tuple[list[Document], list[dict[str, Any]], bool]:
    """The documents of a JSON batch that pass validation, the refused ones by index, and ``wait``."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict) or not isinstance(body.get("documents"), list):
        raise InvalidInput("the body must be an object with a 'documents' list")
    unknown = set(body) - {"documents", "wait"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    wait, items = body.get("wait", False), body["documents"]
    if not isinstance(wait, bool):
        raise InvalidInput("wait: must be true or false")
    if not 1 <= len(items) <= _MAX_BATCH:
        raise InvalidInput(f"documents: between 1 and {_MAX_BATCH} per request; got {len(items)}")
    docs, rejected = [], []
    for index, item in enumerate(items):
        try:
            docs.append(_document(item, tenant, limits, index))
        except (InvalidInput, ValidationError) as exc:
            given = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
            rejected.append({"index": index, "id": given, "error": _message(exc)})
    if not docs:
        raise InvalidInput(
            "no valid document in the batch: "
            + "; ".join(f"documents[{r['index']}]: {r['error']}" for r in rejected[:5])
        )
    return docs, rejected, wait


def _document(item: Any, tenant: str, limits: Limits, index: int) -> Document:
    doc = DocumentIn.model_validate(item)
    where = f"documents[{index}]"
    check_text(doc.text, f"{where}.text")
    if doc.id is not None:
        check_text(doc.id, f"{where}.id")
    limits.check_metadata(doc.metadata, f"{where}.metadata")
    return Document(
        tenant=tenant,
        id=doc.id or f"doc-{content_hash(doc.text)[:16]}",
        text=doc.text,
        metadata=doc.metadata,
        pages=doc.pages,
    )


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        return f"{where}: {error['msg']}" if where else error["msg"]
    return str(exc)


def _load_upload(name: str, data: bytes, tenant: str, max_bytes: int) -> Document:
    if not name.isprintable() or "/" in name or name in {".", ".."}:
        raise DocumentError(repr(name)[:100], "the file name has control characters or is not a file name")
    if len(name.encode()) > 255:
        raise DocumentError(name[:60] + "...", f"the file name is {len(name.encode())} bytes long; at most 255")
    # An upload is a file named alone, read by the same rules as `ragline ingest FILE`
    # (loaders.load_file): a known type by its converter, an unknown one as text when it
    # is text, else refused with the supported list. No second list of types here.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        doc = load_file(path, tenant, max_bytes, document_id=name)
    return doc.model_copy(update={"metadata": {**doc.metadata, "source": name}})


async def _accept(
    request: Request, tenant: str, docs: list[Document], rejected: list[dict[str, Any]], wait: bool
) -> Any:
    """Write through the seam; the receipt says what was promised (200 searchable, or 202
    with a job to follow), whatever the shape behind it."""
    ids, errors = [d.id for d in docs], [f"{r['id'] or r['index']}: {r['error']}" for r in rejected]
    receipt = await service(request).write(docs, wait=wait)
    job = request.app.state.jobs.book(receipt, tenant, docs, rejected)
    if receipt.status == "searchable":
        report = receipt.report
        return DocumentsResponse(
            status="searchable",
            ids=ids,
            report=report,
            errors=errors,
            rejected=rejected,
            job_id=job.id,
            seconds=report.seconds if report else None,
        )
    body = DocumentsResponse(status="accepted", ids=ids, errors=errors, rejected=rejected, job_id=job.id)
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/ingestions/{job.id}"})
