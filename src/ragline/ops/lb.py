"""A small TCP load balancer for the local stack: round robin over API replicas.

Each connection goes to the next backend in turn that accepts it (a bug until
2026-12-04 sent every connection to the first backend while it was up); a backend that refuses is
skipped (and tried again after ``retry_s``), so a killed replica costs no request that
had not reached it yet. Requests in flight on a replica that dies fail with it (the
client retries: the API's writes are idempotent). In Kubernetes a Service does this.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

log = logging.getLogger("ragline.lb")


class Balancer:
    def __init__(self, backends: list[tuple[str, int]], retry_s: float = 2.0, connect_timeout_s: float = 1.0) -> None:
        if not backends:
            raise ValueError("no backends")
        self.backends = backends
        self.retry_s = retry_s
        self.connect_timeout_s = connect_timeout_s
        self._next = itertools.cycle(range(len(backends)))
        self._down_until = [0.0] * len(backends)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        first, n = next(self._next), len(self.backends)
        order = [(first + k) % n for k in range(n)]  # each connection starts one further on
        # backends believed up first; the others too, as a last resort
        for i in sorted(order, key=lambda i: self._down_until[i] > now):
            host, port = self.backends[i]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                if self._down_until[i] <= now:
                    log.warning("backend %s:%d unreachable (%s); skipping it for %.0f s", host, port, exc, self.retry_s)
                self._down_until[i] = now + self.retry_s
        raise ConnectionError("no backend accepts connections")

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            backend_reader, backend_writer = await self._connect()
        except ConnectionError:
            client_writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            with contextlib.suppress(Exception):
                await client_writer.drain()
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, backend_writer), _pipe(backend_reader, client_writer))
        finally:
            for writer in (backend_writer, client_writer):
                with contextlib.suppress(Exception):
                    writer.close()

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self.handle, host, port)
        log.info("balancing %s:%d over %s", host, port, self.backends)
        async with server:
            await server.serve_forever()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from ``reader`` to ``writer``; its end of stream passed on as a half-close
    (a client that shuts its sending side still reads the reply), an error closes both."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        with contextlib.suppress(Exception):
            writer.close()
