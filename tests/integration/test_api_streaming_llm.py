"""Streaming through the service with a real LLM server behind it."""

from __future__ import annotations

import re
import time

import httpx

from ragline.adapters.generators.openai import OpenAIGenerator
from ragline.service.api.auth import KeyStore

QUESTION = "How do honeybees perform the waggle dance to tell nest mates where the flowers are?"
BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are and where."


def processing(llm_url: str) -> float:
    text = httpx.get(llm_url.removesuffix("/v1") + "/metrics").text
    return float(re.search(r"^llamacpp:requests_processing ([0-9.]+)", text, re.M).group(1))


def test_a_client_that_disconnects_mid_stream_frees_the_generation(serve_app, running_llm, tmp_path):
    # ignore_eos (llama.cpp) and no stop strings (the chat API): the model cannot finish
    # early, so only a cancellation can stop it before 1,500 tokens
    generator = OpenAIGenerator(
        running_llm.url, "smollm2", api="chat", max_retries=0, timeout_s=120, extra_body={"ignore_eos": True}
    )
    server = serve_app(generator=generator, llm_max_tokens=1500, llm_timeout_s=120)
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query", "ingest"])
    headers = {"X-API-Key": key}
    httpx.post(
        f"{server.url}/v1/documents", headers=headers, json={"documents": [{"id": "bees", "text": BEES}], "wait": True}
    ).raise_for_status()
    with httpx.stream(
        "POST", f"{server.url}/v1/query", headers=headers, timeout=60, json={"question": QUESTION, "stream": True}
    ) as response:
        lines = response.iter_lines()  # held: dropping the iterator would close the stream
        tokens = 0
        for line in lines:
            tokens += line.startswith("event: token")
            if tokens == 5:
                break
        assert tokens == 5 and processing(running_llm.url) >= 1
        lines.close()
    deadline = time.monotonic() + 10
    while processing(running_llm.url) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processing(running_llm.url) == 0


def prompt_tokens(llm_url: str) -> float:
    text = httpx.get(llm_url.removesuffix("/v1") + "/metrics").text
    return float(re.search(r"^llamacpp:prompt_tokens_total ([0-9.e+]+)", text, re.M).group(1))


def test_a_request_may_answer_without_the_llm_of_a_deployment_that_has_one(serve_app, running_llm, tmp_path):
    """A deployment with an LLM answers a request that asks for `extractive` from the
    passages' sentences, without a call to the LLM; one that asks for a generator the
    deployment lacks is refused (422) before anything is searched."""
    generator = OpenAIGenerator(running_llm.url, "smollm2", api="chat", max_retries=0, timeout_s=120)
    server = serve_app(generator=generator, generator_name="openai", llm_url=running_llm.url)
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query", "ingest"])
    headers = {"X-API-Key": key}
    httpx.post(
        f"{server.url}/v1/documents", headers=headers, json={"documents": [{"id": "bees", "text": BEES}], "wait": True}
    ).raise_for_status()
    ask = f"{server.url}/v1/query"
    before = prompt_tokens(running_llm.url)
    fast = httpx.post(ask, headers=headers, timeout=60, json={"question": QUESTION, "generator": "extractive"})
    assert fast.status_code == 200 and fast.json()["model"] == "extractive" and not fast.json()["degraded"]
    assert fast.json()["citations"][0]["document_id"] == "bees"
    assert prompt_tokens(running_llm.url) == before  # the LLM was not asked
    lacking = httpx.post(ask, headers=headers, timeout=60, json={"question": QUESTION, "generator": "local"})
    assert lacking.status_code == 422 and "answers with 'openai'" in lacking.json()["detail"]
    default = httpx.post(ask, headers=headers, timeout=120, json={"question": QUESTION})
    assert default.status_code == 200 and prompt_tokens(running_llm.url) > before  # the deployment's LLM
