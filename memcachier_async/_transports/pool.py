"""The SDK's default transport: one httpcore pool per connection, pooled here.

httpcore's connection pool re-examines every connection each time a
request starts and each time one ends: it asks each idle connection's
socket whether it is readable (system calls), and for each idle connection
counts all connections again. With the 100 connections a poller needs, that
is most of a call's CPU time (measured: about 25 ms per call at 128 calls in
flight, against about 1 ms with a single connection).

:class:`PoolTransport` keeps httpcore for the HTTP itself (TLS, proxies,
HTTP/1.1) but gives each connection a one-connection ``AsyncHTTPTransport``
of its own, and does the pooling in constant time per request:

- idle connections wait on a stack, the most recently used on top, so light
  load keeps few connections warm and the others age out
  (``keepalive_expiry``) and are closed;
- requests that find no free connection wait in first-come order, up to the
  request's ``pool`` timeout (then :class:`httpx.PoolTimeout`).

Every response is read before its connection goes back, so responses come
back as bytes in memory (which the SDK needs anyway): decoded and bounded as
they arrive (see ``body.py``). An error body cut short closes its connection.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections import deque

import anyio
import httpcore  # noqa: F401  # httpx imports it on its first transport: in the event loop, ~0.3 s
import httpx

from .body import decoded_headers, network_abort, read_body
from .rules import PROGRESS_EXTENSION

__all__ = ["PoolTransport", "default_tls_context"]

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
        self.slot: httpx.AsyncHTTPTransport | None = None


class PoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport with up to ``limits.max_connections`` connections."""

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
        # One TLS context for all connections (httpx would build one per transport).
        if isinstance(verify, ssl.SSLContext):
            self._ssl = verify
        elif verify:
            self._ssl = default_tls_context()
        else:
            self._ssl = httpx.create_ssl_context(verify=False)
        self._slots: set[httpx.AsyncHTTPTransport] = set()
        self._idle: deque[tuple[httpx.AsyncHTTPTransport, float]] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    def _new_slot(self) -> httpx.AsyncHTTPTransport:
        slot = httpx.AsyncHTTPTransport(
            verify=self._ssl, limits=self._slot_limits, proxy=self._proxy
        )
        self._slots.add(slot)
        return slot

    def _take(self) -> httpx.AsyncHTTPTransport | None:
        """A free connection at once (the most recently used, or a new one), if any."""
        if self._idle:
            return self._idle.pop()[0]
        if self._max is None or len(self._slots) < self._max:
            return self._new_slot()
        return None

    async def _wait(self) -> httpx.AsyncHTTPTransport:
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

    def _release(self, slot: httpx.AsyncHTTPTransport) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.slot = slot
            waiter.event.set()
        else:
            self._idle.append((slot, time.monotonic()))

    def _expired(self) -> list[httpx.AsyncHTTPTransport]:
        """Connections idle longer than ``keepalive_expiry``, or beyond the idle cap."""
        expired: list[httpx.AsyncHTTPTransport] = []
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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        for old in self._expired():
            with anyio.CancelScope(shield=True):
                await old.aclose()
        progress = request.extensions.get(PROGRESS_EXTENSION)
        if progress is not None:
            progress.queued = True
        slot = self._take()
        if slot is None:
            try:
                with anyio.fail_after((request.extensions.get("timeout") or {}).get("pool")):
                    slot = await self._wait()
            except TimeoutError:
                raise httpx.PoolTimeout(
                    "no connection became free within the pool timeout", request=request
                ) from None
        if progress is not None:
            progress.queued = False
        try:
            response = await slot.handle_async_request(request)
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
        finally:
            if self._closed:
                self._slots.discard(slot)
                with anyio.CancelScope(shield=True):
                    await slot.aclose()
            else:
                self._release(slot)
        return httpx.Response(
            response.status_code,
            headers=decoded_headers(headers.raw, "content-encoding" in headers),
            # Decoded: nothing above decodes it again.
            stream=httpx.ByteStream(body),
            extensions={k: v for k, v in response.extensions.items() if k != "network_stream"},
            request=request,
        )

    async def aclose(self) -> None:
        self._closed = True
        slots, self._slots = self._slots, set()
        self._idle.clear()
        while self._waiters:
            self._waiters.popleft().event.set()
        for slot in slots:
            with anyio.CancelScope(shield=True):
                await slot.aclose()
