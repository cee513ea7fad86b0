"""Cancelling a call that the retry layer is handling, over real loopback sockets.

A small HTTP/1.1 server (anyio TCP, a few lines) plays the service; the
client's pool is limited to one connection, so a leaked checkout would make
the next call hang instead of succeed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from memcachier_async import AsyncAnalytics, RetryEvent, RetryPolicy, Stats

pytestmark = pytest.mark.anyio

STATS_BODY = (Path(__file__).parent / "samples" / "stats_reference.json").read_bytes()
OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(STATS_BODY) + STATS_BODY
)
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 20\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy"
)
HANG = b""  # read the request, never answer


class LoopbackServer:
    """Answers requests from a script, in order; OK once the script runs out."""

    def __init__(self, *script: bytes) -> None:
        self.script = list(script)
        self.requests = 0
        self.request_seen = anyio.Event()
        self.client_closed = anyio.Event()
        self.port = 0

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await self.serve_requests(stream)

    async def serve_requests(self, stream: anyio.abc.SocketStream) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    buffer += await stream.receive()
                _, _, buffer = buffer.partition(b"\r\n\r\n")  # GETs: no body
                self.requests += 1
                self.request_seen.set()
                reply = self.script.pop(0) if self.script else OK
                if reply == HANG:
                    while True:  # until the client goes away
                        await stream.receive()
                await stream.send(reply)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            self.client_closed.set()


@asynccontextmanager
async def serving(server: LoopbackServer) -> AsyncIterator[LoopbackServer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        yield server
        tg.cancel_scope.cancel()


def checked_out(transport: httpx.AsyncHTTPTransport) -> int:
    """Requests holding (or queued for) a connection of the pool."""
    return len(transport._pool._requests)


async def cancel_mid_call(
    client: AsyncAnalytics, started: anyio.Event
) -> tuple[list[Stats], list[BaseException]]:
    """Start client.stats(), cancel it once ``started`` is set; what it returned or raised."""
    results: list[Stats] = []
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            results.append(await client.stats())
        except Exception as exc:  # a retry-layer bug would surface here
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await started.wait()
        tg.cancel_scope.cancel()
    return results, errors


def make_client(port: int, inner: httpx.AsyncHTTPTransport, retry: RetryPolicy) -> AsyncAnalytics:
    return AsyncAnalytics(
        "user",
        "pw-cancel",
        cache_id=14,
        base_url=f"http://127.0.0.1:{port}/api/v1",
        transport=inner,
        retry=retry,
    )


async def test_cancel_during_a_request_closes_the_connection_and_never_retries() -> None:
    """Cancelled while the server is silent: no retry, the socket is closed, the pool slot is free."""
    events: list[RetryEvent] = []
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    with anyio.fail_after(10):  # a safety net: every step below is event-driven
        async with serving(LoopbackServer(HANG)) as server:
            client = make_client(server.port, inner, RetryPolicy(on_retry=events.append))
            async with client:
                results, errors = await cancel_mid_call(client, server.request_seen)
                assert (results, errors, events) == ([], [], [])
                await server.client_closed.wait()
                assert checked_out(inner) == 0
                assert all(c.is_closed() or c.is_idle() for c in inner._pool.connections)
                assert server.requests == 1
                # The only connection slot is free: the next call goes through.
                assert isinstance(await client.stats(), Stats)
                assert server.requests == 2
                assert events == []


async def test_cancel_during_a_backoff_wait_stops_retrying() -> None:
    """Cancelled while waiting out a Retry-After: no further request, and no pool slot was held."""
    waiting = anyio.Event()
    held_while_waiting: list[int] = []
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))

    def on_retry(event: RetryEvent) -> None:
        held_while_waiting.append(checked_out(inner))
        waiting.set()

    with anyio.fail_after(10):
        async with serving(LoopbackServer(BUSY)) as server:
            client = make_client(server.port, inner, RetryPolicy(on_retry=on_retry))
            async with client:
                results, errors = await cancel_mid_call(client, waiting)
                assert (results, errors) == ([], [])
                assert held_while_waiting == [0]  # the 503 was read and released first
                assert checked_out(inner) == 0
                assert server.requests == 1
                assert isinstance(await client.stats(), Stats)
                assert server.requests == 2
