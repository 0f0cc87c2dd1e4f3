"""Generator adapters: OpenAI-compatible (vLLM), local (llama.cpp), extractive."""

from __future__ import annotations

from ..settings import Settings
from .extractive import ExtractiveGenerator


def build_generator(settings: Settings):
    if settings.generator == "extractive":
        return ExtractiveGenerator()
    if settings.generator == "openai":
        from ..breaker import CircuitBreaker
        from .openai import OpenAIGenerator

        return OpenAIGenerator(
            settings.llm_url, settings.llm_model, api=settings.llm_api, template=settings.llm_template,
            api_key=settings.llm_api_key, timeout_s=settings.llm_timeout_s,
            connect_timeout_s=settings.llm_connect_timeout_s, max_retries=settings.llm_max_retries,
            concurrency=settings.llm_concurrency, batch_max=settings.llm_batch_max,
            batch_wait_ms=settings.llm_batch_wait_ms, temperature=settings.llm_temperature,
            breaker=CircuitBreaker(f"LLM at {settings.llm_url}", 3, settings.llm_breaker_open_s))
    from .local import LocalGenerator

    return LocalGenerator(settings.local_model_path, threads=settings.local_threads,
                          context_tokens=settings.llm_context_tokens, parallel=settings.local_parallel,
                          temperature=settings.llm_temperature)
