"""Request and response bodies of the HTTP API (the OpenAPI spec is generated from these)."""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ragline.core.models import FilterValue, Hit, IngestReport


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryRequest(Strict):
    question: str = Field(min_length=1, max_length=4096, description="The question to answer.")
    top_k: int | None = Field(default=None, ge=1, le=50, description="Passages to answer from.")
    filters: dict[str, FilterValue] = Field(default_factory=dict, description="Metadata equality / any-of filters.")
    stream: bool = Field(default=False, description="Server-sent events: `token` events, then `answer`.")
    mode: Literal["dense", "bm25", "hybrid"] | None = Field(
        default=None, description="Retrieval mode; default: the deployment's."
    )
    generator: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_\-]{0,39}$",
        description="Answer with this generator: the deployment's own, or `extractive` (no LLM: the passages' "
        "sentences, fastest); another is refused (422). Default: the deployment's.",
    )


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=4096)
    top_k: int | None = Field(default=None, ge=1, le=100)
    filters: dict[str, FilterValue] = Field(default_factory=dict)
    mode: Literal["dense", "bm25", "hybrid"] | None = Field(
        default=None, description="Retrieval mode; default: the deployment's."
    )


class SearchResponse(BaseModel):
    hits: list[Hit]
    mode: str
    notice: str | None = None
    timings_ms: dict[str, float]


class DocumentIn(Strict):
    id: str | None = Field(
        default=None, min_length=1, max_length=512, description="Stable id; derived from the text when absent."
    )
    text: str = Field(min_length=1, max_length=20_000_000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    pages: list[int] | None = Field(
        default=None,
        max_length=100_000,
        description="Where each page starts in `text` (character offsets, increasing, the first 0): each chunk is "
        "cited with its page. `ragline ingest` sends them for PDFs and slides.",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("only whitespace: no text to index")
        return text

    @model_validator(mode="after")
    def _pages_within_text(self) -> DocumentIn:
        pages = self.pages
        if pages is not None:
            if not pages or pages[0] != 0 or any(b < a for a, b in itertools.pairwise(pages)):
                raise ValueError("pages: character offsets in order, the first 0")
            if pages[-1] > len(self.text):
                raise ValueError(f"pages: offset {pages[-1]} is past the end of the text ({len(self.text)} characters)")
        return self


class DocumentsRequest(Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)
    wait: bool = Field(default=False, description="Return only once the documents are searchable.")


class Rejected(BaseModel):
    index: int = Field(description="Position in the request's documents (or files).")
    id: str | None = None
    error: str


class DocumentsResponse(BaseModel):
    status: Literal["searchable", "accepted"]
    ids: list[str] = Field(description="The documents accepted (or written).")
    job_id: str | None = Field(default=None, description="GET /v1/ingestions/{job_id} for the outcome.")
    report: IngestReport | None = None
    seconds: float | None = None
    errors: list[str] = Field(default_factory=list, description="One line per refused document.")
    rejected: list[Rejected] = Field(default_factory=list)


class JobDocument(BaseModel):
    id: str
    status: Literal["pending", "searchable", "accepted", "failed"]


class JobProgress(BaseModel):
    documents_total: int
    documents_done: int = Field(description="Documents whose outcome is known (written or failed).")
    chunks_estimated: int = Field(description="Chunks in the job: exact once every document is chunked.")
    chunks_embedded: int
    chunks_written: int
    chunks_unchanged: int = Field(description="Already stored with the same content: skipped.")
    chunks_per_s: float = Field(description="Chunks written or found unchanged per second since the start.")
    eta_s: float | None = Field(description="Seconds left at that rate; null until a group is written.")


class IngestionJob(BaseModel):
    id: str
    status: Literal["queued", "running", "searchable", "published", "failed", "interrupted"]
    error: str | None = None
    documents: list[JobDocument]
    rejected: list[Rejected]
    report: IngestReport | None = None
    progress: JobProgress | None = None
    created_at: float
    finished_at: float | None = None


class DocumentSummary(BaseModel):
    id: str
    chunks: int
    content_hash: str  # of its chunks' content hashes, in order: equal means unchanged
    updated_at: str | None = Field(
        default=None, description="When its content last changed (ISO 8601, UTC); null if written before 0.1.0"
    )
    metadata: dict[str, Any]


class DocumentList(BaseModel):
    documents: list[DocumentSummary]
    next: str | None = None  # pass as `after` for the next page; null on the last


class TenantStats(BaseModel):
    tenant: str
    chunks: int
    collection: str
    embedder: str


class DocumentOut(BaseModel):
    id: str
    tenant: str
    chunks: list[Hit]
    metadata: dict[str, Any]


class DeleteResponse(BaseModel):
    id: str
    deleted_chunks: int | None = Field(description="None when the delete was queued (bus shape).")
    status: Literal["deleted", "accepted"] = "deleted"


class ContentPart(BaseModel):
    """One part of a message's content (OpenAI's form); only text parts are read."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; fields ragline does not use are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = "ragline"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


class Problem(BaseModel):
    """RFC 9457 problem details, served as application/problem+json."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
