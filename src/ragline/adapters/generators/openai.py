"""OpenAI-compatible generation over HTTP: vLLM in production, llama.cpp's server in tests.

Non-streamed completions are micro-batched: concurrent prompts go out as one
``/v1/completions`` request with a list of prompts. Streams use server-sent events.
Timeouts are bounded, retryable failures (connection, timeout, 429, 5xx) are retried
with backoff. How many requests are in flight adapts to the server's latency (at most
``concurrency``; admission.py); a stream whose first token does not come within
``first_token_timeout_s`` is abandoned (closing it frees the server's slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from typing import Any, TypeVar

import httpx

from ragline.adapters.generators.admission import AdaptiveLimit, LLMBusy
from ragline.adapters.generators.batching import MicroBatcher
from ragline.adapters.generators.templates import STOP_SEQUENCES, render
from ragline.core.breaker import CircuitBreaker
from ragline.core.errors import DependencyTimeout, DependencyUnavailable, InvalidInput, RetryableError
from ragline.core.models import Prompt

T = TypeVar("T")


@contextlib.contextmanager
def _translated(url: str) -> Iterator[None]:
    """httpx errors -> ragline's error tree, in one place."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise DependencyTimeout(f"LLM at {url} timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise DependencyUnavailable(f"LLM at {url} is unreachable ({type(exc).__name__}: {exc})") from exc
    except httpx.HTTPStatusError as exc:
        status, body = exc.response.status_code, exc.response.text[:300]
        if status == 429 or status >= 500:
            raise DependencyUnavailable(f"LLM at {url} answered {status}: {body}") from exc
        raise InvalidInput(f"LLM at {url} rejected the request ({status}): {body}") from exc


class OpenAIGenerator:
    def __init__(
        self,
        base_url: str,
        model: str = "",
        *,
        api: str = "completions",
        template: str = "chatml",
        api_key: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        max_retries: int = 2,
        backoff_s: float = 0.2,
        concurrency: int = 64,
        initial_concurrency: int = 1,
        queue_timeout_s: float = 2.0,
        first_token_timeout_s: float = 10.0,
        target_ttft_s: float = 2.0,
        batch_max: int = 32,
        batch_wait_ms: float = 5.0,
        temperature: float = 0.0,
        extra_body: dict[str, Any] | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: dict | None = None,
    ) -> None:
        if api not in ("completions", "chat"):
            raise ValueError(f"api must be 'completions' or 'chat', not {api!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.template = template
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})  # server-specific sampling parameters
        # open after repeated failures: questions then go straight to the extractive answer
        self.breaker = breaker or CircuitBreaker(f"LLM at {self.base_url}", failures_to_open=3, open_s=5.0)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            event_hooks=event_hooks,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        # Adapts to the server: first tokens later than target_ttft_s shrink it (a whole
        # non-streamed answer has four times that).
        self.limit = AdaptiveLimit(concurrency, initial=initial_concurrency, queue_timeout_s=queue_timeout_s)
        self.first_token_timeout_s = first_token_timeout_s
        self.target_ttft_s = target_ttft_s
        self.batcher: MicroBatcher[str, str] = MicroBatcher(self._complete_batch, batch_max, batch_wait_ms)

    @property
    def name(self) -> str:
        return self.model or "openai-compatible"

    def observe_batches(self, observe: Callable[[int], None]) -> None:
        self.batcher.on_batch = observe

    async def close(self) -> None:
        await self._client.aclose()

    async def ping(self) -> None:
        """Raise unless the server answers its model list (no retries)."""
        await self._get("/models")

    # -- the Generator port ---------------------------------------------------------------

    async def generate(self, prompt: Prompt, max_tokens: int) -> str:
        if self.api == "chat":
            return await self._retrying(lambda: self._chat(prompt, max_tokens))
        return await self.batcher.submit(render(prompt, self.template), max_tokens)

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str]:
        """Tokens as the server sends them; retried only until the first one arrives."""
        if self.api == "chat":
            path, body = "/chat/completions", await self._body(max_tokens, messages=prompt.messages())
        else:
            path, body = "/completions", await self._body(max_tokens, prompt=render(prompt, self.template))
        async for piece in self._stream(path, body):
            yield piece

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[str]:
        self._check_breaker()
        for attempt in range(self.max_retries + 1):
            started = False
            try:
                async for piece in self._first_in_time(self._stream_once(path, body)):
                    started = True
                    yield piece
                self.breaker.success()
                return
            except LLMBusy:
                raise  # the server is alive, only saturated: neither retried nor a breaker failure
            except RetryableError as exc:
                self._failed(exc)
                if started or attempt == self.max_retries:
                    self.breaker.failure(exc)
                    raise
                await self._backoff(attempt)

    async def _first_in_time(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """The stream, abandoned (and closed) when its first piece is later than the deadline."""
        try:
            first = await asyncio.wait_for(anext(stream), self.first_token_timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            self.limit.observe(self.first_token_timeout_s, self.target_ttft_s)
            raise DependencyTimeout(
                f"LLM at {self.base_url} sent no token within {self.first_token_timeout_s:g} s "
                f"({self.limit.in_flight} requests in flight)"
            ) from None
        yield first
        async for piece in stream:
            yield piece

    async def complete_many(self, prompts: list[str], max_tokens: int) -> list[str]:
        """Several raw prompts in one /v1/completions request (no batching window)."""
        return await self._complete_batch(prompts, max_tokens)

    # -- HTTP -----------------------------------------------------------------------------

    async def _complete_batch(self, prompts: list[str], max_tokens: Hashable) -> list[Any]:
        """Texts, in requests no larger than the adaptive limit; a part that failed (the
        LLM busy, say) gives its prompts the exception and the other parts their texts."""
        size = self.limit.slots
        parts = [prompts[i : i + size] for i in range(0, len(prompts), size)]
        if size == 1:  # one at a time: streamed, so that a late first token is abandoned
            singles = await asyncio.gather(*(self._streamed(p, max_tokens) for p in prompts), return_exceptions=True)
            return list(singles)
        if len(parts) == 1:
            return await self._complete_part(prompts, max_tokens)
        done = await asyncio.gather(*(self._complete_part(p, max_tokens) for p in parts), return_exceptions=True)
        out: list[Any] = []
        for part, result in zip(parts, done):
            out.extend([result] * len(part) if isinstance(result, BaseException) else result)
        return out

    async def _streamed(self, prompt: str, max_tokens: Hashable) -> str:
        body = await self._body(max_tokens, prompt=prompt)
        return "".join([p async for p in self._stream("/completions", body)])

    async def _complete_part(self, prompts: list[str], max_tokens: Hashable) -> list[str]:
        body = await self._body(max_tokens, prompt=prompts)
        data = await self._retrying(lambda: self._post("/completions", body, weight=len(prompts)))
        texts = [""] * len(prompts)
        for choice in data["choices"]:
            texts[choice["index"]] = choice["text"]
        return texts

    async def _chat(self, prompt: Prompt, max_tokens: int) -> str:
        data = await self._post("/chat/completions", await self._body(max_tokens, messages=prompt.messages()))
        return data["choices"][0]["message"]["content"] or ""

    async def _stream_once(self, path: str, body: dict[str, Any]) -> AsyncIterator[str]:
        body = {**body, "stream": True}
        async with self.limit.slot():
            sent, waiting = time.monotonic(), True
            with _translated(self.base_url):
                async with self._client.stream("POST", path, json=body) as response:
                    if response.is_error:
                        await response.aread()
                        response.raise_for_status()
                    async for line in response.aiter_lines():
                        piece = _sse_piece(line)
                        if piece is None:
                            return
                        if piece:
                            if waiting:
                                waiting = False
                                self.limit.observe(time.monotonic() - sent, self.target_ttft_s)
                            yield piece

    async def _body(self, max_tokens: Hashable, **payload: Any) -> dict[str, Any]:
        body = {
            "model": await self._model(),
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            **self.extra_body,
            **payload,
        }
        if "prompt" in payload:
            body["stop"] = STOP_SEQUENCES.get(self.template, [])
        return body

    async def _model(self) -> str:
        """The configured model, or the first one the server lists."""
        if not self.model:
            data = await self._retrying(lambda: self._get("/models"))
            self.model = data["data"][0]["id"]
        return self.model

    async def _post(self, path: str, body: dict[str, Any], weight: int = 1) -> dict[str, Any]:
        async with self.limit.slot(weight):
            sent = time.monotonic()
            with _translated(self.base_url):
                response = await self._client.post(path, json=body)
                response.raise_for_status()
                self.limit.observe(time.monotonic() - sent, 4 * self.target_ttft_s)
                return response.json()

    async def _get(self, path: str) -> dict[str, Any]:
        with _translated(self.base_url):
            response = await self._client.get(path)
            response.raise_for_status()
            return response.json()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        self._check_breaker()
        for attempt in range(self.max_retries + 1):
            try:
                result = await call()
                self.breaker.success()
                return result
            except LLMBusy:
                raise
            except RetryableError as exc:
                self._failed(exc)
                if attempt == self.max_retries:
                    self.breaker.failure(exc)
                    raise
                await self._backoff(attempt)
        raise AssertionError("unreachable")

    def _failed(self, exc: RetryableError) -> None:
        if isinstance(exc, DependencyUnavailable):  # unreachable or erroring: it may come back cold
            self.limit.restart()

    def _check_breaker(self) -> None:
        if not self.breaker.allow():
            raise DependencyUnavailable(
                f"LLM at {self.base_url} is failing; not retried for a few seconds (circuit breaker open)"
            )

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))


def _sse_piece(line: str) -> str | None:
    """The text in one SSE line: '' for a line without text, None at the end of the stream."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    choice = (json.loads(data).get("choices") or [{}])[0]
    return choice.get("text") or (choice.get("delta") or {}).get("content") or ""
