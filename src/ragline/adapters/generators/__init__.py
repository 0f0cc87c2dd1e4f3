"""Generator adapters: OpenAI-compatible (vLLM), local (llama.cpp), extractive."""

from __future__ import annotations

from collections.abc import Callable

from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.core.ports import Generator
from ragline.core.registry import Registry
from ragline.settings import Settings

GeneratorFactory = Callable[[Settings], Generator]
GENERATORS: Registry[GeneratorFactory] = Registry("generator", "generator")


def build_generator(settings: Settings) -> Generator:
    return GENERATORS.factory(settings.generator)(settings)


def _extractive(settings: Settings) -> Generator:
    return ExtractiveGenerator()


def _openai(settings: Settings) -> Generator:
    from ragline.adapters.generators.openai import OpenAIGenerator
    from ragline.core.breaker import CircuitBreaker

    return OpenAIGenerator(
        settings.llm_url,
        settings.llm_model,
        api=settings.llm_api,
        template=settings.llm_template,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
        connect_timeout_s=settings.llm_connect_timeout_s,
        max_retries=settings.llm_max_retries,
        concurrency=settings.llm_concurrency,
        queue_timeout_s=settings.llm_queue_timeout_s,
        first_token_timeout_s=settings.llm_first_token_timeout_s,
        target_ttft_s=settings.llm_target_ttft_s,
        batch_max=settings.llm_batch_max,
        batch_wait_ms=settings.llm_batch_wait_ms,
        temperature=settings.llm_temperature,
        breaker=CircuitBreaker(f"LLM at {settings.llm_url}", 3, settings.llm_breaker_open_s),
    )


def _local(settings: Settings) -> Generator:
    from ragline.adapters.generators.local import LocalGenerator

    return LocalGenerator(
        settings.local_model_path,
        threads=settings.local_threads,
        context_tokens=settings.llm_context_tokens,
        parallel=settings.local_parallel,
        temperature=settings.llm_temperature,
        queue_timeout_s=settings.llm_queue_timeout_s,
        target_ttft_s=settings.llm_target_ttft_s,
    )


GENERATORS.register("extractive", _extractive)
GENERATORS.register("openai", _openai)
GENERATORS.register("local", _local)
