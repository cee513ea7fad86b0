"""An httpx transport that sends with aiohttp (the ``aiohttp`` extra), asyncio only.

``AsyncAnalytics(..., http_backend="aiohttp")`` uses it. aiohttp's HTTP
parser is written in C and its connection pool does little work per
request, so a call costs much less CPU than through httpcore; everything
above the transport (retries, timeouts, the client) stays httpx.

Failures are mapped to the httpx exception that says how far the request
got, because the retry layer decides on that: a failure to connect (or to
get a connection in time) never sent anything (``ConnectError``,
``ConnectTimeout``, ``PoolTimeout``); anything later may have reached the
server (``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``).
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from typing import Any

import httpx

from .body import decoded_headers, read_body
from .rules import PROGRESS_EXTENSION, Progress

try:
    import aiohttp
    import yarl
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'http_backend="aiohttp" needs aiohttp: pip install "memcachier-async[aiohttp]"'
    ) from exc

__all__ = ["AiohttpTransport"]


_TIMEOUTS: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    timeout: dict[str, float | None] = request.extensions.get("timeout") or {}
    pool, connect, read = timeout.get("pool"), timeout.get("connect"), timeout.get("read")
    found = _TIMEOUTS.get((pool, connect, read))
    if found is None:
        if len(_TIMEOUTS) >= 64:  # a deadline makes each attempt's timeouts differ
            _TIMEOUTS.clear()
        # aiohttp's ``connect`` covers waiting for a pooled connection and
        # connecting; ``sock_connect`` the TCP/TLS connect alone.
        found = _TIMEOUTS[(pool, connect, read)] = aiohttp.ClientTimeout(
            total=None,
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
    return found


def _map_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    error: httpx.TransportError
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # Connect phase: waiting for the pool or for the TCP/TLS handshake.
        error = httpx.ConnectTimeout(message, request=request)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError(message, request=request)
    elif isinstance(exc, asyncio.TimeoutError):
        error = httpx.ReadTimeout(message, request=request)
    elif isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy refused the CONNECT: nothing reached the server.
        error = httpx.ProxyError(message, request=request)
    elif isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        error = httpx.RemoteProtocolError(message, request=request)
    elif isinstance(exc, aiohttp.ClientResponseError):
        # A malformed response (bad status line, headers too large, ...).
        error = httpx.RemoteProtocolError(message, request=request)
    else:
        error = httpx.ReadError(message, request=request)
    return error


# The attempt whose request the current task is sending (see _Connector).
_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "memcachier_aiohttp_progress", default=None
)


class _Connector(aiohttp.TCPConnector):
    """Reports when a request leaves the pool's queue with a connection.

    Until then nothing was sent, so a call whose deadline passes while it
    waits is "not sent", not "outcome unknown" (see ``Progress``).
    """

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[aiohttp.tracing.Trace],
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        progress = _PROGRESS.get()
        if progress is not None:
            progress.queued = False
        return connection


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport on one ``aiohttp.ClientSession`` (created on first use).

    ``proxy`` is an ``http://`` proxy URL for every request.
    ``limits.max_connections`` caps the open connections (0 or ``None``:
    no cap) and ``limits.keepalive_expiry`` closes idle ones. The whole
    body is read before the response is returned, as the SDK needs it.
    Compressed bodies are left to httpx to decode, as with its own transport.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        verify: ssl.SSLContext | bool = True,
        proxy: str | None = None,
    ) -> None:
        self._limits = limits or httpx.Limits()
        self._proxy = proxy
        if verify is True:
            # The CA bundle httpx trusts (certifi, or SSL_CERT_FILE), as the default backend.
            verify = httpx.create_ssl_context(verify=True)
        self._ssl: ssl.SSLContext | bool = verify
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                'http_backend="aiohttp" runs on asyncio only; use the default backend under trio'
            ) from None
        connector = _Connector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=self._limits.keepalive_expiry or 15.0,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # httpx decides every header; aiohttp adds none of its own.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # aiohttp sends an idempotent request a second time, unasked, when a
        # kept-alive connection turns out closed. Resending is the retry
        # layer's decision (it counts attempts, waits, charges the budget),
        # so requests on the wire must equal the attempts it records. There
        # is no public switch; a test checks that this one still works.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self._session

    def _url(self, url: httpx.URL) -> yarl.URL:
        text = str(url)
        found = self._urls.get(text)
        if found is None:
            if len(self._urls) >= 256:
                self._urls.clear()
            # encoded=True: the URL is already escaped as httpx built it;
            # aiohttp must not unescape a %2F in a credential name.
            found = self._urls[text] = yarl.URL(text, encoded=True)
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        if isinstance(request.stream, httpx.ByteStream):
            content = b"".join(request.stream)  # no exception, no async iteration
        else:
            content = await request.aread()
        progress = request.extensions.get(PROGRESS_EXTENSION)
        token = None
        if isinstance(progress, Progress):
            progress.queued = True
            token = _PROGRESS.set(progress)
        try:
            async with session.request(
                request.method,
                self._url(request.url),
                headers=request.headers.multi_items(),
                data=content or None,
                allow_redirects=False,
                timeout=_timeout(request),
                proxy=self._proxy,
            ) as response:
                body, whole = await read_body(
                    response.content.iter_any(),
                    status_code=response.status,
                    content_encoding=response.headers.get("Content-Encoding"),
                    content_length=response.headers.get("Content-Length"),
                    request=request,
                )
                if not whole:
                    response.close()  # the rest is not downloaded: the connection goes
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _map_error(exc, request) from exc
        finally:
            if token is not None:
                _PROGRESS.reset(token)
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=decoded_headers(response.raw_headers, "Content-Encoding" in response.headers),
            stream=httpx.ByteStream(body),
            extensions=extensions,
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
