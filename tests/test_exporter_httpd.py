"""The exporter's HTTP server on hostile input: every limit holds, the server goes on.

Raw bytes over loopback sockets, since what a client may send (garbage,
bodies, huge heads, slowness, too many connections) is the point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from memcachier_async._cli.httpd import Limits, Request, Response, serve_http, text

LIMITS = Limits(head_timeout=0.3, idle_timeout=0.3, max_query_fields=5)


async def echo(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("a bug in a handler")
    query = ";".join(f"{k}={','.join(v)}" for k, v in sorted(request.query.items()))
    return text(200, f"{request.method} {request.path} {query} {request.headers.get('x-a', '-')}")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serve_http(echo, "127.0.0.1", 0, limits=LIMITS) as bound:
        yield bound


async def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes; everything the server answers until it closes (or 2 s pass)."""
    received = b""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        with anyio.move_on_after(2):
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.anyio
async def test_get_and_head_with_keep_alive(port: int) -> None:
    """GET answers; HEAD answers the same headers without a body; one connection serves both."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        got = await http.get("/a?b=1&b=2&c=", headers={"x-a": "v"})
        head = await http.head("/a")
    assert (got.status_code, got.text) == (200, "GET /a b=1,2;c= v\n")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len("HEAD /a  -\n"))


@pytest.mark.anyio
async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    """Two requests in one packet: two answers, in order."""
    answer = await exchange(
        port,
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"GET /1") < answer.index(b"GET /2")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GARBAGE\r\n\r\n", 400, b"not a well-formed HTTP/1.1 request"),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"not a well-formed"),
        (b"GET http://elsewhere/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"must be a path"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405, b"Use GET"),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, b"Use GET"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 413, b"bodies"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            413,
            b"bodies",
        ),
        (b"GET /?a=1&b=2&c=3&d=4&e=5&f=6 HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"at most 5 fields"),
        (b"GET /?a=%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"UTF-8"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n", 431, b"larger than 16384"),
    ],
    ids=[
        "garbage",
        "non-ascii target",
        "absolute target",
        "post",
        "delete",
        "body",
        "chunked body",
        "too many fields",
        "bad utf-8",
        "huge head",
    ],
)
async def test_a_bad_request_gets_a_one_line_reason_and_the_connection_closes(
    port: int, request_bytes: bytes, status: int, reason: bytes
) -> None:
    """Malformed, non-GET, bodies, too many query fields, heads over 16 KiB: 4xx, one line, closed."""
    answer = await exchange(port, request_bytes)
    assert status_of(answer) == status
    head, _, body = answer.partition(b"\r\n\r\n")
    assert reason in body
    assert body.count(b"\n") == 1
    assert b"connection: close" in head.lower()
    # The client's bytes are never echoed back.
    assert b"GARBAGE" not in body
    assert b"\xff" not in body


@pytest.mark.anyio
async def test_a_huge_head_is_refused_before_it_is_all_read(port: int) -> None:
    """A head that never ends is cut off at the limit, not buffered: 431 after about 16 KiB."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000)
        answer = await stream.receive()
    assert status_of(answer) == 431


@pytest.mark.anyio
async def test_a_handler_that_raises_gets_a_500_and_the_server_goes_on(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a handler: 500 with a one-line body, logged; the next request is answered."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        boom = await http.get("/boom")
        after = await http.get("/fine")
    assert boom.status_code == 500
    assert boom.text == "Internal error; see the exporter's log.\n"
    assert "a bug in a handler" not in boom.text
    assert after.status_code == 200
    assert any("/boom" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_a_slow_head_and_an_idle_connection_are_closed(port: int) -> None:
    """A head not finished within head_timeout, or no request within idle_timeout: closed, no answer."""
    for data in (b"GET / HTTP/1.1\r\nHo", b""):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            if data:
                await stream.send(data)
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await stream.receive()


@pytest.mark.anyio
async def test_connections_over_the_limit_get_503_and_the_others_still_work() -> None:
    """max_connections open: one more gets 503 at once and is closed; the open ones still answer."""
    streams: list[anyio.abc.SocketStream] = []
    async with serve_http(echo, "127.0.0.1", 0, limits=Limits(max_connections=4)) as port:
        try:
            for _ in range(4):
                stream = await anyio.connect_tcp("127.0.0.1", port)
                streams.append(stream)
                # An answer proves the server holds the connection open.
                await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert status_of(await stream.receive()) == 200
            refused = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(refused) == 503
            assert b"Too many connections." in refused
            await streams[0].send(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(await streams[0].receive()) == 200
        finally:
            for stream in streams:
                await stream.aclose()


@pytest.mark.anyio
async def test_a_connection_that_fails_closes_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error on one connection closes it and is logged; the next connection is served."""
    from memcachier_async._cli import httpd

    original = httpd._Server._converse
    failed: list[bool] = []

    async def once_broken(self: Any, stream: anyio.abc.SocketStream) -> None:
        if not failed:
            failed.append(True)
            raise RuntimeError("a bug on one connection")
        await original(self, stream)

    monkeypatch.setattr(httpd._Server, "_converse", once_broken)
    async with serve_http(echo, "127.0.0.1", 0) as port:
        broken = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        served = await exchange(port, b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert broken == b""
    assert status_of(served) == 200
    assert any("a bug on one connection" in str(r.exc_info) for r in caplog.records)
