"""HTTP/1.1 on one connection, without httpx or httpcore models: h11 over an anyio stream.

The default backend's pool (``pool.py``) keeps these. A call hands one the
request as bytes and header pairs and gets back the status, the reason, the
raw headers and the body, read to its end through the size limit
(``body.py``): no ``httpx.Request``, no ``httpx.Response``, no stream object
per layer.

Time is kept with one anyio cancel scope per attempt whose deadline moves
with the phase (connect, write, read): the phase's own timeout where it is
shorter than what is left of the call, else the call's deadline. With the
SDK's defaults (a 30 s deadline, no phase timeout shorter than it but
connect's) that is one timer per call. A phase that runs out raises the
httpx exception httpcore would raise for it (``ConnectTimeout``,
``WriteTimeout``, ``ReadTimeout``); the call's deadline raises
:class:`CallDeadline`, which the caller turns into its own error.

Failures are httpx's exceptions, as httpx maps httpcore's: nothing sent
(``ConnectError``, ``ConnectTimeout``) or maybe sent (``WriteError``,
``ReadError``, ``RemoteProtocolError``, ...), because the retry rules decide
on that. A connection that did not end its exchange cleanly is closed,
never reused.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from collections.abc import AsyncIterator, Mapping

import anyio
import anyio.abc
import anyio.streams.tls
import h11
import httpx

from .body import Target, read_body

__all__ = [
    "Answer",
    "CallDeadline",
    "Clock",
    "Connection",
    "Origin",
    "origin_of",
    "request_head",
]

#: (scheme, host, port) of a connection: ``("https", "example.com", 443)``.
Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx.URL, request: httpx.Request | None = None) -> Origin:
    """Where a connection for ``url`` goes (``httpx.UnsupportedProtocol``
    for a scheme other than http or https)."""
    scheme = url.scheme
    default = _DEFAULT_PORTS.get(scheme)
    if default is None:
        raise httpx.UnsupportedProtocol(
            f"the URL has an unsupported scheme {scheme!r}", request=request
        )
    return (scheme, url.host, url.port or default)


# As httpcore: read up to 64 KiB at a time; a response head up to 100 KiB.
_READ_SIZE = 64 * 1024
_MAX_HEAD = 100 * 1024

_NETWORK_ERRORS = (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class CallDeadline(httpx.TimeoutException):
    """The call's deadline (not a phase's timeout) ended the attempt."""


class Answer:
    """A response read whole: status, reason, raw headers, decoded body."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), if any."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Clock:
    """The deadline of each phase of one attempt, on one cancel scope.

    ``timeouts`` are httpx's (``pool``, ``connect``, ``write``, ``read``);
    ``call_end`` is when the call's deadline passes, on anyio's clock, and
    ``remaining`` how far off it was when the attempt began (``None``: no
    deadline): a phase timeout at least that long can never fire first.
    """

    __slots__ = ("call_end", "phase", "phase_bound", "remaining", "scope", "timeouts")

    def __init__(
        self,
        scope: anyio.CancelScope,
        timeouts: Mapping[str, float | None],
        call_end: float,
        remaining: float | None,
    ) -> None:
        self.scope = scope
        self.timeouts = timeouts
        self.call_end = call_end
        self.remaining = remaining
        self.phase = "pool"
        self.phase_bound = False

    def enter(self, phase: str) -> None:
        """Start ``phase``: its timeout runs from now, unless the call ends first."""
        self.phase = phase
        timeout = self.timeouts.get(phase)
        remaining = self.remaining
        if timeout is None or (remaining is not None and timeout >= remaining):
            # Only the call's deadline can end this phase.
            if self.phase_bound:
                self.phase_bound = False
                self.scope.deadline = self.call_end
            return
        end = anyio.current_time() + timeout
        if end < self.call_end:
            self.phase_bound = True
            self.scope.deadline = end
        elif self.phase_bound:
            self.phase_bound = False
            self.scope.deadline = self.call_end

    def expired(self, request: httpx.Request | None) -> httpx.TimeoutException:
        """The error for the scope's deadline having passed."""
        if not self.phase_bound:
            return CallDeadline("the call's deadline passed", request=request)
        if self.phase == "pool":
            return httpx.PoolTimeout(
                "no connection became free within the pool timeout", request=request
            )
        error: type[httpx.TimeoutException] = {
            "connect": httpx.ConnectTimeout,
            "write": httpx.WriteTimeout,
        }.get(self.phase, httpx.ReadTimeout)
        return error(f"the {self.phase} timeout passed", request=request)


def _readable(sock: socket.socket | None) -> bool:
    """Whether an idle connection's socket has something to read: the
    server closed it (or sent what no request asked for). Either way it is
    not to be reused."""
    if sock is None:  # not a socket (a test's stream)
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - no poll
    except (OSError, ValueError):  # pragma: no cover - a socket closed under us
        return True


class Connection:
    """One HTTP/1.1 connection to one origin, opened on first use."""

    __slots__ = ("_h11", "_socket", "_stream", "origin")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._stream: anyio.abc.ByteStream | None = None
        self._socket: socket.socket | None = None
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)

    def reusable(self) -> bool:
        """Whether an idle connection can take the next request."""
        if self._stream is None:
            return True
        return self._h11.our_state is h11.IDLE and not _readable(self._socket)

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        self._socket = None
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        if stream is not None:
            # Shielded: a cancelled call still closes; a failure to close is closed enough.
            with anyio.CancelScope(shield=True), contextlib.suppress(*_NETWORK_ERRORS):
                await stream.aclose()

    async def _connect(
        self, tls: ssl.SSLContext | None, clock: Clock, request: httpx.Request | None
    ) -> anyio.abc.ByteStream:
        scheme, host, port = self.origin
        clock.enter("connect")
        try:
            stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
        except (OSError, anyio.BrokenResourceError) as exc:
            raise httpx.ConnectError(_message(exc), request=request) from exc
        if scheme == "https":
            if tls is None:  # pragma: no cover - the pool always gives one
                raise httpx.ConnectError("no TLS context for an https:// origin", request=request)
            try:
                stream = await anyio.streams.tls.TLSStream.wrap(
                    stream, hostname=host, ssl_context=tls, standard_compatible=False
                )
            except BaseException as exc:  # a refused handshake, or a cancelled one
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                if isinstance(exc, (*_NETWORK_ERRORS, anyio.EndOfStream)):
                    raise httpx.ConnectError(_message(exc), request=request) from exc
                raise
        self._stream = stream
        self._socket = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        return stream

    async def exchange(
        self,
        head: h11.Request,
        content: bytes | None,
        *,
        tls: ssl.SSLContext | None,
        clock: Clock,
        read_for: httpx.Request | Target,
        request: httpx.Request | None = None,
    ) -> Answer:
        """Send one request (``head``, see :func:`request_head`, then
        ``content``) and read its response whole, in ``clock``'s scope.

        The connection is closed unless the exchange ended cleanly.
        """
        done = False
        try:
            stream = self._stream or await self._connect(tls, clock, request)
            conn = self._h11
            try:
                data = conn.send(head)
                if content:
                    data += conn.send(h11.Data(data=content))
                data += conn.send(h11.EndOfMessage())
            except h11.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc), request=request) from exc
            clock.enter("write")
            try:
                await stream.send(data)
            except _NETWORK_ERRORS as exc:
                raise httpx.WriteError(_message(exc), request=request) from exc
            clock.enter("read")
            response = await self._next(stream, clock, request)
            while isinstance(response, h11.InformationalResponse):
                response = await self._next(stream, clock, request)
            if not isinstance(response, h11.Response):  # pragma: no cover - h11 gives no other
                raise httpx.RemoteProtocolError(
                    f"unexpected {type(response).__name__}", request=request
                )
            raw = list(response.headers.raw_items())
            encoding = length = None
            for name, value in raw:
                lowered = name.lower()
                if lowered == b"content-encoding":
                    encoding = value.decode("latin-1")
                elif lowered == b"content-length":
                    length = value.decode("latin-1")
            body, whole = await read_body(
                self._body(stream, clock, request),
                status_code=response.status_code,
                content_encoding=encoding,
                content_length=length,
                request=read_for,
            )
            if whole and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                done = True
            return Answer(response.status_code, response.reason, raw, body)
        finally:
            if not done:
                await self.aclose()

    async def _next(
        self,
        stream: anyio.abc.ByteStream,
        clock: Clock,
        request: httpx.Request | None,
    ) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        conn = self._h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if event is not h11.NEED_DATA:
                return event
            if clock.phase_bound:
                clock.enter("read")
            try:
                data = await stream.receive(_READ_SIZE)
            except anyio.EndOfStream:
                data = b""
            except _NETWORK_ERRORS as exc:
                raise httpx.ReadError(_message(exc), request=request) from exc
            if not data and conn.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            try:
                conn.receive_data(data)
            except h11.RemoteProtocolError as exc:  # pragma: no cover - h11 raises on next_event
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc

    async def _body(
        self,
        stream: anyio.abc.ByteStream,
        clock: Clock,
        request: httpx.Request | None,
    ) -> AsyncIterator[bytes]:
        while True:
            event = await self._next(stream, clock, request)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:  # pragma: no cover - h11 gives only these after a Response
                raise httpx.RemoteProtocolError(
                    f"unexpected {type(event).__name__}", request=request
                )


def request_head(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    request: httpx.Request | None = None,
) -> h11.Request:
    """The head of a request, checked by h11 (no line break in a header
    value, one Host, ...): ``httpx.LocalProtocolError`` if it cannot be sent.
    Immutable: one head serves any number of requests."""
    try:
        return h11.Request(method=method, target=target, headers=headers)
    except h11.LocalProtocolError as exc:
        raise httpx.LocalProtocolError(str(exc), request=request) from exc


def _message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
