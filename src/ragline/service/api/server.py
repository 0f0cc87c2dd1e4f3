"""The embedded HTTP server: uvicorn on httptools and uvloop, with the slow-client limits
it lacks.

uvicorn arms no timer on a connection until its first response, so a client that opens
a connection and sends half a request line holds it for ever; and its connection cap
(``limit_concurrency``) answers *every* request 503 once the cap is reached, so ~512
idle sockets took the whole service down, ``/healthz`` included. Here instead:

- A connection whose request headers are not complete within ``header_timeout_s`` is
  closed (2 s once the server is half full); the Guard middleware bounds the body's
  arrival in the same way (408).
- ``Admission`` keeps the connections in two classes: *sheddable* (still sending its
  headers, or idle between keep-alive requests) and *in a request*. When a new
  connection would pass ``max_connections``, the oldest sheddable one is closed to make
  room; only when every connection is in a request is the new one refused. A flood of
  idle or half-open sockets therefore only displaces itself: a client that sends its
  request at once is always served, and health probes with it. How many requests are
  in flight per tenant is the Guard's business (429 past its cap). httptools (a C parser) rather than h11 (pure Python):
receiving a 20 MB upload through h11 cost the event loop measurable time per chunk.

Shutdown: uvicorn stops taking connections and waits for requests in flight for
40 % of the grace period; the lifespan then finishes or spools background ingestion
within another 40 %, and closes the stores and the bus, so the process exits within
``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import resource
from collections import OrderedDict
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class Admission:
    """The server's connections, oldest first, and which of them may be shed."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open = 0
        self.shed = 0  # connections closed to make room (for tests and metrics)
        self.refused = 0  # new connections closed because every one was in a request
        self._sheddable: OrderedDict[Any, None] = OrderedDict()

    @property
    def crowded(self) -> bool:
        return self.open * 2 >= self.max_connections

    def admit(self, connection: Any) -> bool:
        """Count a new connection, shedding the oldest idle or half-open one if full."""
        self.open += 1
        if self.open > self.max_connections:
            if not self._sheddable:
                self.refused += 1
                return False
            oldest, _ = self._sheddable.popitem(last=False)
            self.shed += 1
            oldest.transport.close()
        self._sheddable[connection] = None
        return True

    def busy(self, connection: Any) -> None:
        """Its request headers are complete: not to be shed while the request runs."""
        self._sheddable.pop(connection, None)

    def idle(self, connection: Any) -> None:
        """Waiting for its next keep-alive request: sheddable again, as the newest."""
        self._sheddable.pop(connection, None)
        self._sheddable[connection] = None

    def gone(self, connection: Any) -> None:
        self.open -= 1
        self._sheddable.pop(connection, None)


class _HeaderTimer:
    """A timer that closes the connection unless the request headers complete in time,
    and the connection's place in the server's ``Admission``."""

    header_timeout_s = 10.0
    crowded_header_timeout_s = 2.0
    admission: Admission = Admission(512)
    _header_timer: asyncio.TimerHandle | None = None
    _counted = False
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _admit(self) -> bool:
        self._counted = True
        if self.admission.admit(self):
            return True
        self.transport.close()
        return False

    def _leave(self) -> None:
        if self._counted:
            self._counted = False
            self.admission.gone(self)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            timeout = self.header_timeout_s
            if self.admission.crowded:
                timeout = min(timeout, self.crowded_header_timeout_s)
            self._header_timer = self.loop.call_later(timeout, self._headers_overdue)

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
        if self._admit():
            self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # the headers are complete; idle time is keep-alive's
            self.admission.busy(self)
        else:
            self._arm_header_timer()  # a keep-alive connection began its next request

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.admission.idle(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._leave()
        super().connection_lost(exc)


def _httptools_protocol() -> type | None:
    if importlib.util.find_spec("httptools") is None:
        return None
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(_HeaderTimer, HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self._admit():
                self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            self.admission.busy(self)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self.admission.idle(self)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            self._leave()
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


# Of the shutdown grace period: requests in flight get this share, background ingestion
# the same (app.py), and closing the stores and the bus what is left.
SERVER_SHARE = 0.4


def protocol_with(header_timeout_s: float, parser: str = "auto", max_connections: int = 512) -> type:
    """The HTTP protocol class: httptools where installed (``auto``), else h11; one
    ``Admission`` for all its connections."""
    base = _httptools_protocol() if parser in ("auto", "httptools") else None
    base = base or GuardedH11Protocol
    fields = {"header_timeout_s": header_timeout_s, "admission": Admission(max_connections)}
    return type(f"Ragline{base.__name__}", (base,), fields)


def _raise_open_files_limit(wanted: int) -> None:
    """Room for ``wanted`` sockets plus the process's own files, up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted + 1024)) if hard != resource.RLIM_INFINITY else max(soft, wanted + 1024)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(app: Any, settings: Any) -> None:
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    _raise_open_files_limit(settings.http_max_connections * 2)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        loop=loop,
        http=protocol_with(settings.http_header_timeout_s, settings.http_parser, settings.http_max_connections),
        timeout_keep_alive=settings.http_keepalive_s,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        # no limit_concurrency: past it uvicorn answers every request 503; Admission sheds instead
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s * SERVER_SHARE)),
    )
    uvicorn.Server(config).run()
