"""The HTTP API through a real uvicorn server on loopback."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest

from ragline.service.api.auth import KeyStore

BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are."
TEA = "Black tea is fully oxidised, while green tea is steamed soon after picking."


@pytest.fixture
def api(serve_app, tmp_path):
    """(server, client for tenant a with every scope, key maker)."""
    server = serve_app(jwt_secret="s3cret-for-tests-only-0123456789", jwt_audience="ragline")
    keys = KeyStore(tmp_path / "keys.json")

    def client(tenant: str = "a", scopes: str = "query,ingest") -> httpx.Client:
        key, _ = keys.create(tenant, scopes.split(","))
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    return server, client, keys


def ingest(client: httpx.Client, *docs: dict) -> dict:
    response = client.post("/v1/documents", json={"documents": list(docs), "wait": True})
    assert response.status_code == 200, response.text
    return response.json()


def test_documents_become_searchable_and_answerable(api):
    _, client, _ = api
    a = client()
    body = ingest(a, {"id": "bees", "text": BEES, "metadata": {"lang": "en"}}, {"id": "tea", "text": TEA})
    assert body["status"] == "searchable" and body["ids"] == ["bees", "tea"] and body["seconds"] > 0
    hits = a.post("/v1/search", json={"query": "waggle dance flowers", "top_k": 1}).json()["hits"]
    assert [h["document_id"] for h in hits] == ["bees"]
    answer = a.post("/v1/query", json={"question": "What does the waggle dance tell?"}).json()
    assert "waggle dance" in answer["text"] and answer["citations"][0]["document_id"] == "bees"


def test_documents_are_listed_a_page_at_a_time_within_the_callers_tenant(api):
    _, client, _ = api
    a, b = client("a"), client("b")
    ingest(a, *({"id": f"notes/{n:02d}.md", "text": f"{BEES} Note {n}.", "metadata": {"n": n}} for n in range(5)))
    ingest(a, {"id": "other.md", "text": TEA})
    ingest(b, {"id": "notes/b.md", "text": TEA})
    first = a.get("/v1/documents", params={"prefix": "notes/", "limit": 2}).json()
    assert [d["id"] for d in first["documents"]] == ["notes/00.md", "notes/01.md"] and first["next"] == "notes/01.md"
    assert first["documents"][0]["chunks"] == 1 and first["documents"][0]["metadata"] == {"n": 0}
    seen = [d["id"] for d in first["documents"]]
    cursor = first["next"]
    while cursor:
        page = a.get("/v1/documents", params={"prefix": "notes/", "limit": 2, "after": cursor}).json()
        seen += [d["id"] for d in page["documents"]]
        cursor = page["next"]
    assert seen == [f"notes/{n:02d}.md" for n in range(5)]  # b's note is never listed to a
    everything = a.get("/v1/documents").json()
    assert len(everything["documents"]) == 6 and everything["next"] is None
    unchanged = everything["documents"][0]["content_hash"]
    ingest(a, {"id": "notes/00.md", "text": "Changed text.", "metadata": {"n": 0}})
    assert a.get("/v1/documents", params={"limit": 1}).json()["documents"][0]["content_hash"] != unchanged
    assert a.get("/v1/documents", params={"limit": 0}).status_code == 422
    assert a.get("/v1/documents", params={"prefix": "a\x00b"}).status_code == 422
    odd = a.get("/v1/documents", params={"prefix": 'no"tes\\ é'})  # quotes, backslashes: data, not syntax
    assert odd.status_code == 200 and odd.json()["documents"] == []


def test_documents_without_wait_are_accepted_then_become_searchable(api):
    _, client, _ = api
    a = client()
    response = a.post("/v1/documents", json={"documents": [{"text": BEES}]})
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    doc_id = response.json()["ids"][0]
    for _ in range(100):
        if a.get(f"/v1/documents/{doc_id}").status_code == 200:
            break
        time.sleep(0.05)
    assert a.get(f"/v1/documents/{doc_id}").json()["chunks"][0]["text"] == BEES


def test_files_upload_and_a_bad_file_is_reported(api):
    _, client, _ = api
    a = client()
    files = [
        ("files", ("notes.md", b"# Notes\n\n" + BEES.encode(), "text/markdown")),
        ("files", ("empty.txt", b"", "text/plain")),
        ("files", ("NOTES", b"Plain words without a suffix.", "text/plain")),
        ("files", ("report.pages", b"PK\x03\x04\x00\x00binary", "application/octet-stream")),
    ]
    body = a.post("/v1/documents/files", files=files, data={"wait": "true"}).json()
    # the same rules as `ragline ingest FILE`: a file of unknown type is read when it is
    # text and refused with the supported list when it is not
    assert body["ids"] == ["notes.md", "NOTES"] and "empty.txt: empty" in body["errors"][0]
    assert "report.pages: binary file" in body["errors"][1] and "supported: " in body["errors"][1]


def test_get_and_delete_a_document(api):
    _, client, _ = api
    a = client()
    ingest(a, {"id": "docs/bees.md", "text": BEES})
    assert a.get("/v1/documents/docs/bees.md").json()["id"] == "docs/bees.md"
    assert a.delete("/v1/documents/docs/bees.md").json()["deleted_chunks"] == 1
    missing = a.get("/v1/documents/docs/bees.md")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_query_streams_tokens_then_the_answer(api):
    _, client, _ = api
    a = client()
    ingest(a, {"id": "bees", "text": BEES})
    with a.stream("POST", "/v1/query", json={"question": "What is the waggle dance for?", "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [block for block in r.read().decode().split("\n\n") if block]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names[0] == "token" and names[-1] == "answer"
    final = json.loads(events[-1].split("data: ", 1)[1])
    assert final["citations"][0]["document_id"] == "bees"


@pytest.mark.parametrize(
    "headers, status, detail",
    [
        ({}, 401, "missing credentials"),
        ({"Authorization": "Bearer rl_nope_nope"}, 401, "invalid API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "use 'Authorization: Bearer"),
        ({"Authorization": "Bearer not.a.jwt"}, 401, "invalid token"),
    ],
)
def test_requests_without_valid_credentials_get_401(api, headers, status, detail):
    server, _, _ = api
    response = httpx.post(f"{server.url}/v1/search", json={"query": "x"}, headers=headers)
    assert response.status_code == status and detail in response.json()["detail"]
    assert response.headers["content-type"] == "application/problem+json"


def test_a_revoked_key_gets_401(api, tmp_path):
    server, _, keys = api
    key, record = keys.create("a", ["query"])
    ok = httpx.post(f"{server.url}/v1/search", json={"query": "x"}, headers={"X-API-Key": key})
    keys.revoke(record.id)
    revoked = httpx.post(f"{server.url}/v1/search", json={"query": "x"}, headers={"X-API-Key": key})
    assert ok.status_code == 200 and revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_a_key_without_the_scope_gets_403(api):
    _, client, _ = api
    reader = client(scopes="query")
    response = reader.post("/v1/documents", json={"documents": [{"text": BEES}], "wait": True})
    assert response.status_code == 403 and "'ingest' scope" in response.json()["detail"]


def token(secret: str, **claims) -> str:
    body = {"tenant": "a", "scope": "query", "aud": "ragline", "exp": int(time.time()) + 60, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "claims, secret, status, detail",
    [
        ({}, "s3cret-for-tests-only-0123456789", 200, None),
        ({"exp": int(time.time()) - 10}, "s3cret-for-tests-only-0123456789", 401, "expired"),
        ({}, "another-secret-of-enough-length-000", 401, "Signature verification failed"),
        ({"aud": "someone-else"}, "s3cret-for-tests-only-0123456789", 401, "Audience doesn't match"),
        ({"scope": "ingest"}, "s3cret-for-tests-only-0123456789", 403, "'query' scope"),
        ({"scopes": 5}, "s3cret-for-tests-only-0123456789", 401, "the token's scopes"),
        ({"scope": None}, "s3cret-for-tests-only-0123456789", 401, "the token's scopes"),
        ({"scopes": ["query", 5]}, "s3cret-for-tests-only-0123456789", 401, "the token's scopes"),
    ],
)
def test_jwt_bearer_tokens_are_checked(api, claims, secret, status, detail):
    server, _, _ = api
    response = httpx.post(
        f"{server.url}/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {token(secret, **claims)}"}
    )
    assert response.status_code == status, response.text
    if detail:
        assert detail in response.json()["detail"]


def test_rs256_tokens_verify_with_the_public_key(serve_app, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "jwt.pub").write_bytes(pem)
    server = serve_app(jwt_public_key_file=str(tmp_path / "jwt.pub"))
    good = jwt.encode({"tenant": "a", "scope": "query", "exp": int(time.time()) + 60}, private, algorithm="RS256")
    response = httpx.post(f"{server.url}/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {good}"})
    assert response.status_code == 200


def test_tenant_b_cannot_find_fetch_delete_or_get_answers_from_tenant_a(api):
    _, client, _ = api
    a, b = client("a"), client("b")
    ingest(a, {"id": "secret", "text": BEES})
    assert b.post("/v1/search", json={"query": BEES}).json()["hits"] == []
    assert b.get("/v1/documents/secret").status_code == 404
    assert b.delete("/v1/documents/secret").status_code == 404
    answer = b.post("/v1/query", json={"question": "What does the waggle dance tell?"}).json()
    assert answer["citations"] == [] and "waggle" not in answer["text"]
    assert a.get("/v1/documents/secret").status_code == 200


def test_rate_limiting_answers_429_with_retry_after_and_recovers(serve_app, tmp_path):
    server = serve_app(rate_limit_rps=2, rate_limit_burst=2)
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query"])
    call = lambda: httpx.post(f"{server.url}/v1/search", json={"query": "x"}, headers={"X-API-Key": key})
    statuses = [call().status_code for _ in range(4)]
    assert statuses[:2] == [200, 200] and 429 in statuses[2:]
    limited = call()
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    time.sleep(1.1)
    assert call().status_code == 200


def test_a_body_over_the_limit_gets_413(serve_app, tmp_path):
    server = serve_app(max_body_mb=0.01)
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["ingest"])
    response = httpx.post(
        f"{server.url}/v1/documents", headers={"X-API-Key": key}, json={"documents": [{"text": "x" * 20_000}]}
    )
    assert response.status_code == 413 and "limited to 10000 bytes" in response.json()["detail"]


def test_validation_errors_say_what_is_wrong(api):
    _, client, _ = api
    response = client().post("/v1/query", json={"question": "q", "top_k": 0, "extra": 1})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body.top_k" in detail and "body.extra" in detail


def test_health_readiness_metrics_and_chat_page(api):
    server, client, _ = api
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ok" and ready["dependencies"]["vector_store"]["status"] == "ok"
    client().post("/v1/search", json={"query": "x"})
    assert "vector_search_success_total 1.0" in httpx.get(f"{server.url}/metrics").text
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "/v1/chat/completions" in page.text


def test_without_auth_the_tenant_comes_from_a_header(serve_app):
    server = serve_app(auth_enabled=False)
    post = lambda tenant, path, body: httpx.post(f"{server.url}{path}", json=body, headers={"X-Ragline-Tenant": tenant})
    post("x", "/v1/documents", {"documents": [{"id": "d", "text": BEES}], "wait": True})
    assert len(post("x", "/v1/search", {"query": BEES}).json()["hits"]) == 1
    assert post("y", "/v1/search", {"query": BEES}).json()["hits"] == []


def test_the_openai_client_gets_answers_plain_and_streamed(api):
    from openai import OpenAI

    server, client, keys = api
    ingest(client(), {"id": "bees", "text": BEES})
    key, _ = keys.create("a", ["query"])
    openai = OpenAI(base_url=f"{server.url}/v1", api_key=key)
    messages = [{"role": "user", "content": "What does the waggle dance tell?"}]
    reply = openai.chat.completions.create(model="ragline", messages=messages)
    assert "waggle dance" in reply.choices[0].message.content
    assert reply.model_extra["sources"][0]["document_id"] == "bees"
    pieces = [
        c.choices[0].delta.content or ""
        for c in openai.chat.completions.create(model="ragline", messages=messages, stream=True)
    ]
    assert "".join(pieces) == reply.choices[0].message.content


def test_the_retrieval_mode_can_be_chosen_per_request(api):
    _, client, _ = api
    a = client()
    ingest(a, {"id": "bees", "text": BEES}, {"id": "tea", "text": TEA})
    for mode in ("dense", "bm25", "hybrid"):
        body = a.post("/v1/search", json={"query": "oxidised", "top_k": 1, "mode": mode}).json()
        assert body["mode"] == mode and body["notice"] is None
        if mode != "dense":  # the word itself: full-text search must find it
            assert body["hits"][0]["document_id"] == "tea"
    answer = a.post("/v1/query", json={"question": "Which tea is fully oxidised?", "mode": "bm25"})
    assert answer.status_code == 200 and answer.json()["citations"][0]["document_id"] == "tea"
    bad = a.post("/v1/search", json={"query": "x", "mode": "fuzzy"})
    assert bad.status_code == 422 and "body.mode" in bad.json()["detail"]


@pytest.mark.parametrize(
    "content",
    [[{"type": "text", "text": 5}], [None], ["a"], [{"text": "no type"}], 5],
    ids=["text-not-a-string", "null-part", "string-part", "part-without-type", "number"],
)
@pytest.mark.parametrize("role", ["user", "system"])
def test_malformed_chat_content_is_a_422_naming_the_field(api, content, role):
    _, client, _ = api
    messages = [{"role": role, "content": content}] + ([{"role": "user", "content": "hi"}] if role == "system" else [])
    response = client().post("/v1/chat/completions", json={"model": "ragline", "messages": messages})
    assert response.status_code == 422, response.text
    assert "messages" in response.json()["detail"] and "content" in response.json()["detail"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("bad\x00name.txt", "control characters"),
        ("tab\tname.txt", "control characters"),
        ("x" * 300 + ".txt", "at most 255"),
        ("é" * 200 + ".txt", "at most 255"),
    ],
)
def test_a_file_name_that_cannot_be_a_document_id_is_refused_per_file(api, name, reason):
    _, client, _ = api
    parts = b"".join(  # by hand: httpx would percent-encode the control characters
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="' + filename.encode() + b'"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + text + b"\r\n"
        for filename, text in ((name, b"A perfectly good note."), ("good.txt", b"Another good note."))
    )
    body = parts + b'--b\r\nContent-Disposition: form-data; name="wait"\r\n\r\ntrue\r\n--b--\r\n'
    response = client().post(
        "/v1/documents/files", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ids"] == ["good.txt"] and reason in body["rejected"][0]["error"]


def test_a_whitespace_only_document_is_refused_not_accepted_empty(api):
    _, client, _ = api
    response = client().post("/v1/documents", json={"documents": [{"id": "blank", "text": " \n\t "}], "wait": True})
    assert response.status_code == 422 and "only whitespace" in response.json()["detail"]
