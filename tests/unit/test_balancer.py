"""The stack's TCP balancer (ragline/ops/lb.py) on real loopback sockets: round robin, a
refusing backend skipped and remembered, 503 when none accepts, bytes both ways, a
client's half-close still gets its response."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from ragline.ops.lb import Balancer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _backend(name: bytes) -> tuple[asyncio.base_events.Server, int]:
    """Answers each connection with ``name``, ``:``, then everything it read until EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name + b":")
        data = await reader.read(1024)
        if data == b"wait-for-eof":
            data += b"|" + await reader.read()  # what came until the client half-closed
        writer.write(data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _through(port: int, payload: bytes, half_close: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    if half_close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _balancing(backends: list[tuple[str, int]], **options):
    balancer = Balancer(backends, **options)
    server = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
    try:
        yield balancer, server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_connections_go_round_robin_and_bytes_flow_both_ways():
    (a, port_a), (b, port_b) = await _backend(b"a"), await _backend(b"b")
    async with _balancing([("127.0.0.1", port_a), ("127.0.0.1", port_b)]) as (_, port):
        replies = [await _through(port, b"hello %d" % n) for n in range(4)]
    a.close()
    b.close()
    assert replies == [b"a:hello 0", b"b:hello 1", b"a:hello 2", b"b:hello 3"]


async def test_a_refusing_backend_is_skipped_and_not_tried_first_while_it_is_down():
    live, port_live = await _backend(b"live")
    dead = ("127.0.0.1", _free_port())  # nothing listens there
    async with _balancing([dead, ("127.0.0.1", port_live)], retry_s=60) as (balancer, port):
        replies = [await _through(port, b"x") for _ in range(3)]
        assert balancer._down_until[0] > 0 and balancer._down_until[1] == 0
    live.close()
    assert replies == [b"live:x"] * 3


async def test_no_backend_accepting_is_a_503_with_retry_after():
    async with _balancing([("127.0.0.1", _free_port()), ("127.0.0.1", _free_port())]) as (_, port):
        reply = await _through(port, b"GET / HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1" in reply


async def test_a_client_that_half_closes_still_gets_the_whole_response():
    """A client that sends its request and shuts its sending side (curl with some proxies,
    netcat, one-shot scripts) must still read the reply: the balancer passes the EOF on
    instead of closing the backend connection."""
    backend, port_backend = await _backend(b"b")
    async with _balancing([("127.0.0.1", port_backend)]) as (_, port):
        reply = await _through(port, b"wait-for-eof", half_close=True)
    backend.close()
    assert reply == b"b:wait-for-eof|"


def test_no_backends_is_refused_at_once():
    with pytest.raises(ValueError):
        Balancer([])
