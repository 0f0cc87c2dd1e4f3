"""The messages that flow between stages: pydantic models, JSON on the wire."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragline.core.errors import InvalidInput

SCHEMA_VERSION = 1

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

# A metadata filter: field -> value (equality) or a list of values (any of them).
FilterValue = str | int | float | bool | list[str] | list[int]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_request_id() -> str:
    return uuid.uuid4().hex


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = SCHEMA_VERSION


def validate_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise ValueError(
            "tenant must be 1-128 characters of letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit; got {tenant!r}"
        )
    return tenant


class Document(Message):
    tenant: str = "default"
    id: str = Field(min_length=1, max_length=512)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime = Field(default_factory=_utcnow)
    # Where each page starts in ``text`` (PDFs): every chunk gets its page in metadata.
    pages: list[int] | None = Field(default=None, max_length=100_000)

    _check_tenant = field_validator("tenant")(validate_tenant)


class Chunk(Message):
    id: str
    tenant: str
    document_id: str
    number: int = Field(ge=0)
    text: str
    content_hash: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    vector: list[float] | None = None
    # Its answer candidates and their vectors, made at ingestion (sentences.encode).
    sentences: str | None = None


class Query(Message):
    request_id: str = Field(default_factory=_new_request_id)
    tenant: str = "default"
    text: str = Field(min_length=1, max_length=4096)
    top_k: int = Field(default=5, ge=1, le=500)
    filters: dict[str, FilterValue] = Field(default_factory=dict)
    mode: Literal["dense", "bm25", "hybrid"] | None = None  # None: the deployment's setting
    # Request-reply over the bus: where the answer goes ("topic" or "topic:partition"),
    # whether text is streamed there as it is generated, and when nobody waits any more.
    reply_to: str | None = None
    stream: bool = False
    deadline: datetime | None = None
    # answer: retrieve, then generate; search: the retriever replies with the Context;
    # document: the retriever replies with the chunks of document ``text`` (a read in bus mode).
    purpose: Literal["answer", "search", "document"] = "answer"
    # The caller's own instructions (an OpenAI system message): added to the prompt after
    # ragline's grounding rules, which they cannot override.
    instructions: str | None = Field(default=None, max_length=4000)
    # A follow-up in a conversation: the earlier question it continues ("Where is it
    # performed?" after "What is the waggle dance?"). Retrieval searches for both; the
    # answer is to ``text``, with the earlier question shown to the LLM.
    follows: str | None = Field(default=None, max_length=4096)
    # Answer with this generator instead of the deployment's: its own name, or
    # "extractive" (no LLM), which every deployment has; None: the deployment's.
    generator: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_\-]{0,39}$")

    @property
    def retrieval_text(self) -> str:
        return f"{self.follows} {self.text}" if self.follows else self.text

    _check_tenant = field_validator("tenant")(validate_tenant)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("query text is blank")
        return text


def reply_key(query: Query) -> bytes:
    """The key of replies on the bus: tenant and request id, so one tenant's request id can
    never route another tenant's answer."""
    return f"{query.tenant}/{query.request_id}".encode()


class DocumentRef(Message):
    """A delete on the documents topic, keyed like the upserts of the same document so
    per-document order holds."""

    tenant: str
    id: str = Field(min_length=1, max_length=512)

    _check_tenant = field_validator("tenant")(validate_tenant)


def new_query(**fields: Any) -> Query:
    """A Query from a caller's input, or InvalidInput naming the first bad field."""
    try:
        return Query(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidInput(f"{where}: {error['msg']}" if where else error["msg"]) from exc


class Hit(Message):
    chunk_id: str
    document_id: str
    number: int
    text: str
    score: float  # what ranked it: cosine (dense), BM25, or fused RRF (hybrid)
    similarity: float | None = None  # cosine to the question, whatever the mode
    content_hash: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    # In-process only (never serialised): the chunk's stored sentences, when a search for
    # an answer asked for them; stages.retrieve moves them into Context.sentences.
    sentences: str | None = Field(default=None, exclude=True)


class Context(Message):
    query: Query
    hits: list[Hit]
    mode: str = "dense"  # the retrieval mode actually used
    notice: str | None = None  # e.g. why another mode than the one asked for was used
    timings_ms: dict[str, float] = Field(default_factory=dict)
    # For answers: the hits' sentences and vectors made at ingestion, by chunk id
    # (sentences.encode; chunks stored without them are absent).
    sentences: dict[str, str] = Field(default_factory=dict)


class Citation(Message):
    number: int
    chunk_id: str
    document_id: str
    text: str | None = None  # the cited passage, so a reader can check the claim
    page: int | None = None  # where the source has pages (the chunk's "page" metadata)


class Support(Message):
    """How one sentence of an answer is supported (grounding.py): its best passage and
    the share of its content words found there (0..1); supported at >= 0.6."""

    sentence: str
    score: float
    supported: bool
    number: int | None = None  # the passage's number in the prompt
    chunk_id: str | None = None
    document_id: str | None = None


class Evidence(Message):
    """A sentence of a passage that the answer rests on, whole and as the source says it."""

    sentence: str
    number: int  # the passage's number in the prompt (its citation)
    chunk_id: str
    document_id: str


class Answer(Message):
    request_id: str
    tenant: str
    # The answer: the evidence sentences, each cited [n] (extractive), or the LLM's text.
    text: str
    citations: list[Citation] = Field(default_factory=list)
    # The answer itself when the question asks for a name, a place, a time or a quantity
    # ("Guy de Lusignan", "1191"), taken from the evidence; None for other questions.
    short_answer: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    # Whether the evidence answers this question (not just "is in a source", which is
    # ``grounded``): a calibrated probability, and the decision at the deployment's
    # threshold (``min_answer_confidence``). None when nothing was read.
    confidence: float | None = None
    answers_question: bool | None = None
    # Why there is no answer: nothing in the sources is about the question, or related
    # passages were found (``related``, to read on) that do not answer it.
    refusal: Literal["nothing_relevant", "not_answered"] | None = None
    related: list[Citation] = Field(default_factory=list)
    model: str
    cached: bool = False
    degraded: bool = False
    degraded_reason: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    # Sentence by sentence, which passage supports the answer; grounded is False when any
    # sentence is unsupported (None when there was nothing to check, e.g. a refusal).
    grounded: bool | None = None
    grounding: list[Support] = Field(default_factory=list)


class Delta(Message):
    """A piece of a streamed answer on the reply route; ``attempt`` tells generations apart."""

    request_id: str
    text: str
    seq: int = Field(ge=0)
    attempt: str


class Failure(Message):
    """On the reply route when a stage gives up on a query, so the caller need not wait."""

    request_id: str
    stage: str
    error_type: str  # the exception's class, for people reading the topic
    error: str
    code: str | None = None  # protocol.ERROR_CODES (None: a worker older than the codes)


class DeadLetter(Message):
    id: str = Field(default_factory=_new_request_id)
    topic: str
    stage: str
    payload: str
    error: str
    error_kind: Literal["retryable", "permanent", "unparseable"]
    attempts: int = Field(ge=1)
    first_failure_at: datetime
    last_failure_at: datetime = Field(default_factory=_utcnow)


class IngestReport(BaseModel):
    """What one ingestion run did; the numbers a user checks after a re-run."""

    documents: int = 0
    unchanged_documents: int = 0
    chunks_written: int = 0
    chunks_unchanged: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    errors: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    def add(self, part: IngestReport) -> None:
        """Count ``part`` (another batch of the same run) in this report."""
        for name in (
            "documents",
            "unchanged_documents",
            "chunks_written",
            "chunks_unchanged",
            "chunks_deleted",
            "chunks_embedded",
        ):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.errors.extend(part.errors)


# -- prompts: what a Generator is given ------------------------------------------------

SYSTEM = (
    "You answer questions using only the numbered passages you are given. "
    "Cite the passages you use with their numbers in square brackets, like [1]. "
    'If the passages do not contain the answer, reply exactly: "I don\'t know." '
    "Be brief: one to three sentences."
)


@dataclass(frozen=True)
class Passage:
    number: int
    hit: Hit


@dataclass(frozen=True)
class Prompt:
    """A question with its numbered passages; generators render it their own way."""

    question: str
    passages: tuple[Passage, ...]
    system: str = SYSTEM
    tenant: str = ""  # on whose behalf (per-tenant caches of what answering computes)
    earlier: str = ""  # the earlier question a follow-up continues
    user: str = ""  # a user message of its own instead of passages and question (a rewrite)
    # The passages' sentences and vectors made at ingestion, by chunk id (Context.sentences).
    sentences: Mapping[str, str] = field(default_factory=dict)

    def user_message(self) -> str:
        if self.user:
            return self.user
        blocks = [f"[{p.number}] {p.hit.text.strip()}" for p in self.passages]
        earlier = f"Earlier question: {self.earlier}\n" if self.earlier else ""
        return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\n{earlier}Question: {self.question}\nAnswer:"

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user_message()}]


@dataclass(frozen=True)
class Scored:
    """A sentence of the passages, scored for a question."""

    score: float
    position: int  # its place among the passages' sentences
    number: int  # the passage's number in the prompt
    sentence: str


@dataclass(frozen=True)
class Reading:
    """What the passages say about a question (the answerer's one reading of a prompt):
    the evidence sentences (best first), the short answer when the question asks for a
    name, place, time or quantity, the calibrated confidence that the evidence answers
    the question, and the decision at the deployment's threshold."""

    evidence: tuple[Scored, ...] = ()
    confidence: float = 0.0
    answers: bool = False
    short: str | None = None
    kind: str | None = None
    features: dict[str, float] = field(default_factory=dict)
