"""The default backend's own sender (``sender.PoolSender``) on real loopback sockets.

A call of ``AsyncAnalytics()`` goes spec → a connection of the client's
``PoolTransport`` → bytes → body, without httpx's models (``h1.py``). These
tests pin what that path must keep from the httpx stack it replaces: the
deadline and the phase timeouts and how far a request got when they pass,
keep-alive (and a connection the server closed while idle), the typed
errors of a broken answer, and that respx still sees every request.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
import respx
from _limits_server import LoopbackServer, head

from memcachier_async import (
    AsyncAnalytics,
    OutcomeUnknownError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from memcachier_async import _protocol as p
from memcachier_async._stack import DEFAULT_TIMEOUT
from memcachier_async._transports.pool import PoolTransport, httpx_patched

pytestmark = pytest.mark.anyio

ONE_TRY = RetryPolicy(max_attempts=1, deadline=0.5, budget=None)
STATS = (Path(__file__).parent / "samples" / "stats_two_servers.json").read_bytes()
SERVERS = len(json.loads(STATS))


def slow(request: bytes) -> Iterator[bytes]:
    time.sleep(1.5)
    yield head("200 OK", "Content-Length: 2") + b"[]"


def client(
    url: str,
    *,
    retry: RetryPolicy = ONE_TRY,
    timeout: httpx.Timeout | None = None,
    connections: int = 1,
) -> AsyncAnalytics:
    """A default-backend client of ``url`` that must send through the PoolSender."""
    api = AsyncAnalytics(
        "user",
        "pw",
        cache_id=1,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        retry=retry,
        base_url=url,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
    )
    assert type(api._direct).__name__ == "PoolSender"
    return api


class KeepAlive:
    """An HTTP/1.1 server that keeps connections open, answering from ``answers``
    (target → raw response) and counting connections; ``close_after`` closes
    each connection after that many answers (without saying so)."""

    def __init__(self, answers: dict[bytes, bytes], close_after: int | None = None) -> None:
        self.answers = answers
        self.close_after = close_after
        self.connections = 0
        self.ended = 0
        self.one_ended = anyio.Event()
        self.requests: list[bytes] = []
        self.url = ""

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        served = 0
        async with stream:
            try:
                while self.close_after is None or served < self.close_after:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                    request, _, buffer = buffer.partition(b"\r\n\r\n")
                    self.requests.append(request)
                    target = request.split(b" ")[1]
                    await stream.send(self.answers[target.rsplit(b"/", 1)[-1]])
                    served += 1
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            finally:
                self.ended += 1
                self.one_ended.set()


def ok(body: bytes, *headers: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", *headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@contextlib.asynccontextmanager
async def serve(server: KeepAlive) -> AsyncIterator[KeepAlive]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.url = f"http://127.0.0.1:{port}/api/v1"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        yield server
        tg.cancel_scope.cancel()


@pytest.fixture
async def keep_alive() -> AsyncIterator[KeepAlive]:
    async with serve(KeepAlive({b"stats": ok(STATS)})) as server:
        yield server


async def test_calls_share_one_kept_alive_connection(keep_alive: KeepAlive) -> None:
    """Five calls in a row: one connection, five requests, each answered."""
    async with client(keep_alive.url) as api:
        for _ in range(5):
            stats = await api.stats()
            assert len(stats.servers) == SERVERS
    assert keep_alive.connections == 1
    assert len(keep_alive.requests) == 5


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    """The server closes each connection after one answer (no Connection: close):
    the next call takes a new connection at once, with no failed attempt."""
    async with serve(KeepAlive({b"stats": ok(STATS)}, close_after=1)) as server:
        async with client(server.url) as api:
            await api.stats()
            await anyio.sleep(0.1)  # the server's FIN arrives
            stats = await api.stats()
        # One attempt allowed (ONE_TRY): a call sent on the closed connection would fail.
        assert len(stats.servers) == SERVERS
        assert server.connections == 2
        assert len(server.requests) == 2


async def test_a_gzip_body_is_decoded_and_its_headers_dropped() -> None:
    """A gzip answer is decoded once on the direct path: the sender's reply has the
    decoded body and neither Content-Encoding nor the wire's Content-Length (as
    the httpx stack drops them); the connection is kept for the next call."""
    answer = ok(gzip.compress(STATS), "Content-Encoding: gzip")
    async with serve(KeepAlive({b"stats": answer})) as server:
        async with client(server.url) as api:
            spec = p.build_request(p.STATS, server.url, cache_id=1, max_response_size=2**20)
            assert api._direct is not None
            reply, body = await api._direct.send(
                spec.method,
                spec.url,
                content=None,
                headers=spec.headers,
                extensions=spec.extensions,
            )
            stats = await api.stats()
        assert body == STATS
        assert "content-encoding" not in reply.headers
        assert "content-length" not in reply.headers
        assert reply.headers["content-type"] == "application/json"
        assert len(stats.servers) == SERVERS
        assert server.connections == 1


async def test_an_error_body_not_read_to_its_end_closes_its_connection() -> None:
    """A 500 with a 1 MiB body: 16 KiB are read, the connection is not reused."""
    big = b"x" * 2**20
    answers = {
        b"stats": b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % len(big) + big,
    }
    async with serve(KeepAlive(answers)) as server:
        async with client(server.url) as api:
            for _ in range(2):
                with pytest.raises(ServerError):
                    await api.stats()
        assert server.connections == 2


async def test_a_deadline_in_the_pool_queue_means_nothing_was_sent() -> None:
    """The only connection busy: a create whose deadline passes in the queue is a plain
    TransportError (PoolTimeout), not OutcomeUnknownError, and reaches no server."""
    with LoopbackServer(slow) as server:
        async with client(server.url()) as api:
            relaxed = api.with_options(timeout=5.0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(relaxed.list_credentials)
                await anyio.sleep(0.2)
                started = time.monotonic()
                with pytest.raises(TransportError) as caught:
                    await api.create_credential()
                elapsed = time.monotonic() - started
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert [a.outcome for a in caught.value.attempts] == ["PoolTimeout"]
    assert "deadline of 0.5 s" in str(caught.value)
    assert elapsed < 1.2
    assert len(server.requests) == 1


async def test_a_pool_timeout_shorter_than_the_deadline_is_a_pool_timeout() -> None:
    """timeout=Timeout(5, pool=0.2): the second call waits 0.2 s for the connection,
    then fails with PoolTimeout (nothing sent), not at the deadline."""
    policy = RetryPolicy(max_attempts=1, deadline=5.0, budget=None)
    with LoopbackServer(slow) as server:
        async with (
            client(server.url(), retry=policy, timeout=httpx.Timeout(5.0, pool=0.2)) as api,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(api.list_credentials)
            await anyio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(TransportError) as caught:
                await api.create_credential()
            elapsed = time.monotonic() - started
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert [a.outcome for a in caught.value.attempts] == ["PoolTimeout"]
    assert elapsed < 1.0


async def test_a_deadline_after_sending_leaves_the_outcome_unknown() -> None:
    """A create sent to a server that answers after the deadline: OutcomeUnknownError
    (DeadlineExceeded), sent once."""
    with LoopbackServer(slow) as server:
        async with client(server.url()) as api:
            started = time.monotonic()
            with pytest.raises(OutcomeUnknownError) as caught:
                await api.create_credential()
            elapsed = time.monotonic() - started
    assert [a.outcome for a in caught.value.attempts] == ["DeadlineExceeded"]
    assert elapsed < 1.2
    assert len(server.requests) == 1


async def test_a_read_timeout_shorter_than_the_deadline_ends_the_attempt() -> None:
    """timeout=Timeout(5, read=0.3) under a 5 s deadline: the slow answer is a ReadTimeout
    attempt after about 0.3 s, not a wait until the deadline."""
    policy = RetryPolicy(max_attempts=1, deadline=5.0, budget=None)
    with LoopbackServer(slow) as server:
        async with client(server.url(), retry=policy, timeout=httpx.Timeout(5.0, read=0.3)) as api:
            started = time.monotonic()
            with pytest.raises(TransportError) as caught:
                await api.list_credentials()
            elapsed = time.monotonic() - started
    assert [a.outcome for a in caught.value.attempts] == ["ReadTimeout"]
    assert elapsed < 1.2


def _answer_with(raw: bytes) -> Iterator[bytes]:
    yield raw


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (b"", "RemoteProtocolError"),  # closed without an answer
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[]", "RemoteProtocolError"),  # cut
        (b"NOT HTTP AT ALL\r\n\r\n", "RemoteProtocolError"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200_000 + b"\r\n\r\n", "RemoteProtocolError"),
    ],
    ids=["no-answer", "short-body", "garbage", "huge-head"],
)
async def test_a_broken_answer_is_a_typed_error(raw: bytes, outcome: str) -> None:
    """What the server sends that is not a whole HTTP answer: a TransportError whose
    attempt names httpx's exception, as through httpcore."""
    with LoopbackServer(lambda request: _answer_with(raw)) as server:
        async with client(server.url()) as api:
            with pytest.raises(TransportError) as caught:
                await api.stats()
    assert [a.outcome for a in caught.value.attempts] == [outcome]


async def test_a_refused_connection_is_a_connect_error() -> None:
    """Nothing listens on the port: ConnectError (nothing sent, so a create may be
    retried)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = RetryPolicy(max_attempts=2, deadline=5.0, budget=None, initial_backoff=0.01)
    async with client(f"http://127.0.0.1:{port}/api/v1", retry=policy) as api:
        with pytest.raises(TransportError) as caught:
            await api.create_credential()
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert [a.outcome for a in caught.value.attempts] == ["ConnectError", "ConnectError"]


async def test_respx_sees_every_call_of_the_default_client() -> None:
    """Under respx.mock the default client's calls go through httpx (respx answers
    them); outside it they go on the SDK's own connections."""
    assert not httpx_patched()
    base = "https://analytics.memcachier.com/api/v1"
    with respx.mock(base_url=base) as router:
        route = router.get("/1/stats").respond(json=json.loads(STATS))
        assert httpx_patched()
        async with AsyncAnalytics("user", "pw", cache_id=1, base_url=base) as api:
            assert not api._direct.usable()  # type: ignore[union-attr]
            stats = await api.stats()
    assert route.call_count == 1
    assert len(stats.servers) == SERVERS
    assert not httpx_patched()


async def test_closing_the_client_closes_its_connections(keep_alive: KeepAlive) -> None:
    """aclose() closes the kept-alive connection: the server sees it end."""
    api = client(keep_alive.url)
    await api.stats()
    assert keep_alive.ended == 0
    await api.aclose()
    with anyio.fail_after(2):
        await keep_alive.one_ended.wait()
    assert keep_alive.connections == 1


async def test_a_scheme_other_than_http_or_https_is_refused() -> None:
    """PoolTransport under a client of the user's: an ftp:// URL is httpx's
    UnsupportedProtocol, as httpx's own transport says, and nothing is opened."""
    transport = PoolTransport()
    with pytest.raises(httpx.UnsupportedProtocol, match="'ftp'"):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))
    assert not transport._slots
    await transport.aclose()


async def test_errors_through_the_transport_name_their_request() -> None:
    """Through PoolTransport (a user's client over it), a refused connect is
    httpx.ConnectError carrying the request, as httpx's own transport gives it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(transport=PoolTransport()) as http:
        with pytest.raises(httpx.ConnectError) as caught:
            await http.get(f"http://127.0.0.1:{port}/x")
    assert caught.value.request.url == f"http://127.0.0.1:{port}/x"
