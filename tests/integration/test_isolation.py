"""Isolation: limits, hostile clients, tenants and bad input, against a real server."""

from __future__ import annotations

import json
import select
import socket
import time

import httpx
import pytest

from ragline.service.api.auth import KeyStore
from tests.conftest import wait_until

BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are."


@pytest.fixture
def guarded(serve_app, tmp_path):
    """(server, client maker) with small limits so tests can reach them cheaply."""
    server = serve_app(max_query_body_kb=8, max_body_mb=0.5, http_body_timeout_s=1.0, max_metadata_bytes=512)
    keys = KeyStore(tmp_path / "keys.json")

    def client(tenant: str = "a", scopes: str = "query,ingest") -> httpx.Client:
        key, _ = keys.create(tenant, scopes.split(","))
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    return server, client


def _raw(server, request: bytes, timeout_s: float = 5.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as conn:
        conn.sendall(request)
        return conn.recv(65536)


def test_an_unauthenticated_request_is_refused_before_its_body_is_read(guarded):
    server, _ = guarded
    head = (
        b"POST /v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 400000\r\n\r\n{"documents": ['
    )
    started = time.monotonic()
    reply = _raw(server, head)  # the rest of the body is never sent
    assert reply.startswith(b"HTTP/1.1 401") and time.monotonic() - started < 1.0


def test_bodies_over_the_route_limit_get_413_naming_the_setting(guarded):
    _, client = guarded
    a = client()
    big = a.post("/v1/search", json={"query": "x" * 4000, "filters": {"k": ["v" * 200] * 40}})
    assert big.status_code == 413 and "max_query_body_kb" in big.json()["detail"]
    huge = a.post("/v1/documents", json={"documents": [{"text": "y" * 600_000}]})
    assert huge.status_code == 413 and "max_body_mb" in huge.json()["detail"]


@pytest.mark.parametrize(
    "filters, limit",
    [
        ({f"k{i}": "v" for i in range(9)}, "max_filter_keys"),
        ({"k": [str(i) for i in range(65)]}, "max_filter_values"),
        ({"k": "v" * 257}, "max_filter_value_chars"),
    ],
)
def test_filter_limits_answer_422_naming_the_limit(guarded, filters, limit):
    _, client = guarded
    response = client().post("/v1/search", json={"query": "bees", "filters": filters})
    assert response.status_code == 422 and limit in response.json()["detail"]


def test_metadata_too_deep_too_large_or_not_unicode_is_refused_per_document(guarded):
    _, client = guarded
    a = client()
    deep: dict = {}
    for _ in range(6):
        deep = {"d": deep}
    documents = [
        json.dumps({"id": "good", "text": BEES}),
        json.dumps({"id": "deep", "text": "x", "metadata": deep}),
        json.dumps({"id": "big", "text": "x", "metadata": {"k": "z" * 600}}),
        '{"id": "bad", "text": "x", "metadata": {"k": "\\ud800"}}',  # a lone surrogate, as JSON allows
    ]
    body = '{"wait": true, "documents": [' + ", ".join(documents) + "]}"
    response = a.post("/v1/documents", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["ids"] == ["good"]
    rejected = {r["id"]: r["error"] for r in response.json()["rejected"]}
    assert "max_metadata_depth" in rejected["deep"] and "max_metadata_bytes" in rejected["big"]
    assert "surrogate" in rejected["bad"]
    assert a.get("/v1/documents/good").status_code == 200


def test_a_batch_with_a_bad_document_accepts_the_good_ones_and_reports_each_in_its_job(guarded):
    _, client = guarded
    a = client()
    response = a.post("/v1/documents", json={"documents": [{"id": "ok", "text": BEES}, {"id": "empty", "text": ""}]})
    assert response.status_code == 202
    body = response.json()
    assert body["ids"] == ["ok"] and body["rejected"][0]["index"] == 1 and body["job_id"]
    job = wait_until(
        lambda: (j := a.get(f"/v1/ingestions/{body['job_id']}").json())["status"] == "searchable" and j, timeout_s=20
    )
    assert job["documents"] == [{"id": "ok", "status": "searchable"}] and job["rejected"][0]["id"] == "empty"
    assert client("b").get(f"/v1/ingestions/{body['job_id']}").status_code == 404  # another tenant's job


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_a_half_sent_request_is_closed_by_the_header_timeout(serve_app, parser):
    server = serve_app(http_header_timeout_s=1.0, http_parser=parser)
    with socket.create_connection((server.host, server.port), timeout=5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        started = time.monotonic()
        assert conn.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 4
    with httpx.Client(base_url=server.url) as client:  # complete requests on a kept-alive connection are not cut
        assert [client.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]


def test_a_stalled_body_gets_408(guarded):
    server, client = guarded
    auth = client().headers["Authorization"].encode()
    head = (
        b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: " + auth + b'\r\nContent-Length: 100\r\n\r\n{"query":'
    )
    started = time.monotonic()
    reply = _raw(server, head)
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4


def test_repeated_failed_logins_are_rate_limited_per_client_without_locking_out_valid_keys(serve_app, tmp_path):
    server = serve_app(auth_failures_per_minute=5)
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer rl_nope_nope"}) as bad:
        codes = [bad.post("/v1/search", json={"query": "x"}).status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer rl_nope_nope"}) as spoofing:
        forwarded = [
            spoofing.post("/v1/search", json={"query": "x"}, headers={"X-Forwarded-For": f"10.9.{n}.1"}).status_code
            for n in range(5)
        ]
    assert forwarded == [429] * 5  # a new X-Forwarded-For per try does not reset the count (no trusted proxy)
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query"])
    good = httpx.post(f"{server.url}/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {key}"})
    assert good.status_code == 200  # same address, valid key


def test_no_auth_mode_accepts_only_loopback_host_and_origin(serve_app):
    server = serve_app(auth_enabled=False)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/v1/search", json={"query": "bees"}).status_code == 200
        assert client.post("/v1/search", json={"query": "bees"}, headers={"Host": "evil.example"}).status_code == 403
        cross = client.post("/v1/search", json={"query": "bees"}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        other_port = f"http://127.0.0.1:{server.port + 1}"  # another local server's page
        assert client.post("/v1/search", json={"query": "b"}, headers={"Origin": other_port}).status_code == 403
        own = client.post("/v1/search", json={"query": "b"}, headers={"Origin": f"http://127.0.0.1:{server.port}"})
        assert own.status_code == 200  # the chat page served by this server


def test_pages_carry_security_headers_and_docs_load_no_foreign_script(guarded):
    server, _ = guarded
    with httpx.Client(base_url=server.url) as anonymous:
        for path in ("/", "/docs"):
            page = anonymous.get(path)
            assert page.status_code == 200
            assert page.headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        docs = anonymous.get("/docs").text
        assert "cdn" not in docs.lower() and "/_assets/swagger/swagger-ui-bundle.js" in docs
        assert anonymous.get("/_assets/swagger/swagger-ui-bundle.js").status_code == 200


def test_two_tenants_asking_the_same_question_share_no_cache_entry(serve_app, tmp_path):
    server = serve_app(cache_url="memory")
    keys = KeyStore(tmp_path / "keys.json")
    clients = {
        t: httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys.create(t, ['query'])[0]}"})
        for t in ("a", "b")
    }
    metrics = lambda: httpx.get(f"{server.url}/metrics").text
    clients["a"].post("/v1/search", json={"query": "how far away are the flowers"})
    before = _counter(metrics(), 'ragline_cache_requests_total{cache="embedding",result="miss"}')
    clients["b"].post("/v1/search", json={"query": "how far away are the flowers"})
    after = _counter(metrics(), 'ragline_cache_requests_total{cache="embedding",result="miss"}')
    assert after == before + 1  # b's lookup missed: a's entry is invisible to b, fast or slow


def _counter(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(guarded):
    _, client = guarded
    pieces = (b'{"query": "' + b"x" * 1000 if i == 0 else b"x" * 1000 for i in range(20))
    response = client().post("/v1/search", content=pieces, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "max_query_body_kb" in response.json()["detail"]


def test_the_embedded_database_file_is_readable_by_its_owner_only(serve_app, tmp_path):
    serve_app()
    database = tmp_path / "api0.db"
    assert database.exists() and oct(database.stat().st_mode & 0o777) == oct(0o600)


def _flood(server, sockets: int, request: bytes) -> list[socket.socket]:
    opened = []
    for _ in range(sockets):
        conn = socket.create_connection((server.host, server.port), timeout=5)
        conn.sendall(request)
        opened.append(conn)
    return opened


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_idle_and_half_open_connections_past_the_cap_do_not_shut_others_out(serve_app, tmp_path, parser):
    """Three times the connection cap of sockets that send half their headers and stall:
    health checks and a tenant's searches are still answered, at once, never 503."""
    server = serve_app(http_max_connections=100, http_parser=parser)
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query", "ingest"])
    flood = _flood(server, 300, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=5) as tenant:
            for _ in range(10):
                started = time.perf_counter()
                assert tenant.get("/healthz").status_code == 200
                assert tenant.post("/v1/search", json={"query": "honeybees"}).status_code == 200
                assert time.perf_counter() - started < 2
        more = _flood(server, 150, b"GET /healthz HTTP/1.1\r\n")  # the flood goes on: still served
        flood += more
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    finally:
        for conn in flood:
            conn.close()


def test_one_tenants_slow_bodies_are_capped_by_its_requests_in_flight(serve_app, tmp_path):
    server = serve_app(http_max_connections=100, http_max_requests_per_tenant=8, http_body_timeout_s=10.0)
    keys = KeyStore(tmp_path / "keys.json")
    slow_key, _ = keys.create("b", ["query", "ingest"])
    other_key, _ = keys.create("a", ["query"])
    head = (
        f"POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {slow_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()
    flood = _flood(server, 150, head)
    refused: set[socket.socket] = set()

    def enough_refused() -> bool:
        readable, _, _ = select.select([c for c in flood if c not in refused], [], [], 0.05)
        refused.update(conn for conn in readable if _answered_429(conn))
        return len(refused) >= 100

    try:
        assert wait_until(enough_refused, timeout_s=10)  # past 8 in flight, at once: 429, connections closed
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=5) as other:
            assert other.post("/v1/search", json={"query": "honeybees"}).status_code == 200
            assert other.get("/healthz").status_code == 200
    finally:
        for conn in flood:
            conn.close()


def _answered_429(conn: socket.socket) -> bool:
    conn.settimeout(0.05)
    try:
        return conn.recv(100).startswith(b"HTTP/1.1 429")
    except (TimeoutError, OSError):
        return False
