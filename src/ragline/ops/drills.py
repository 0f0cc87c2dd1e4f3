"""Fault drills on a supervised stack (stack.py): load, one fault, counts.

Each drill sends documents and questions through the stack's balancer as a client
would (retrying a 503 after its Retry-After, never a 2xx), injects one fault with
``kill -9`` (supervisord restarts what it kills, as Kubernetes would), and reports:

- ``accepted``: documents the API answered 202 for, plus questions it answered;
- ``lost``: accepted documents not readable once the load stopped (after a grace),
  split into those accepted before the fault and after the killed process was back;
- ``duplicated``: documents stored more than once (more chunks than they have);
- ``failed_requests``: responses other than 2xx and 503 (a 503 is a refusal the client
  retries, not a failure), with their statuses;
- ``recovery_s``: the longest time without a successful answer from the fault on, less
  the time the killed process took to be back (a new process answering its protocol:
  Kafka metadata, Redis PING, HTTP /healthz; a port that accepts is not enough, since
  right after kill -9 the dying process can still accept).

The broker keeps its data in memory here (Tansu has no file storage in this build), so a
broker crash loses what it had accepted and no consumer had taken yet; the drill
reports those documents as lost rather than hide them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from ragline.ops.stack import Stack

QUESTION = "What do honeybees tell nest mates with the waggle dance?"
TEXT = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are. Drill {tag} {n}."


@dataclass
class Load:
    url: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    accepted_docs: list[str] = field(default_factory=list)
    accepted_at: dict[str, float] = field(default_factory=dict)  # document id -> when the 202 came
    answers: list[float] = field(default_factory=list)  # when each successful answer came
    failures: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    refused_at: list[float] = field(default_factory=list)  # when each 503 came
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def _failed(self, what: str) -> None:
        self.failures[what] = self.failures.get(what, 0) + 1

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response | None:
        """POST, retrying refusals (503) and connection failures until stopped."""
        while not self._stop.is_set():
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                self._failed(type(exc).__name__)
                await asyncio.sleep(0.2)
                continue
            if response.status_code == 503:
                self.refused += 1
                self.refused_at.append(time.monotonic())
                await asyncio.sleep(min(1.0, float(response.headers.get("Retry-After", "1"))))
                continue
            return response
        return None

    async def documents(self, client: httpx.AsyncClient) -> None:
        n = 0
        while not self._stop.is_set():
            batch = [{"id": f"drill-{self.tag}-{n + i}", "text": TEXT.format(tag=self.tag, n=n + i)} for i in range(5)]
            n += 5
            response = await self._post(client, "/v1/documents", {"documents": batch})
            if response is None:
                return
            if response.status_code == 202:
                self.accepted_docs.extend(d["id"] for d in batch)
                self.accepted_at.update((d["id"], time.monotonic()) for d in batch)
            else:
                self._failed(f"documents {response.status_code}")
            await asyncio.sleep(0.2)

    async def questions(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            response = await self._post(client, "/v1/query", {"question": QUESTION})
            if response is None:
                return
            if response.status_code == 200:
                self.answers.append(time.monotonic())
            else:
                self._failed(f"query {response.status_code}")

    async def run_until(self, stop: asyncio.Event, askers: int = 4) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as client:
            tasks = [asyncio.create_task(self.documents(client))]
            tasks += [asyncio.create_task(self.questions(client)) for _ in range(askers)]
            await stop.wait()
            self._stop.set()
            await asyncio.gather(*tasks)

    async def check_documents(self, grace_s: float = 60.0) -> tuple[set[str], int]:
        """(lost ids, duplicated count) among the accepted documents, given ``grace_s``."""
        missing = set(self.accepted_docs)
        duplicated = 0
        deadline = time.monotonic() + grace_s
        slots = asyncio.Semaphore(16)

        async def read(client: httpx.AsyncClient, doc_id: str) -> None:
            nonlocal duplicated
            async with slots:
                try:
                    response = await client.get(f"/v1/documents/{doc_id}")
                    if response.status_code == 429:  # the reader's own rate limit: wait as told, once
                        await asyncio.sleep(min(5.0, float(response.headers.get("Retry-After", "1"))))
                        response = await client.get(f"/v1/documents/{doc_id}")
                except httpx.HTTPError:
                    return
            if response.status_code == 200:
                missing.discard(doc_id)
                duplicated += len(response.json().get("chunks", [])) > 1

        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            while missing and time.monotonic() < deadline:
                # bounded by the grace as a whole: reads that hang (a store that is down)
                # must not stretch one round over minutes
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.gather(*(read(client, d) for d in sorted(missing))),
                        max(1.0, deadline - time.monotonic()),
                    )
                if missing:
                    await asyncio.sleep(1)
        return missing, duplicated


def _successor_answers(stack: Stack, program: str, killed_pid: int, port: int) -> bool:
    return stack.pid(program) not in (None, killed_pid) and _answers(program, port)


def _answers(program: str, port: int) -> bool:
    """Whether the process on ``port`` answers its protocol, not just accepts a connection
    (right after kill -9 the dying process's port can still accept): Kafka metadata for
    the broker, PING for Redis, /healthz for an API replica."""
    try:
        if program == "broker":
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "socket.timeout.ms": 1000})
            return bool(admin.list_topics(timeout=1).brokers)
        if program == "redis":
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        if program == "milvus":
            from pymilvus import MilvusClient

            client = MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=2)
            try:
                client.list_collections(timeout=2)
                return True
            finally:
                client.close()
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except Exception:
        return False


async def drill(
    stack: Stack,
    program: str,
    port: int | None = None,
    *,
    warm_s: float = 3.0,
    run_s: float = 15.0,
    freeze_s: float | None = None,
    late_grace_s: float = 60.0,
) -> dict:
    """Load the stack, ``kill -9`` ``program`` after ``warm_s`` (or, with ``freeze_s``,
    stop it with SIGSTOP for that long: a hung process, not a dead one), keep the load
    ``run_s`` from the fault."""
    if freeze_s is not None:  # some load after the thaw too, to see answers come back
        run_s = max(run_s, freeze_s + 10)
    load = Load(stack.url)
    stop = asyncio.Event()
    runner = asyncio.create_task(load.run_until(stop))
    await asyncio.sleep(warm_s)
    warming = time.monotonic() + 60
    while not load.answers and time.monotonic() < warming:  # the fault hits a working pipeline
        await asyncio.sleep(0.2)
    pid = stack.pid(program)
    if pid is None:
        raise RuntimeError(f"{program} is not running in the stack")
    killed = time.monotonic()

    def send(sig: int) -> None:
        os.killpg(os.getpgid(pid), sig) if program == "milvus" else os.kill(pid, sig)

    if freeze_s is not None:
        send(signal.SIGSTOP)
        try:
            await asyncio.sleep(freeze_s)
        finally:
            send(signal.SIGCONT)
        back = time.monotonic()
    else:
        send(signal.SIGKILL)
        back = killed
    if port is not None and freeze_s is None:  # when its successor answers its protocol
        # a killed Milvus is back once its dead sessions' leases ended (30 s) and it loaded
        while time.monotonic() - killed < (150 if program == "milvus" else 60):
            if await asyncio.to_thread(_successor_answers, stack, program, pid, port):
                break
            await asyncio.sleep(0.1)
        back = time.monotonic()
    # load for run_s from the fault, and at least 10 s past the process's return
    await asyncio.sleep(max(0.0, run_s - (time.monotonic() - killed), back + 10 - time.monotonic()))
    # and on until answers came back (at most 2 minutes more), so that recovery_s says
    # how long they took rather than nothing
    answering = time.monotonic() + 120
    while not any(t >= back for t in load.answers) and time.monotonic() < answering:
        await asyncio.sleep(0.2)
    stop.set()
    await runner
    missing, duplicated = await load.check_documents()
    late: int | None = None
    indexed_after_s: float | None = None
    if missing:
        # Late or gone? Looked for again until every one is readable or ``late_grace_s``
        # passed: a store that was down for a minute leaves a backlog (measured with the
        # stack's Milvus 2.3 server after kill -9: back after ~70 s, its collection loaded
        # ~30 s later, then ~55 writes/s with batched ingestion), and a document written
        # late is not lost.
        checked = time.monotonic()
        still = Load(stack.url, accepted_docs=sorted(missing), accepted_at=load.accepted_at)
        gone, twice = await still.check_documents(grace_s=late_grace_s)
        duplicated += twice
        late = len(missing) - len(gone)
        if not gone:
            indexed_after_s = round(time.monotonic() - checked, 1)
        missing = gone
    # accepted before the fault: a broker that keeps its log in memory loses what no
    # consumer had taken yet; accepted after the faulty process was back: must all be there
    lost_after = sum(1 for d in missing if load.accepted_at[d] >= back)
    after = [t for t in load.answers if t >= back]
    gaps = [b - a for a, b in zip([back, *after], after)]
    return {
        "accepted": len(load.accepted_docs) + len(load.answers),
        "accepted_documents": len(load.accepted_docs),
        "answers": len(load.answers),
        "lost": len(missing),
        "missing_sample": sorted(missing)[:5],
        "found_late": late,  # not readable after the load stopped, then readable within late_grace_s
        "late_indexed_after_s": indexed_after_s,  # when the last of those was readable
        "lost_accepted_before_fault": len(missing) - lost_after,
        "lost_accepted_after_recovery": lost_after,
        "duplicated": duplicated,
        "failed_requests": sum(load.failures.values()),
        "failures": load.failures,
        "refused_503": load.refused,
        # how soon callers were told (503 + Retry-After) rather than left waiting
        "first_503_s": min((round(t - killed, 2) for t in load.refused_at if t >= killed), default=None),
        "recovery_s": round(max(gaps), 2) if gaps else None,
        "back_after_s": round(back - killed, 2),
    }


SCENARIOS: dict[str, tuple[str, int | None, float | None]] = {
    # name: (program, port offset from the balancer's port or None, seconds frozen or None: killed)
    "kill_ingest_worker": ("ingest-0", None, None),
    "kill_retrieve_worker": ("retrieve-0", None, None),
    "kill_generate_worker": ("generate-0", None, None),
    "kill_api_replica": ("api-0", 1, None),
    "broker_restart_empty": ("broker", 10, None),
    "redis_restart": ("redis", 11, None),
    "redis_frozen": ("redis", None, 5.0),
    "milvus_frozen": ("milvus", None, 5.0),
    # longer than RAGLINE_MILVUS_TIMEOUT_S (10 s): requests in flight must end in a 503 at
    # that deadline (first_503_s), not hang for the whole freeze
    "milvus_frozen_15s": ("milvus", None, 15.0),
    # its whole process group (the milvus-server wrapper and the Milvus binary)
    "milvus_killed": ("milvus", 30, None),
}


async def run_scenarios(
    stack: Stack, names: list[str] | None = None, run_s: float = 15.0, on_result: Any = None
) -> dict[str, Any]:
    results = {}
    for name in names or list(SCENARIOS):
        program, offset, freeze_s = SCENARIOS[name]
        port = None if offset is None else stack.port(offset)
        # a killed Milvus server comes back with a backlog that takes minutes (see drill)
        late_grace_s = 300.0 if program == "milvus" and freeze_s is None else 60.0
        results[name] = await drill(stack, program, port, run_s=run_s, freeze_s=freeze_s, late_grace_s=late_grace_s)
        if on_result is not None:
            on_result(name, results[name])
        await asyncio.sleep(2)  # let the restarted process settle before the next fault
    return {"scenarios": results}
