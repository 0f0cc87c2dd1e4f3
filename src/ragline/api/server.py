"""The embedded HTTP server: uvicorn on httptools and uvloop, with the slow-client limits
it lacks.

uvicorn closes idle keep-alive connections and caps concurrent connections
(``limit_concurrency``: 503 past it), but it arms no timer on a connection until its
first response, so a client that opens a connection and sends half a request line
holds it for ever. The protocols here close any connection whose request headers are
not complete within ``header_timeout_s``; the Guard middleware bounds the body's
arrival in the same way (408). httptools (a C parser) rather than h11 (pure Python):
receiving a 20 MB upload through h11 cost the event loop measurable time per chunk.

Shutdown: uvicorn stops taking connections and waits for requests in flight for
40 % of the grace period; the lifespan then finishes or spools background ingestion
within another 40 %, and closes the stores and the bus, so the process exits within
``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class _HeaderTimer:
    """A timer that closes the connection unless the request headers complete in time."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()  # headers still incomplete: a slow or stalled client


class GuardedH11Protocol(_HeaderTimer, H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # the headers are complete; idle time is keep-alive's
        else:
            self._arm_header_timer()  # a keep-alive connection began its next request

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


def _httptools_protocol() -> type | None:
    if importlib.util.find_spec("httptools") is None:
        return None
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(_HeaderTimer, HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


# Of the shutdown grace period: requests in flight get this share, background ingestion
# the same (app.py), and closing the stores and the bus what is left.
SERVER_SHARE = 0.4


def protocol_with(header_timeout_s: float, parser: str = "auto") -> type:
    """The HTTP protocol class: httptools where installed (``auto``), else h11."""
    base = _httptools_protocol() if parser in ("auto", "httptools") else None
    base = base or GuardedH11Protocol
    return type(f"Ragline{base.__name__}", (base,), {"header_timeout_s": header_timeout_s})


def run(app: Any, settings: Any) -> None:
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        loop=loop,
        http=protocol_with(settings.http_header_timeout_s, settings.http_parser),
        timeout_keep_alive=settings.http_keepalive_s,
        limit_concurrency=settings.http_max_connections,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s * SERVER_SHARE)),
    )
    uvicorn.Server(config).run()
