"""Smaller safety rules of the client and its transports (issue 11).

Usernames and base URLs that would misroute or leak credentials are
refused without echoing the secret; only real loopback counts as loopback;
the aiohttp backend never resends on its own; a request that never left
its pool's queue is "not sent".
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from _limits_server import LoopbackServer, head

from memcachier_async import (
    AsyncAnalytics,
    OutcomeUnknownError,
    RetryPolicy,
    TransportError,
)

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-in-the-url"


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("aiohttp runs on asyncio only")
    return str(request.param)


def test_colon_in_username_is_refused() -> None:
    """RFC 7617: a ':' in the username would split user-pass in the wrong place."""
    with pytest.raises(ValueError, match="':'") as caught:
        AsyncAnalytics("team:ops", SECRET)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{SECRET}@analytics.memcachier.com/api/v1",
        f"http://user:{SECRET}@127.0.0.1:8080/api/v1",
        f"https://{SECRET}@analytics.memcachier.com/api/v1",
        f"https://analytics.memcachier.com/api/v1?token={SECRET}",
        f"ftp://user:{SECRET}@127.0.0.1/api",
    ],
)
def test_refused_base_url_does_not_echo_secrets(url: str) -> None:
    """User info, queries and other refused base URLs: ValueError without the secret."""
    with pytest.raises(ValueError, match="base_url") as caught:
        AsyncAnalytics("user", "pw", base_url=url)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.255.254.253", True),
        ("[::1]", True),
        ("api.localhost", False),
        ("localhost.localdomain", False),
        ("[::ffff:127.0.0.1]", False),
        ("0.0.0.0", False),
        ("128.0.0.1", False),
    ],
)
def test_only_real_loopback_takes_plain_http(host: str, allowed: bool) -> None:
    """localhost, 127.0.0.0/8 and ::1 only: *.localhost may be sent to DNS."""
    url = f"http://{host}:8080/api/v1"
    if allowed:
        assert AsyncAnalytics("u", "p", base_url=url).base_url == url.lower()
    else:
        with pytest.raises(ValueError, match="plain http"):
            AsyncAnalytics("u", "p", base_url=url)


class _DropSecond:
    """Answers a connection's first request (kept alive), closes it on the second."""

    def __init__(self) -> None:
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/api/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            for number in (1, 2):
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                data = data.partition(b"\r\n\r\n")[2]
                self.requests += 1
                if number == 2:
                    return  # closed without an answer: a stale keep-alive connection
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def drop_second() -> Iterator[_DropSecond]:
    server = _DropSecond()
    yield server
    server.close()


async def test_a_get_on_a_connection_the_server_closed(
    drop_second: _DropSecond, backend: str
) -> None:
    """A GET on a kept-alive connection the server closed without answering: httpx
    sends it once (one attempt, a TransportError without retries); aiohttp resends an
    idempotent request once by itself, on a new connection (docs/client.md says so),
    so the call succeeds with one attempt recorded and three requests on the wire."""
    async with AsyncAnalytics(
        "user",
        "pw",
        cache_id=1,
        base_url=drop_second.url,
        http_backend=backend,  # type: ignore[arg-type]
        retry=RetryPolicy.disabled(),
    ) as api:
        assert await api.list_credentials() == []
        if backend == "aiohttp":
            assert await api.list_credentials() == []
            assert drop_second.requests == 3
            return
        with pytest.raises(TransportError) as caught:
            await api.list_credentials()
    assert len(caught.value.attempts) == 1
    assert drop_second.requests == 2


async def test_a_create_on_a_connection_the_server_closed_is_sent_once(
    drop_second: _DropSecond, backend: str
) -> None:
    """A create_credential (POST) on a kept-alive connection the server closed: sent
    once on either engine, never again by the engine nor by the retry layer
    (OutcomeUnknownError: it may have been carried out)."""
    async with AsyncAnalytics(
        "user",
        "pw",
        cache_id=1,
        base_url=drop_second.url,
        http_backend=backend,  # type: ignore[arg-type]
    ) as api:
        assert await api.list_credentials() == []
        with pytest.raises(OutcomeUnknownError) as caught:
            await api.create_credential()
    assert len(caught.value.attempts) == 1
    assert drop_second.requests == 2


async def test_request_that_never_left_the_pool_queue_is_not_sent(backend: str) -> None:
    """With the only connection busy, a create whose deadline passes in the queue is
    a plain TransportError (nothing sent), not OutcomeUnknownError."""

    def slow(request: bytes) -> Iterator[bytes]:
        time.sleep(1.5)
        yield head("200 OK", "Content-Length: 2") + b"[]"

    limits = httpx.Limits(max_connections=1)
    inner: httpx.AsyncBaseTransport
    if backend == "aiohttp":
        from memcachier_async._transports.aiohttp import AiohttpTransport

        inner = AiohttpTransport(limits=limits)
    else:
        inner = httpx.AsyncHTTPTransport(limits=limits)
    with LoopbackServer(slow) as server:
        async with AsyncAnalytics(
            "user",
            "pw",
            cache_id=1,
            base_url=server.url(),
            transport=inner,
            retry=RetryPolicy(max_attempts=1, deadline=0.5, budget=None),
        ) as api:

            async def hold_the_connection() -> None:
                await inner.handle_async_request(httpx.Request("GET", server.url("/hold")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold_the_connection)
                await anyio.sleep(0.2)
                with pytest.raises(TransportError) as caught:
                    await api.create_credential()
                tg.cancel_scope.cancel()
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert [a.outcome for a in caught.value.attempts] == ["PoolTimeout"]
    assert len(server.requests) == 1


@pytest.mark.parametrize("cut", [8, 4, 20])
async def test_a_gzip_body_cut_before_its_trailer_is_a_decode_error(backend: str, cut: int) -> None:
    """A gzip stats body missing the last ``cut`` bytes (its CRC-32 and size, or
    more), with a Content-Length that matches what was sent: a DecodeError on
    every engine, never a silently short body."""
    import gzip

    from _limits_server import plain

    from memcachier_async import DecodeError

    body = (Path(__file__).parent / "samples" / "stats_two_servers.json").read_bytes()
    sent = gzip.compress(body)[:-cut]
    with LoopbackServer(
        plain("200 OK", sent, "Content-Type: application/json", "Content-Encoding: gzip")
    ) as server:
        async with AsyncAnalytics(
            "user",
            "pw",
            cache_id=1,
            base_url=server.url(),
            http_backend=backend,  # type: ignore[arg-type]
            retry=RetryPolicy.disabled(),
        ) as api:
            with pytest.raises(DecodeError, match="truncated"):
                await api.stats()
        with LoopbackServer(
            plain("200 OK", gzip.compress(body), "Content-Encoding: gzip")
        ) as whole:
            async with AsyncAnalytics(
                "user",
                "pw",
                cache_id=1,
                base_url=whole.url(),
                http_backend=backend,  # type: ignore[arg-type]
            ) as api:
                assert len(await api.stats()) == 2
