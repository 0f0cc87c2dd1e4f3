"""Generator adapters: OpenAI-compatible (vLLM), local (llama.cpp), extractive."""

from __future__ import annotations

from collections.abc import Callable

from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.core.ports import Generator
from ragline.core.registry import Registry
from ragline.settings import LLMSettings

GeneratorFactory = Callable[[LLMSettings], Generator]
GENERATORS: Registry[GeneratorFactory] = Registry("generator", "generator")


def build_generator(config: LLMSettings) -> Generator:
    """The generator ``config.generator`` names (``settings.llm``)."""
    return GENERATORS.factory(config.generator)(config)


def _extractive(settings: LLMSettings) -> Generator:
    return ExtractiveGenerator()


def _openai(settings: LLMSettings) -> Generator:
    from ragline.adapters.generators.openai import OpenAIGenerator
    from ragline.core.breaker import CircuitBreaker

    return OpenAIGenerator(
        settings.url,
        settings.model,
        api=settings.api,
        template=settings.template,
        api_key=settings.api_key,
        timeout_s=settings.timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        max_retries=settings.max_retries,
        concurrency=settings.concurrency,
        queue_timeout_s=settings.queue_timeout_s,
        first_token_timeout_s=settings.first_token_timeout_s,
        target_ttft_s=settings.target_ttft_s,
        batch_max=settings.batch_max,
        batch_wait_ms=settings.batch_wait_ms,
        temperature=settings.temperature,
        breaker=CircuitBreaker(f"LLM at {settings.url}", 3, settings.breaker_open_s),
    )


def _local(settings: LLMSettings) -> Generator:
    from ragline.adapters.generators.local import LocalGenerator

    return LocalGenerator(
        settings.local_model_path,
        threads=settings.local_threads,
        context_tokens=settings.context_tokens,
        parallel=settings.local_parallel,
        temperature=settings.temperature,
        queue_timeout_s=settings.queue_timeout_s,
        target_ttft_s=settings.target_ttft_s,
    )


GENERATORS.register("extractive", _extractive)
GENERATORS.register("openai", _openai)
GENERATORS.register("local", _local)
