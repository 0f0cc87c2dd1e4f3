"""Isolation under hostile load: tenant A's /v1/search while someone else attacks.

Starts `ragline serve` (MiniLM, Milvus Lite, extractive answers) on loopback, gives
tenant A a few documents, then measures A's sequential searches and /healthz twice:
quietly, and while another process sends, in parallel and repeatedly, PDF/HTML/JSON
uploads near the limits (tenant B), unauthenticated bodies of 24 MB, searches with the
largest filters allowed and over the limits, and connections that send half a request
and stall.

Then a connection flood (``flood`` in the output): up to --flood-sockets unauthenticated
sockets that send half their request headers and stall, re-opened as soon as the server
closes them, and as many authenticated ones (tenant B's key) that send their headers
(a body under the query limit) and a trickle of it; --flood-rate new sockets/s per kind
(200; the outage the issue reported needed ~53/s); tenant A's searches and /healthz measured meanwhile. Goal:
search p99 <= 3x quiet, /healthz p99 <= 50 ms, no 503 to the tenant.

Last line: {"quiet_search_p99_ms", "hostile_search_p99_ms", "ratio", "healthz_p99_ms",
"hostile_requests", "errors_5xx", "hostile_refused_busy_503", ...}. errors_5xx counts every
5xx except the attacker's uploads refused by admission control (503 "Busy" + Retry-After,
the designed answer to a flood), which are counted apart. Goal: ratio <= 3, healthz p99
<= 50 ms, no 5xx.

    python bench/isolation.py [--seconds 20] [--no-rate-limit]

By default the server runs with its default per-tenant rate limit (20/s, burst 40),
which the attacker's flood meets as 429s; --no-rate-limit lifts it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
from _common import QUESTIONS, free_port, median, percentile, report

ROOT = Path(__file__).resolve().parents[1]


def start(tmp: str, port: int, rate_limit: bool) -> subprocess.Popen:
    env = dict(
        os.environ,
        RAGLINE_MILVUS_URI=f"{tmp}/iso.db",
        RAGLINE_GENERATOR="extractive",
        RAGLINE_KEYS_FILE=f"{tmp}/keys.json",
        RAGLINE_SPOOL_DIR=f"{tmp}/pending",
        HF_HUB_OFFLINE="1",
    )
    if not rate_limit:  # the attacker is not slowed by the per-tenant rate limit: the harsher case
        env.update(RAGLINE_RATE_LIMIT_RPS="1000", RAGLINE_RATE_LIMIT_BURST="1000")
    ragline = Path(sys.executable).with_name("ragline")
    proc = subprocess.Popen(
        [str(ragline), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("ragline serve did not become ready")


def make_key(tmp: str, tenant: str) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from ragline.service.api.auth import KeyStore

    return KeyStore(Path(tmp) / "keys.json").create(tenant, ["query", "ingest"])[0]


def bomb_pdf(text_bytes: int) -> bytes:
    """A small PDF whose one page's text, compressed, expands to ``text_bytes``."""
    line = b"(the quick brown fox jumps over the lazy dog again and again) Tj T* "
    content = b"BT /F1 10 Tf 12 TL 50 750 Td " + line * (text_bytes // len(line)) + b"ET"
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def hostile(port: int, key_b: str, seconds: float, counts) -> None:
    """Every kind of attack at once, each in its own thread, for ``seconds``."""
    base = f"http://127.0.0.1:{port}"
    until = time.monotonic() + seconds
    html = "<html><body>" + "<table>" + "<tr><td>cell</td><td>value</td></tr>" * 40_000 + "</table></body></html>"
    pdf = bomb_pdf(2_000_000)
    big_json = (
        b'{"documents": ['
        + b",".join(b'{"id": "j%d", "text": "%s"}' % (i, b"lorem ipsum " * 40_000) for i in range(40))
        + b"]}"
    )
    unauth = b"x" * 24_000_000
    filters_ok = {f"k{i}": [f"v{j}" * 20 for j in range(64)] for i in range(8)}
    filters_over = {f"k{i}": "v" for i in range(60)}

    def loop(name: str, send) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key_b}"}, timeout=60) as client:
            while time.monotonic() < until:
                try:
                    response = send(client)
                    status, busy = response.status_code, "busy" in response.text[:300].lower()
                except httpx.HTTPError:
                    status, busy = 0, False
                counts["requests"] += 1
                counts[f"{name}:{status}"] = counts.get(f"{name}:{status}", 0) + 1
                if status == 503 and busy:
                    counts["busy_503"] += 1  # admission control refusing the flood: by design
                elif status >= 500:
                    counts["5xx"] += 1

    def slowloris() -> None:
        while time.monotonic() < until:
            conns = []
            for _ in range(50):
                try:
                    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                    conn.sendall(b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    conns.append(conn)
                except OSError:
                    pass
            counts["requests"] += len(conns)
            time.sleep(min(5, max(0, until - time.monotonic())))
            for conn in conns:
                conn.close()

    senders = {
        "pdf": lambda c: c.post("/v1/documents/files", files={"files": ("bomb.pdf", pdf, "application/pdf")}),
        "html": lambda c: c.post("/v1/documents/files", files={"files": ("big.html", html, "text/html")}),
        "json": lambda c: c.post("/v1/documents", content=big_json, headers={"Content-Type": "application/json"}),
        "unauthenticated": lambda c: httpx.post(f"{base}/v1/documents", content=unauth, timeout=60),
        "filters": lambda c: c.post("/v1/search", json={"query": "fox", "filters": filters_ok}),
        "filters_over": lambda c: c.post("/v1/search", json={"query": "fox", "filters": filters_over}),
    }
    threads = [threading.Thread(target=loop, args=item) for item in senders.items()]
    threads.append(threading.Thread(target=slowloris))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def flood(port: int, key_b: str, seconds: float, sockets: int, rate: float, counts) -> None:
    """Half-open headers (unauthenticated) and slow bodies (tenant B), re-opened when closed."""
    import resource
    import selectors

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * sockets + 256)), hard))
    heads = {
        "half_open": b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        "slow_body": (
            f"POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key_b}\r\n"
            "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"
        ).encode(),
    }
    until = time.monotonic() + seconds
    selector = selectors.DefaultSelector()
    open_by_kind = dict.fromkeys(heads, 0)
    made = dict.fromkeys(heads, 0)
    started = time.monotonic()

    def open_one(kind: str) -> None:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=2)
            conn.sendall(heads[kind])
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ, kind)
            open_by_kind[kind] += 1
            counts["flood_opened"] += 1
        except OSError:
            counts["flood_failed_opens"] += 1

    while time.monotonic() < until:
        for kind in heads:
            allowed = sockets + int(rate * (time.monotonic() - started)) - made[kind]  # then `rate` new ones/s
            for _ in range(max(0, min(allowed, 100, sockets - open_by_kind[kind]))):
                open_one(kind)
                made[kind] += 1
        for key, _ in selector.select(timeout=0.05):
            conn, kind = key.fileobj, key.data
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 "):
                status = data[9:12].decode()
                counts[f"flood_{kind}:{status}"] = counts.get(f"flood_{kind}:{status}", 0) + 1
            selector.unregister(conn)
            conn.close()
            open_by_kind[kind] -= 1
        for key in list(selector.get_map().values()):  # a trickle of body keeps slow bodies alive
            if key.data == "slow_body":
                try:
                    key.fileobj.send(b" ")
                except OSError:
                    pass
    for key in list(selector.get_map().values()):
        key.fileobj.close()


def measure(port: int, key_a: str, seconds: float, interval_s: float = 0.0) -> dict:
    """Tenant A's searches (one every ``interval_s``, or back to back) and /healthz."""
    searches, health, errors, refused = [], [], 0, 0
    stop = time.monotonic() + seconds

    def probe_health() -> None:
        nonlocal errors
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    status = client.get(f"http://127.0.0.1:{port}/healthz").status_code
                except httpx.HTTPError:
                    status = 599  # a broken connection counts as an error
                health.append((time.perf_counter() - t0) * 1000)
                errors += status >= 500
                time.sleep(0.05)

    prober = threading.Thread(target=probe_health)
    prober.start()
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key_a}"}, timeout=60
    ) as client:
        n = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                status = client.post(
                    "/v1/search", json={"query": QUESTIONS[n % len(QUESTIONS)], "top_k": 5}
                ).status_code
            except httpx.HTTPError:
                status = 599
            searches.append((time.perf_counter() - t0) * 1000)
            errors += status >= 500
            refused += status in (401, 403, 429)  # the victim must never be turned away either
            n += 1
            time.sleep(max(0.0, interval_s - (time.perf_counter() - t0)))
    prober.join()
    return {
        "search_p50_ms": median(searches),
        "search_p99_ms": percentile(searches, 99),
        "searches": len(searches),
        "healthz_p99_ms": percentile(health, 99),
        "errors_5xx": errors,
        "refused": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--no-rate-limit", action="store_true", help="lift the per-tenant rate limit (20/s)")
    parser.add_argument("--flood-sockets", type=int, default=2000, help="sockets of each flood kind (0: no flood)")
    parser.add_argument(
        "--flood-rate", type=float, default=200, help="new sockets per second of each kind, once the first are open"
    )
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        key_a, key_b = make_key(tmp, "tenant-a"), make_key(tmp, "tenant-b")
        proc = start(tmp, port, rate_limit=not args.no_rate_limit)
        try:
            corpus = [
                {"id": f"a{i}", "text": q + " The answer is in document " + str(i)} for i, q in enumerate(QUESTIONS)
            ]
            httpx.post(
                f"http://127.0.0.1:{port}/v1/documents",
                json={"documents": corpus, "wait": True},
                headers={"Authorization": f"Bearer {key_a}"},
                timeout=60,
            ).raise_for_status()
            measure(port, key_a, 2)  # warm-up
            # Under its rate limit (20/s) tenant A searches 18 times a second; without it, back to back.
            pace = 0.0 if args.no_rate_limit else 1 / 18
            quiet = measure(port, key_a, args.seconds, pace)
            counts = multiprocessing.Manager().dict(
                {"requests": 0, "5xx": 0, "busy_503": 0, "flood_opened": 0, "flood_failed_opens": 0}
            )
            attacker = multiprocessing.Process(target=hostile, args=(port, key_b, args.seconds + 2, counts))
            attacker.start()
            time.sleep(2)  # let the attack build up
            print("hostile phase", file=sys.stderr, flush=True)
            loud = measure(port, key_a, args.seconds, pace)
            attacker.join()
            flooded = None
            if args.flood_sockets:
                flooder = multiprocessing.Process(
                    target=flood, args=(port, key_b, args.seconds + 4, args.flood_sockets, args.flood_rate, counts)
                )
                flooder.start()
                time.sleep(4)  # let the sockets pile up
                print("flood phase", file=sys.stderr, flush=True)
                flooded = measure(port, key_a, args.seconds, pace)
                flooder.join()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    report(
        {
            "quiet_search_p99_ms": quiet["search_p99_ms"],
            "hostile_search_p99_ms": loud["search_p99_ms"],
            "ratio": loud["search_p99_ms"] / quiet["search_p99_ms"],
            "healthz_p99_ms": loud["healthz_p99_ms"],
            "hostile_requests": counts["requests"],
            "errors_5xx": quiet["errors_5xx"] + loud["errors_5xx"] + counts["5xx"],
            "hostile_refused_busy_503": counts["busy_503"],
            "hostile_outcomes": {k: v for k, v in sorted(counts.items()) if ":" in k},
            "rate_limit": not args.no_rate_limit,
            "quiet": quiet,
            "hostile": loud,
            "flood": flooded
            and {
                **flooded,
                "ratio": flooded["search_p99_ms"] / quiet["search_p99_ms"],
                "sockets_per_kind": args.flood_sockets,
                "new_sockets_per_s_per_kind": args.flood_rate,
                "opened": counts.get("flood_opened", 0),
                "outcomes": {k: v for k, v in sorted(counts.items()) if k.startswith("flood_") and ":" in k},
            },
        }
    )


if __name__ == "__main__":
    main()
