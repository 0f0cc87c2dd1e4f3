"""OpenAI's chat API over the whole conversation, through the official openai client."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI

from ragline.service.api.auth import KeyStore

MILVUS = "ragline stores its document vectors in Milvus, whose server listens on port 19530."
REDIS = "The answer cache lives in Redis. Redis listens on port 6379 by default."
TURNS = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "Which database does ragline store its document vectors in?"},
    {"role": "assistant", "content": "ragline stores its document vectors in Milvus [1]."},
    {"role": "user", "content": "and which port does it listen on?"},
]


def client_with_documents(server, keys_file, **options) -> OpenAI:
    """An OpenAI client for ``server``, whose tenant holds the two documents."""
    key, _ = KeyStore(keys_file).create("a", ["query", "ingest"])
    httpx.post(
        f"{server.url}/v1/documents",
        headers={"Authorization": f"Bearer {key}"},
        json={"wait": True, "documents": [{"id": "milvus", "text": MILVUS}, {"id": "redis", "text": REDIS}]},
    ).raise_for_status()
    return OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, **options)


def client_of_an_llm_deployment(serve_app, running_llm, tmp_path) -> tuple[OpenAI, list[dict]]:
    """A client of a deployment whose generator is the local LLM server, and the bodies of
    the requests that reach that LLM, as they are sent."""
    from ragline.adapters.generators.openai import OpenAIGenerator

    bodies: list[dict] = []

    async def record(request: httpx.Request) -> None:
        if request.method == "POST":
            bodies.append(json.loads(request.content))

    generator = OpenAIGenerator(running_llm.url, "smollm2", max_retries=0, event_hooks={"request": [record]})
    server = serve_app(generator=generator, generator_name="openai")
    return client_with_documents(server, tmp_path / "keys.json", timeout=120), bodies


@pytest.fixture
def openai_client(serve_app, tmp_path):
    return client_with_documents(serve_app(), tmp_path / "keys.json")


def test_a_follow_up_question_retrieves_the_earlier_turns_subject(openai_client):
    # Alone, "and which port does it listen on?" matches the Redis passage as well as Milvus's.
    reply = openai_client.chat.completions.create(model="ragline", messages=TURNS)
    assert "19530" in reply.choices[0].message.content and "6379" not in reply.choices[0].message.content
    extra = reply.model_extra
    assert extra["sources"][0]["document_id"] == "milvus" and extra["grounded"] is True
    assert reply.usage.prompt_tokens > 20 and reply.usage.completion_tokens > 5


def test_a_streamed_follow_up_ends_with_its_sources(openai_client):
    chunks = list(openai_client.chat.completions.create(model="ragline", messages=TURNS, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "19530" in text and chunks[-1].model_extra["sources"][0]["document_id"] == "milvus"


def test_models_lists_ragline_for_chat_front_ends(openai_client):
    assert [m.id for m in openai_client.models.list()] == ["ragline"]


def test_with_an_llm_configured_a_follow_up_is_rewritten_by_it_before_retrieval(serve_app, running_llm, tmp_path):
    client, bodies = client_of_an_llm_deployment(serve_app, running_llm, tmp_path)
    reply = client.chat.completions.create(model="ragline", messages=TURNS)
    rewrites = [b for b in bodies if "Standalone question:" in json.dumps(b)]
    assert len(rewrites) == 1 and "and which port does it listen on?" in json.dumps(rewrites[0])
    # whether SmolLM's rewrite passed its check or the rule stood in, Milvus's passage answers
    assert reply.model_extra["sources"][0]["document_id"] == "milvus"


def test_the_extractive_model_answers_without_the_deployments_llm(serve_app, running_llm, tmp_path):
    """`ragline-extractive` (listed where the deployment has an LLM) answers from the
    passages' sentences: not one call to the LLM, not even to rewrite a follow-up."""
    client, bodies = client_of_an_llm_deployment(serve_app, running_llm, tmp_path)
    assert [m.id for m in client.models.list()] == ["ragline", "ragline-extractive"]
    reply = client.chat.completions.create(model="ragline-extractive", messages=TURNS)
    assert reply.model_extra["answered_by"] == "extractive" and "19530" in reply.choices[0].message.content
    assert bodies == []  # the LLM was not asked anything
    client.chat.completions.create(model="ragline", messages=TURNS[1:2])
    assert bodies  # the deployment's own model does ask it
