"""The default transport (``_pool.PoolTransport``): connection reuse, limits, waits, expiry.

A small HTTP/1.1 keep-alive server on anyio (so it runs under asyncio and
trio alike) counts connections and requests in flight.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import pytest

from memcachier_async import AsyncAnalytics, RetryPolicy
from memcachier_async._transports.h1 import Answer, Connection
from memcachier_async._transports.pool import PoolTransport

pytestmark = pytest.mark.anyio

BODY = json.dumps({"cache_id": 7}).encode()


class Server:
    """Answers every request with BODY; ``/slow`` after ``slow`` seconds."""

    def __init__(self, slow: float = 0.3) -> None:
        self.slow = slow
        self.connections = 0
        self.open = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.url = ""

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        self.open += 1
        buffer = b""
        try:
            async with stream:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        chunk = await stream.receive()
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    await self.answer(stream, head.split(b" ")[1])
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            self.open -= 1

    async def answer(self, stream: anyio.abc.SocketStream, target: bytes) -> None:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if target == b"/slow":
                await anyio.sleep(self.slow)
            body, extra = BODY, b""
            if target == b"/gzip":
                body, extra = gzip.compress(BODY), b"Content-Encoding: gzip\r\n"
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + extra
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        finally:
            self.in_flight -= 1


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    srv.url = f"http://127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, srv.handle)
        yield srv
        tg.cancel_scope.cancel()


def _limits(connections: int, expiry: float = 30.0) -> httpx.Limits:
    return httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=expiry
    )


async def test_sequential_calls_share_one_connection(server: Server) -> None:
    """One caller at a time: every request goes over the same kept-alive connection."""
    async with httpx.AsyncClient(transport=PoolTransport(limits=_limits(10))) as client:
        for _ in range(20):
            response = await client.get(server.url + "/")
            assert response.json() == {"cache_id": 7}
    assert server.requests == 20
    assert server.connections == 1


async def test_connections_never_exceed_the_limit(server: Server) -> None:
    """30 concurrent calls over a pool of 5: at most 5 connections, 5 in flight, all answered."""
    results: list[int] = []
    async with httpx.AsyncClient(transport=PoolTransport(limits=_limits(5))) as client:

        async def call() -> None:
            response = await client.get(server.url + "/slow")
            results.append(response.status_code)

        server.slow = 0.02
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(call)
    assert results == [200] * 30
    assert server.connections == 5
    assert server.max_in_flight == 5


async def test_waiting_past_the_pool_timeout_is_a_pool_timeout(server: Server) -> None:
    """With every connection busy, a request waits only its pool timeout: httpx.PoolTimeout."""
    timeout = httpx.Timeout(5.0, pool=0.05)
    transport = PoolTransport(limits=_limits(1))
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get, server.url + "/slow")
            await anyio.sleep(0.05)
            with pytest.raises(
                httpx.PoolTimeout, match=r"^no connection became free within the pool timeout$"
            ) as info:
                await client.get(server.url + "/")
            assert info.value.request.url == server.url + "/"
        # The busy connection came back: the pool works again.
        assert (await client.get(server.url + "/")).status_code == 200
    assert server.connections == 1


async def test_cancelled_waiter_does_not_lose_the_connection(server: Server) -> None:
    """Cancelling a request that waits for a connection leaves the pool whole."""
    async with httpx.AsyncClient(transport=PoolTransport(limits=_limits(1))) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get, server.url + "/slow")
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.05):
                await client.get(server.url + "/")
        with anyio.fail_after(2):
            assert (await client.get(server.url + "/")).status_code == 200


async def test_idle_connections_expire(server: Server) -> None:
    """A connection idle past keepalive_expiry is closed and replaced by a new one."""
    transport = PoolTransport(limits=_limits(4, expiry=0.05))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url + "/")
        await anyio.sleep(0.15)
        await client.get(server.url + "/")
        await anyio.sleep(0.05)
        assert server.connections == 2
        assert server.open == 1


async def test_every_expired_idle_connection_is_closed_not_only_the_reused_one(
    server: Server,
) -> None:
    """Two connections idle past keepalive_expiry: the next request closes both (the pool
    expires them), not only the one it would have reused."""
    transport = PoolTransport(limits=_limits(4, expiry=0.05))
    async with httpx.AsyncClient(transport=transport) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(client.get, server.url + "/slow")
        assert server.open == 2
        await anyio.sleep(0.15)
        await client.get(server.url + "/")
        with anyio.fail_after(2):
            while server.open > 1:  # noqa: ASYNC110 - the server's sockets close on their own
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)  # and it stays so: no expired socket is left open
        assert server.open == 1
        assert server.connections == 3


async def test_aclose_closes_every_connection(server: Server) -> None:
    """Closing the transport closes its connections."""
    client = httpx.AsyncClient(transport=PoolTransport(limits=_limits(4)))
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(client.get, server.url + "/slow")
    assert server.open == 3
    await client.aclose()
    with anyio.fail_after(2):
        while server.open:  # noqa: ASYNC110 - the server's sockets close on their own
            await anyio.sleep(0.01)
    with pytest.raises(RuntimeError):
        await client.get(server.url + "/")


async def test_compressed_body_is_decoded_by_the_client(server: Server) -> None:
    """The transport returns the raw body; the client decodes gzip once."""
    async with httpx.AsyncClient(transport=PoolTransport()) as client:
        response = await client.get(server.url + "/gzip")
    assert response.json() == {"cache_id": 7}


async def test_sdk_uses_it_by_default(server: Server) -> None:
    """AsyncAnalytics' own client sends through a PoolTransport (under the retry layer)."""
    async with AsyncAnalytics(
        "user", "pw", base_url=server.url + "/api/v1", retry=RetryPolicy.disabled()
    ) as api:
        assert isinstance(api.http_client._transport.inner, PoolTransport)  # type: ignore[attr-defined]
        assert await api.login() == 7


async def test_limits_size_the_sdk_pool(server: Server) -> None:
    """AsyncAnalytics(limits=...) caps the connections of its own transport."""
    api = AsyncAnalytics(
        "user",
        "pw",
        cache_id=7,
        base_url=server.url + "/api/v1",
        limits=_limits(3),
        retry=RetryPolicy.disabled(),
    )
    async with api, anyio.create_task_group() as tg:
        server.slow = 0.02
        for _ in range(12):
            tg.start_soon(api.http_client.get, server.url + "/slow")
    assert server.connections == 3


def test_limits_with_a_transport_of_your_own_are_refused() -> None:
    """limits= only sizes the SDK's own transport: with transport= it is a ValueError."""
    with pytest.raises(ValueError, match="limits"):
        AsyncAnalytics("user", "pw", limits=_limits(3), transport=PoolTransport())


class _FakeSlot(Connection):
    """A connection that answers at once (after one checkpoint)."""

    def __init__(self) -> None:
        super().__init__(("http", "127.0.0.1", 80))
        self.closed = False

    def reusable(self) -> bool:
        return True

    async def exchange(self, *args: Any, **kwargs: Any) -> Answer:
        await anyio.lowlevel.checkpoint()
        return Answer(200, b"OK", [], b"ok")

    async def aclose(self) -> None:
        self.closed = True


async def test_connection_handed_to_a_waiter_cancelled_in_the_same_tick_is_kept() -> None:
    """The only connection, released to a waiter that is cancelled before it runs, goes back to the pool."""
    pool = PoolTransport(limits=_limits(1))
    made: list[_FakeSlot] = []

    def new_slot() -> Any:
        slot = _FakeSlot()
        made.append(slot)
        pool._slots.add(slot)  # type: ignore[arg-type]
        return slot

    pool._new_slot = new_slot  # type: ignore[method-assign]
    held = pool._take()  # the pool's one connection, busy
    assert held is not None
    request = httpx.Request("GET", "http://127.0.0.1/", extensions={"timeout": {"pool": 5.0}})
    async with anyio.create_task_group() as tg:
        waiter_scope = anyio.CancelScope()

        async def waiter() -> None:
            with waiter_scope:
                await pool.handle_async_request(request)

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()  # the waiter queues for the connection
        # One tick: the waiter is cancelled, then handed the connection
        # before it runs again to see the cancellation.
        waiter_scope.cancel()
        pool._release(held)
    with anyio.fail_after(2):
        response = await pool.handle_async_request(request)
    assert response.status_code == 200
    assert len(made) == 1  # the same connection, not a new one
    await pool.aclose()


async def test_idle_connections_beyond_max_keepalive_are_closed(server: Server) -> None:
    """max_keepalive_connections=1: after a burst of 3, the next request leaves one connection open."""
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=1, keepalive_expiry=30.0)
    transport = PoolTransport(limits=limits)
    async with httpx.AsyncClient(transport=transport) as client:
        server.slow = 0.05
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(client.get, server.url + "/slow")
        assert server.connections == 3
        await client.get(server.url + "/")
        assert len(transport._slots) == 1
        with anyio.fail_after(2):
            while server.open > 1:  # noqa: ASYNC110 - the server's sockets close on their own
                await anyio.sleep(0.01)
        assert server.connections == 3  # the kept one was reused


async def test_a_request_waiting_when_the_pool_closes_is_refused() -> None:
    """aclose() wakes a request waiting for a connection, and refuses new ones, with
    "the transport is closed"."""
    pool = PoolTransport(limits=_limits(1))
    assert pool._take() is not None  # the only connection is in use
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            with pytest.raises(RuntimeError, match=r"^the transport is closed$"):
                await pool._wait()

        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        await pool.aclose()
    with pytest.raises(RuntimeError, match=r"^the transport is closed$"):
        await pool.handle_async_request(httpx.Request("GET", "http://127.0.0.1:9/"))
