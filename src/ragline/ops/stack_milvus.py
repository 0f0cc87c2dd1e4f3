"""The stack's Milvus server: the Milvus 2.3 binary of the ``milvus`` package, run so that
its supervisor sees it die.

``milvus-server`` (the package's own launcher) does not: when its Milvus process exits it
waits out a 180 s start timeout, then waits for ever (its ``running`` is "was started"),
so supervisord never starts it again. After a kill -9 the first new start can exit, too:
the dead process's sessions stay registered in the embedded etcd until their lease (30 s)
ends, and the new proxy, finding a data coordinator there that is not one, stops
("unknown service milvus.proto.data.DataCoord: unrecoverable error"). Here the Milvus
process is this process's child and its exit code is ours, so supervisord starts it again
(and again) until those sessions have expired: back about 40 s after a kill -9.

    python -m ragline.ops.stack_milvus --data DIR [--proxy-port N ...]   (milvus-server's options)
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import urllib.request
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from milvus import MilvusServer, MilvusServerConfig

    server = MilvusServer(MilvusServerConfig(), wait_for_started=False)
    parser = argparse.ArgumentParser(prog="python -m ragline.ops.stack_milvus")
    parser.add_argument("--data", required=True, help="Milvus's data directory (kept across restarts)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds to become healthy, or exit")
    for key in server.config_keys:
        value = server.config.get(key)
        if value is not None:
            parser.add_argument("--" + key.replace("_", "-"), type=server.config.get_type(key), dest=f"x_{key}")
    args = parser.parse_args(argv)
    server.set_base_dir(args.data)
    for name, value in vars(args).items():
        if name.startswith("x_") and value is not None:
            server.config.set(name[2:], value)
    server.start()
    child = server.server_proc

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    if not _healthy_within(child, server.webservice_port, args.start_timeout):
        # measured: a first start that logged "etcdserver: leader changed" never became
        # healthy (and never exited) in 4 minutes; a new start is what it needs
        print(f"milvus not healthy within {args.start_timeout:g} s: stopping it", file=sys.stderr, flush=True)
        child.kill()
    code = child.wait()
    # Milvus's own logs are rewritten at each start: the last words go to supervisord's
    last = _last_words(Path(args.data) / "logs" / "milvus-stdout.log")
    print(f"milvus exited with {code}; its log ended with:\n{last}", file=sys.stderr, flush=True)
    return code if code > 0 else 1  # whatever the reason, not a clean stop to supervisord


def _healthy_within(child, port: int, timeout_s: float) -> bool:
    """Whether Milvus answers /healthz on ``port`` within ``timeout_s`` (False at once if
    it exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return True  # exited: its exit code says the rest
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if b"OK" in response.read():
                    return True
        except OSError:
            pass
        time.sleep(1.0)
    return False


def _last_words(log: Path, lines: int = 5) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 16384))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        return f"({exc})"
    wanted = [line for line in tail if any(w in line for w in ("ERROR", "FATAL", "panic", "fatal"))] or tail
    return "\n".join(line[:400] for line in wanted[-lines:])


if __name__ == "__main__":
    sys.exit(main())
