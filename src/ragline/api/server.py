"""The embedded HTTP server: uvicorn, with the slow-client limits it lacks.

uvicorn (h11) closes idle keep-alive connections and caps concurrent connections
(``limit_concurrency``: 503 past it), but it arms no timer on a connection until its
first response, so a client that opens a connection and sends half a request line
holds it for ever. ``GuardedH11Protocol`` closes any connection whose request headers
are not complete within ``header_timeout_s``; the Guard middleware bounds the body's
arrival in the same way (408). h11 also caps the header block's size (16 KiB).

Shutdown: uvicorn stops taking connections and waits for requests in flight for
40 % of the grace period; the lifespan then finishes or spools background ingestion
within another 40 %, and closes the stores and the bus, so the process exits within
``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and self._header_timer is None:
            self._arm_header_timer()  # a keep-alive connection began its next request

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue)

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # headers still incomplete: a slow or stalled client


# Of the shutdown grace period: requests in flight get this share, background ingestion
# the same (app.py), and closing the stores and the bus what is left.
SERVER_SHARE = 0.4


def protocol_with(header_timeout_s: float) -> type[GuardedH11Protocol]:
    return type("RaglineH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})


def run(app: Any, settings: Any) -> None:
    import uvicorn

    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(), log_config=None,
        http=protocol_with(settings.http_header_timeout_s), timeout_keep_alive=settings.http_keepalive_s,
        limit_concurrency=settings.http_max_connections,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s * SERVER_SHARE)))
    uvicorn.Server(config).run()
