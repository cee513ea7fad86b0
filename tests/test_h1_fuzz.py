"""The default backend's HTTP/1.1 reader (``h1.Connection``) on arbitrary bytes.

The network decides where a response is cut into reads, and a hostile (or
broken) server decides what the bytes are. Two properties, on a scripted
stream:

- a valid answer (Content-Length or chunked, plain or gzip) reads the same
  body however its bytes are split, and leaves the connection reusable;
- any bytes at all end in an answer or in one of httpx's exceptions (the
  retry rules decide on their types), never in another exception, and a
  connection that did not end its exchange cleanly is closed.
"""

from __future__ import annotations

import gzip
import itertools
import math

import anyio
import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from test_h1 import Scripted

from memcachier_async._transports.body import Target
from memcachier_async._transports.h1 import Answer, Clock, Connection, request_head


def _split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(raw) + 1) for cut in cuts} | {0, len(raw)})
    return [raw[a:b] for a, b in itertools.pairwise(points) if b > a]


def _read(stream: Scripted) -> tuple[Connection, Answer]:
    connection = Connection(("http", "127.0.0.1", 80))
    connection._stream = stream

    async def run() -> Answer:
        return await connection.exchange(
            request_head(b"GET", b"/api/v1/1/stats", [(b"Host", b"127.0.0.1")]),
            None,
            tls=None,
            clock=Clock(anyio.CancelScope(), {}, math.inf, None),
            read_for=Target("GET", "http://127.0.0.1/api/v1/1/stats", {}),
        )

    return connection, anyio.run(run)


def _chunked(data: bytes, size: int) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=4000),
    chunk=st.one_of(st.none(), st.integers(1, 700)),
    gzipped=st.booleans(),
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
)
def test_a_valid_answer_reads_the_same_however_it_is_split(
    body: bytes, chunk: int | None, gzipped: bool, cuts: list[int]
) -> None:
    """Any split of a valid answer into reads gives its body (decoded), and the
    connection stays open for the next request."""
    payload = gzip.compress(body) if gzipped else body
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json"]
    if gzipped:
        head.append(b"Content-Encoding: gzip")
    if chunk is None:
        head.append(b"Content-Length: %d" % len(payload))
        framed = payload
    else:
        head.append(b"Transfer-Encoding: chunked")
        framed = _chunked(payload, chunk)
    stream = Scripted(_split(b"\r\n".join(head) + b"\r\n\r\n" + framed, cuts))
    connection, answer = _read(stream)
    assert answer.status == 200
    assert answer.body == body
    assert not stream.closed
    assert connection.reusable()


PREFIXES = [
    b"",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\n",
    b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 3\r\n\r\n",
]


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(PREFIXES),
    rest=st.binary(max_size=600),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
)
def test_any_bytes_end_in_an_answer_or_an_httpx_error(
    prefix: bytes, rest: bytes, cuts: list[int]
) -> None:
    """Whatever the server sends: an answer, or an httpx transport or decoding error
    with the connection closed; never another exception."""
    stream = Scripted(_split(prefix + rest, cuts))
    try:
        connection, answer = _read(stream)
    except (httpx.TransportError, httpx.DecodingError):
        assert stream.closed
        return
    assert 100 <= answer.status <= 999
    if not stream.closed:
        assert connection.reusable()
