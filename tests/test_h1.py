"""One HTTP/1.1 connection of the default backend (``h1.Connection``) on a scripted stream.

What the network can do that a loopback server rarely does on cue (a
``100 Continue`` first, a write or read that fails) and what the caller can
get wrong (a header value with a line break) each end in the httpx
exception the retry rules expect, with the connection closed; and each
phase of an attempt's timing has its own deadline and error (``Clock``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from memcachier_async._transports.body import Target
from memcachier_async._transports.h1 import (
    Answer,
    CallDeadline,
    Clock,
    Connection,
    request_head,
)

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"


class Scripted(anyio.abc.ByteStream):
    """A stream that answers from ``chunks`` and can fail on send or receive."""

    def __init__(
        self,
        chunks: list[bytes],
        *,
        send_error: BaseException | None = None,
        receive_error: BaseException | None = None,
    ) -> None:
        self.chunks = chunks
        self.send_error = send_error
        self.receive_error = receive_error
        self.sent: list[bytes] = []
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.receive_error is not None:
            raise self.receive_error
        if not self.chunks:
            raise anyio.EndOfStream
        return self.chunks.pop(0)

    async def send(self, item: bytes) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(item)

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed = True

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        return {}


async def _exchange(
    stream: Scripted, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[Connection, Answer]:
    connection = Connection(("http", "127.0.0.1", 80))
    connection._stream = stream
    with anyio.CancelScope() as scope:
        clock = Clock(scope, {}, math.inf, None)
        answer = await connection.exchange(
            request_head(b"GET", b"/api/v1/1/stats", headers or [(b"Host", b"127.0.0.1")]),
            None,
            tls=None,
            clock=clock,
            read_for=Target("GET", "http://127.0.0.1/api/v1/1/stats", {}),
        )
    return connection, answer


async def test_an_informational_answer_before_the_final_one_is_skipped() -> None:
    """``100 Continue`` then ``200``: the 200 and its body, the connection kept."""
    stream = Scripted([b"HTTP/1.1 100 Continue\r\n\r\n", OK])
    connection, answer = await _exchange(stream)
    assert (answer.status, answer.body) == (200, b"[]")
    assert answer.header(b"content-length") == b"2"
    assert answer.header(b"retry-after") is None
    assert not stream.closed
    assert connection.reusable()


async def test_a_failed_write_is_a_write_error_and_closes_the_connection() -> None:
    """The peer gone before the request is written: httpx.WriteError (it may have
    reached the server), the stream closed."""
    stream = Scripted([OK], send_error=anyio.BrokenResourceError())
    with pytest.raises(httpx.WriteError, match="BrokenResourceError"):
        await _exchange(stream)
    assert stream.closed


async def test_a_failed_read_is_a_read_error_and_closes_the_connection() -> None:
    """A reset while reading the answer: httpx.ReadError, the stream closed."""
    stream = Scripted([], receive_error=ConnectionResetError(104, "reset"))
    with pytest.raises(httpx.ReadError, match="ConnectionResetError"):
        await _exchange(stream)
    assert stream.closed


def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    """A header value that would split the request: httpx.LocalProtocolError when its
    head is made, before any connection is taken."""
    with pytest.raises(httpx.LocalProtocolError):
        request_head(b"GET", b"/", [(b"Host", b"127.0.0.1"), (b"X-Note", b"a\r\nInjected: 1")])


async def test_each_phase_has_its_own_timer_and_error() -> None:
    """A phase whose timeout is shorter than what is left of the call moves the scope's
    deadline; a longer one (or none) puts the call's deadline back; the error names
    the phase that was running, or the call's deadline."""
    timeouts = {"pool": 1.0, "connect": 2.0, "write": None, "read": 60.0}
    scope = anyio.CancelScope()  # never entered: only its deadline is read
    now = anyio.current_time()
    clock = Clock(scope, timeouts, now + 30.0, 30.0)
    clock.enter("pool")
    assert clock.phase_bound
    assert scope.deadline == pytest.approx(now + 1.0, abs=0.5)
    assert isinstance(clock.expired(None), httpx.PoolTimeout)
    clock.enter("connect")
    assert scope.deadline == pytest.approx(now + 2.0, abs=0.5)
    assert isinstance(clock.expired(None), httpx.ConnectTimeout)
    clock.enter("write")  # no write timeout: only the deadline
    assert not clock.phase_bound
    assert scope.deadline == now + 30.0
    assert isinstance(clock.expired(None), CallDeadline)
    clock.enter("read")  # 60 s: the deadline comes first
    assert not clock.phase_bound
    assert scope.deadline == now + 30.0
    scope = anyio.CancelScope()  # never entered: only its deadline is read
    clock = Clock(scope, {"write": 0.5, "read": 0.5}, math.inf, None)
    clock.enter("write")
    assert isinstance(clock.expired(None), httpx.WriteTimeout)
    clock.enter("read")
    assert isinstance(clock.expired(None), httpx.ReadTimeout)
    scope = anyio.CancelScope()  # never entered: only its deadline is read
    # A phase timeout ending after the call's end (the call began earlier).
    now = anyio.current_time()
    clock = Clock(scope, {"connect": 5.0, "read": 5.0}, now + 1.0, 10.0)
    clock.enter("connect")
    assert not clock.phase_bound
    assert scope.deadline == math.inf
    clock.phase_bound = True
    clock.enter("read")
    assert not clock.phase_bound
    assert scope.deadline == now + 1.0


async def test_a_body_shorter_than_its_declared_length_is_not_sent() -> None:
    """A request (of a user's client, through PoolTransport) whose Content-Length
    says 5 for a body of 2: httpx.LocalProtocolError, nothing written, the
    connection closed."""
    stream = Scripted([OK])
    connection = Connection(("http", "127.0.0.1", 80))
    connection._stream = stream
    head = request_head(b"POST", b"/", [(b"Host", b"127.0.0.1"), (b"Content-Length", b"5")])
    scope = anyio.CancelScope()
    with pytest.raises(httpx.LocalProtocolError):
        await connection.exchange(
            head,
            b"ab",
            tls=None,
            clock=Clock(scope, {}, math.inf, None),
            read_for=Target("POST", "http://127.0.0.1/", {}),
        )
    assert stream.sent == []
    assert stream.closed
