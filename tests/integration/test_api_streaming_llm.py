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
