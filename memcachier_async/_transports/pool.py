"""The SDK's default transport: a pool of HTTP/1.1 connections in constant time per request.

httpcore's connection pool re-examines every connection each time a
request starts and each time one ends: it asks each idle connection's
socket whether it is readable (system calls), and for each idle connection
counts all connections again. With the 100 connections a poller needs, that
is most of a call's CPU time (measured: about 25 ms per call at 128 calls in
flight, against about 1 ms with a single connection). And each httpcore
connection takes three anyio locks per request, each an extra turn of the
event loop.

:class:`PoolTransport` pools connections of its own (``h1.Connection``:
h11 on an anyio stream, one cancel scope per attempt) and does the pooling
in constant time per request; only the connection the request takes is
checked for a close by the server:

- idle connections wait on a stack, the most recently used on top, so light
  load keeps few connections warm and the others age out
  (``keepalive_expiry``) and are closed;
- requests that find no free connection wait in first-come order, up to the
  request's ``pool`` timeout (then :class:`httpx.PoolTimeout`).

Every response is read before its connection goes back, so responses come
back as bytes in memory (which the SDK needs anyway): decoded and bounded as
they arrive (see ``body.py``). An error body cut short closes its connection.

Behind a proxy (an ``https://`` origin beyond loopback, when one is set) each
connection is a one-connection httpx transport, which sets up the tunnel;
while httpx is mocked or instrumented (:func:`httpx_patched`) requests go
through httpx's own transport.
"""

from __future__ import annotations

import math
import os
import ssl
import threading
import time
import types
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
import h11
import httpcore  # httpx imports it on its first transport: in the event loop, ~0.3 s
import httpcore._async.connection_pool as _httpcore_pool
import httpx
import httpx._transports.default as _httpx_default

from .body import Target, decoded_headers, network_abort, read_body
from .h1 import Answer, Clock, Connection, Origin, origin_of, request_head
from .rules import PROGRESS_EXTENSION, Progress

__all__ = ["PoolTransport", "default_tls_context", "httpx_patched"]

_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def default_tls_context() -> ssl.SSLContext:
    """The TLS context of ``verify=True``, built once per process (per CA setting).

    What httpx builds for ``verify=True`` (certifi's bundle, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``). Loading a CA bundle takes about 25 ms,
    which every new client paid; a context is meant to be shared by any
    number of connections, so clients with the default verification share
    one. Changing either variable gives a new one.
    """
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    found = _contexts.get(key)
    if found is None:
        with _contexts_lock:
            found = _contexts.get(key)
            if found is None:
                found = _contexts[key] = httpx.create_ssl_context(verify=True)
    return found


class _Waiter:
    __slots__ = ("event", "slot")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.slot: _Slot | None = None


_Slot = httpx.AsyncHTTPTransport | Connection


class PoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport with up to ``limits.max_connections`` connections.

    Without a proxy each connection is an :class:`~.h1.Connection` (h11 on
    an anyio stream), which :meth:`exchange` drives with no httpx model:
    the SDK's :class:`~.sender.PoolSender` calls it directly, and
    :meth:`handle_async_request` through it. Behind a proxy each
    connection is a one-connection ``httpx.AsyncHTTPTransport`` (httpx sets
    up the tunnel).
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        proxy: str | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        limits = limits or httpx.Limits()
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._slot_limits = httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=self._expiry
        )
        self._proxy = proxy
        self._limits = limits
        # httpx's own transport, while httpx is patched (see _through_httpx).
        self._httpx: httpx.AsyncHTTPTransport | None = None
        # One TLS context for all connections (httpx would build one per transport).
        if isinstance(verify, ssl.SSLContext):
            self._ssl = verify
        elif verify:
            self._ssl = default_tls_context()
        else:
            self._ssl = httpx.create_ssl_context(verify=False)
        if proxy is None:
            # What httpcore sets on every connection: HTTP/1.1 is all we speak.
            self._ssl.set_alpn_protocols(["http/1.1"])
        self._slots: set[_Slot] = set()
        self._idle: deque[tuple[_Slot, float]] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    @property
    def direct(self) -> bool:
        """Whether :meth:`exchange` can be used (no proxy)."""
        return self._proxy is None

    def _new_slot(self) -> _Slot:
        slot: _Slot
        if self._proxy is None:
            slot = Connection(("", "", 0))
        else:
            slot = httpx.AsyncHTTPTransport(
                verify=self._ssl, limits=self._slot_limits, proxy=self._proxy
            )
        self._slots.add(slot)
        return slot

    def _take(self) -> _Slot | None:
        """A free connection at once (the most recently used, or a new one), if any."""
        if self._idle:
            return self._idle.pop()[0]
        if self._max is None or len(self._slots) < self._max:
            return self._new_slot()
        return None

    async def _wait(self) -> _Slot:
        """The next connection released, in first-come order."""
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.slot is not None:
                # Handed a connection just as the wait ended: pass it on.
                self._release(waiter.slot)
            else:
                self._waiters.remove(waiter)
            raise
        if waiter.slot is None:  # woken by aclose()
            raise RuntimeError("the transport is closed")
        return waiter.slot

    def _release(self, slot: _Slot) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.slot = slot
            waiter.event.set()
        else:
            self._idle.append((slot, time.monotonic()))

    def _expired(self) -> list[_Slot]:
        """Connections idle longer than ``keepalive_expiry``, or beyond the idle cap."""
        expired: list[_Slot] = []
        if self._expiry is not None:
            too_old = time.monotonic() - self._expiry
            while self._idle and self._idle[0][1] < too_old:
                expired.append(self._idle.popleft()[0])
        if self._max_idle is not None:
            while len(self._idle) > self._max_idle:
                expired.append(self._idle.popleft()[0])
        for slot in expired:
            self._slots.discard(slot)
        return expired

    async def _close_expired(self) -> None:
        for old in self._expired():
            with anyio.CancelScope(shield=True):
                await old.aclose()

    async def _acquire(self, progress: Progress | None, clock: Clock) -> _Slot:
        """A connection, waiting in line for one if all are busy (``clock``
        keeps the pool timeout while it waits)."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._idle:
            await self._close_expired()
        if progress is not None:
            progress.queued = True
        slot = self._take()
        if slot is None:
            clock.enter("pool")
            slot = await self._wait()
        if progress is not None:
            progress.queued = False
        return slot

    async def _give_back(self, slot: _Slot) -> None:
        if self._closed:
            self._slots.discard(slot)
            with anyio.CancelScope(shield=True):
                await slot.aclose()
        else:
            self._release(slot)

    async def exchange(
        self,
        head: h11.Request,
        origin: Origin,
        content: bytes | None,
        *,
        timeouts: Mapping[str, float | None],
        remaining: float | None,
        progress: Progress | None,
        read_for: httpx.Request | Target,
        request: httpx.Request | None = None,
    ) -> Answer:
        """One request on one of the pool's connections, its response read whole.

        ``timeouts``: httpx's per phase; ``remaining``: the seconds left of
        the call (``None``: no deadline), after which :class:`~.h1.CallDeadline`
        is raised. Only without a proxy (:attr:`direct`).
        """
        call_end = math.inf if remaining is None else anyio.current_time() + remaining
        with anyio.CancelScope(deadline=call_end) as scope:
            clock = Clock(scope, timeouts, call_end, remaining)
            slot = await self._acquire(progress, clock)
            try:
                assert isinstance(slot, Connection)
                if slot.origin != origin:
                    await slot.aclose()
                    slot.origin = origin
                elif not slot.reusable():
                    await slot.aclose()
                return await slot.exchange(
                    head,
                    content,
                    tls=self._ssl if origin[0] == "https" else None,
                    clock=clock,
                    read_for=read_for,
                    request=request,
                )
            finally:
                await self._give_back(slot)
        raise clock.expired(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._proxy is not None or httpx_patched():
            return await self._through_httpx(request)
        url = request.url
        origin = origin_of(url, request)
        if isinstance(request.stream, httpx.ByteStream):
            content = b"".join(request.stream)
        else:
            content = await request.aread()
        progress = request.extensions.get(PROGRESS_EXTENSION)
        head = request_head(
            request.method.encode("ascii"), url.raw_path, request.headers.raw, request
        )
        answer = await self.exchange(
            head,
            origin,
            content or None,
            timeouts=request.extensions.get("timeout") or {},
            remaining=None,
            progress=progress if isinstance(progress, Progress) else None,
            read_for=request,
            request=request,
        )
        decoded = answer.header(b"content-encoding") is not None
        return httpx.Response(
            answer.status,
            headers=decoded_headers(answer.headers, decoded),
            # Decoded: nothing above decodes it again.
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
            request=request,
        )

    async def _through_httpx(self, request: httpx.Request) -> httpx.Response:
        """The request through httpx's own transport: behind a proxy (httpx sets
        up the tunnel), or while httpx is mocked or instrumented (see
        :func:`httpx_patched`)."""
        if self._proxy is None:
            if self._httpx is None:
                self._httpx = httpx.AsyncHTTPTransport(verify=self._ssl, limits=self._limits)
            return await _read_whole(self._httpx, request)
        progress = request.extensions.get(PROGRESS_EXTENSION)
        pool_timeout = (request.extensions.get("timeout") or {}).get("pool")
        with anyio.CancelScope() as scope:
            clock = Clock(scope, {"pool": pool_timeout}, math.inf, None)
            slot = await self._acquire(progress, clock)
        if scope.cancelled_caught:
            raise clock.expired(request)
        try:
            assert isinstance(slot, httpx.AsyncHTTPTransport)
            return await _read_whole(slot, request)
        finally:
            await self._give_back(slot)

    async def aclose(self) -> None:
        self._closed = True
        if self._httpx is not None:
            await self._httpx.aclose()
        slots, self._slots = self._slots, set()
        self._idle.clear()
        while self._waiters:
            self._waiters.popleft().event.set()
        for slot in slots:
            with anyio.CancelScope(shield=True):
                await slot.aclose()


async def _read_whole(
    transport: httpx.AsyncHTTPTransport, request: httpx.Request
) -> httpx.Response:
    """``transport``'s response to ``request``, its body read (decoded, bounded)."""
    try:
        response = await transport.handle_async_request(request)
        try:
            assert isinstance(response.stream, httpx.AsyncByteStream)
            headers = response.headers
            body, _ = await read_body(
                response.stream,
                status_code=response.status_code,
                content_encoding=headers.get("content-encoding"),
                content_length=headers.get("content-length"),
                request=request,
                abort=network_abort(response.extensions),
            )
        finally:
            # A body not read to its end closes the connection.
            await response.aclose()
    except ssl.SSLError as exc:
        # A TLS alert met while reading (a refused client certificate
        # under TLS 1.3) comes out of anyio as a bare ssl.SSLError.
        raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
    return httpx.Response(
        response.status_code,
        headers=decoded_headers(headers.raw, "content-encoding" in headers),
        # Decoded: nothing above decodes it again.
        stream=httpx.ByteStream(body),
        extensions={k: v for k, v in response.extensions.items() if k != "network_stream"},
        request=request,
    )


_genuine: dict[str, Any] = {}


def _patched(owner: type, name: str, module: Any) -> bool:
    method = owner.__dict__.get(name)
    if method is not None and method is _genuine.get(owner.__qualname__):
        return False
    if type(method) is types.FunctionType and method.__code__.co_filename == module.__file__:
        _genuine[owner.__qualname__] = method
        return False
    return True


def httpx_patched() -> bool:
    """Whether httpx's transport or httpcore's pool is patched: mocked (respx)
    or instrumented (opentelemetry-instrumentation-httpx makes a span per
    request there). The SDK's own connections would go around either, so
    requests then go through them (``PoolTransport`` through httpx's
    transport, the senders through ``client.send``).

    A test of the user's with ``respx.mock`` expects every request of an
    httpx-based client to be intercepted, never sent to the network.
    """
    return _patched(
        httpcore.AsyncConnectionPool, "handle_async_request", _httpcore_pool
    ) or _patched(httpx.AsyncHTTPTransport, "handle_async_request", _httpx_default)
