"""fan_out() over real loopback sockets: the connection pool after it, and PoolTimeout.

A small HTTP/1.1 server (anyio, so it runs on asyncio and trio) answers
every request with stats after a short delay and counts the requests it is
working on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from memcachier_async import (
    AsyncAnalytics,
    CacheCredentials,
    Stats,
    TransportError,
    fan_out,
)

pytestmark = pytest.mark.anyio

BODY = (Path(__file__).parent / "samples" / "stats_two_servers.json").read_bytes()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


class StatsServer:
    """Answers each request after ``delay`` seconds; ``max_busy`` is the most at once.

    With ``gather`` set, the first requests are held until that many are in
    flight together (once), so "N at once" does not depend on how fast a
    loaded machine starts the client's tasks.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.busy = 0
        self.max_busy = 0
        self.answered = 0
        self.base_url = ""
        self.gather = 0
        self._gathered = anyio.Event()

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        buffer = b""
        async with stream:
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                    _, _, buffer = buffer.partition(b"\r\n\r\n")
                    self.busy += 1
                    self.max_busy = max(self.max_busy, self.busy)
                    try:
                        if self.gather:
                            if self.busy >= self.gather:
                                self._gathered.set()
                            # Bounded: a client that never sends that many fails the test, not CI.
                            with anyio.move_on_after(10):
                                await self._gathered.wait()
                        await anyio.sleep(self.delay)
                        await stream.send(RESPONSE)
                        self.answered += 1
                    finally:
                        self.busy -= 1
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return


@pytest.fixture
async def server() -> AsyncIterator[StatsServer]:
    stats_server = StatsServer(delay=0.02)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    stats_server.base_url = f"http://127.0.0.1:{port}/api/v1"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, stats_server.handle)
        yield stats_server
        tg.cancel_scope.cancel()


def credentials(count: int) -> list[CacheCredentials]:
    return [CacheCredentials(f"user{i}", "pw", cache_id=i) for i in range(count)]


def pooled_client(connections: int, pool_timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=connections)),
        timeout=httpx.Timeout(10.0, pool=pool_timeout),
    )


def checked_out(client: httpx.AsyncClient) -> int:
    """Connections of the pool that are serving a request now."""
    pool = client._transport._pool  # type: ignore[attr-defined]
    return sum(1 for c in pool.connections if not (c.is_idle() or c.is_closed()))


def our_tasks() -> list[str]:
    return [t.name for t in anyio.get_running_tasks() if "memcachier_async" in str(t.name)]


async def stats_of(api: AsyncAnalytics) -> Stats:
    return await api.stats()


async def test_cancelling_midway_leaves_no_connection_checked_out(server: StatsServer) -> None:
    """Leaving after 50 of 1,000 results: no task of ours, no connection in use, pool reusable."""
    async with pooled_client(20) as http:
        async with fan_out(
            credentials(1000), stats_of, concurrency=20, http_client=http, base_url=server.base_url
        ) as results:
            seen = 0
            async for result in results:
                assert result.ok, result.error
                seen += 1
                if seen == 50:
                    assert checked_out(http) > 0
                    break
        assert our_tasks() == []
        assert checked_out(http) == 0
        assert not http.is_closed  # the caller's client is the caller's to close
        # The pool still works at full width after the cancelled calls.
        again = [
            r
            async for r in fan_out(
                credentials(40),
                stats_of,
                concurrency=20,
                http_client=http,
                base_url=server.base_url,
            )
        ]
        assert all(r.ok for r in again)
        assert checked_out(http) == 0
    assert server.max_busy <= 20


async def test_concurrency_within_the_pool_never_waits_for_a_connection(
    server: StatsServer,
) -> None:
    """With concurrency = pool size, a tight pool timeout is never hit; above it, it is."""
    server.gather = 8
    async with pooled_client(8, pool_timeout=0.005) as http:
        within = [
            r
            async for r in fan_out(
                credentials(120),
                stats_of,
                concurrency=8,
                http_client=http,
                base_url=server.base_url,
            )
        ]
        assert all(r.ok for r in within)
        assert server.max_busy == 8
        # The control: more calls than connections (each held 100 ms), and
        # some wait too long for one.
        server.delay = 0.1
        beyond = [
            r
            async for r in fan_out(
                credentials(120),
                stats_of,
                concurrency=32,
                http_client=http,
                base_url=server.base_url,
            )
        ]
        failed = [r.error for r in beyond if not r.ok]
        assert failed
        assert all(isinstance(e, TransportError) for e in failed)
        assert any("PoolTimeout" in str(e) for e in failed)


async def test_shared_client_made_for_credentials_is_closed(server: StatsServer) -> None:
    """The client fan_out makes for credential sets is closed when it ends, even early."""
    clients: list[httpx.AsyncClient] = []

    async def call(api: AsyncAnalytics) -> Stats:
        clients.append(api.http_client)
        return await api.stats()

    async with fan_out(credentials(100), call, concurrency=10, base_url=server.base_url) as results:
        async for _ in results:
            break
    assert clients
    assert len({id(c) for c in clients}) == 1
    assert clients[0].is_closed
    assert our_tasks() == []
