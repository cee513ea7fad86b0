"""An httpx transport that sends with aiohttp (the ``aiohttp`` extra), asyncio only.

``AsyncAnalytics(..., http_backend="aiohttp")`` puts it under the SDK's
``httpx.AsyncClient`` (and its :class:`~.retry.RetryTransport`): every call
still goes through ``client.send``; only the bytes on the wire are aiohttp's.
Its HTTP parser is written in C and its pool does little work per request,
so many concurrent calls cost much less CPU than through httpcore 1.0.

aiohttp's failures become httpx's in one place, :func:`map_error`, keeping
"nothing was sent" (a failure to connect or to get a connection in time:
``ConnectError``, ``ConnectTimeout``) apart from "it may have been sent"
(everything later: ``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``),
because the retry layer decides on that.

aiohttp resends an idempotent request (GET, HEAD, OPTIONS, TRACE, PUT,
DELETE) once, by itself, when a kept-alive connection turns out to have
been closed by the server before any answer; it never resends any other
method, so a ``create_credential`` (POST) goes out once. There is no
public switch for it; ``docs/client.md`` says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from collections.abc import AsyncIterator, Mapping

import httpx

from memcachier_async._errors import scrub

from .rules import PROGRESS_EXTENSION, Progress

try:
    import aiohttp
    import yarl
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'http_backend="aiohttp" needs aiohttp: pip install "memcachier-async[aiohttp]"'
    ) from exc

__all__ = ["AiohttpTransport", "map_error"]

_MAX_CACHED = 256


def _timeout(timeout: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for httpx's (a request's ``timeout`` extension)."""
    pool, connect, read = timeout.get("pool"), timeout.get("connect"), timeout.get("read")
    return aiohttp.ClientTimeout(
        total=None,
        # aiohttp's ``connect`` covers waiting for a pooled connection and
        # connecting; ``sock_connect`` the TCP/TLS connect alone.
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=read,
    )


def map_error(
    exc: BaseException, request: httpx.Request, secrets: tuple[str, ...] = ()
) -> httpx.TransportError:
    """The httpx exception that says how far a request failing with ``exc`` got.

    ``secrets`` (the proxy's credentials) are cut from its message; when
    ``exc``'s own text holds one, the error is not chained to it (a
    traceback would print it).
    """
    text = str(exc)
    leaked = any(secret in text for secret in secrets)
    text = scrub(text, secrets)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout  # waiting for the pool, or the TCP/TLS handshake
    elif isinstance(exc, aiohttp.ClientHttpProxyError):
        kind = httpx.ProxyError  # the proxy refused the CONNECT: nothing reached the server
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, asyncio.TimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError  # a malformed answer: status line, headers too large
    else:
        kind = httpx.ReadError
    error = kind(message, request=request)
    if leaked:
        error.__suppress_context__ = True
    else:
        error.__cause__ = exc
    return error


# The attempt whose request the current task is sending (see _Connector).
_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "memcachier_aiohttp_progress", default=None
)


class _Connector(aiohttp.TCPConnector):
    """Says when a request leaves the pool's queue with a connection: until
    then nothing was sent (see :class:`~.rules.Progress`)."""

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


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body as httpx streams it; closing it before
    the end closes the connection, closing it after hands it back."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, secrets: tuple[str, ...]
    ) -> None:
        self._response = response
        self._request = request
        self._secrets = secrets

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise map_error(exc, self._request, self._secrets)  # noqa: B904 - chained in map_error

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport on one ``aiohttp.ClientSession`` (made on first use).

    ``limits.max_connections`` caps the open connections (0 or ``None``: no
    cap) and ``limits.keepalive_expiry`` closes idle ones; ``verify`` is
    the TLS context (or ``False``); ``proxy`` an ``http://`` proxy URL for
    every request (an ``https://`` origin is tunnelled with CONNECT).
    aiohttp adds no header of its own, decodes nothing and keeps no cookie:
    httpx above it decides all three.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        verify: ssl.SSLContext | bool = True,
        proxy: str | None = None,
    ) -> None:
        self._limits = limits or httpx.Limits()
        self._ssl = verify
        self._proxy = proxy
        # What of the proxy URL must never appear in an error: its user info.
        self._secrets = _userinfo(proxy)
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
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self._session

    def _url(self, url: httpx.URL) -> yarl.URL:
        text = str(url)
        found = self._urls.get(text)
        if found is None:
            if len(self._urls) >= _MAX_CACHED:
                self._urls.clear()
            # encoded=True: escaped as httpx built it; aiohttp must not
            # unescape a %2F in a credential's name.
            found = self._urls[text] = yarl.URL(text, encoded=True)
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        if isinstance(request.stream, httpx.ByteStream):
            content = b"".join(request.stream)  # in memory: no async iteration
        else:
            content = await request.aread()
        headers = request.headers.multi_items()
        names = {name for name, _ in headers}
        progress = request.extensions.get(PROGRESS_EXTENSION)
        token = None
        if isinstance(progress, Progress):
            progress.queued = True
            token = _PROGRESS.set(progress)
        try:
            response = await session.request(
                request.method,
                self._url(request.url),
                headers=headers,
                data=content or None,
                allow_redirects=False,
                # httpx decided every header: aiohttp adds none it lacks.
                skip_auto_headers=[h for h in _AUTO_HEADERS if h not in names] or None,
                timeout=_timeout(request.extensions.get("timeout") or {}),
                proxy=self._proxy,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise map_error(exc, request, self._secrets)  # noqa: B904 - chained in map_error
        finally:
            if token is not None:
                _PROGRESS.reset(token)
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request, self._secrets),
            extensions=extensions,
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


_AUTO_HEADERS = ("user-agent", "accept", "accept-encoding")


def _userinfo(proxy: str | None) -> tuple[str, ...]:
    """A proxy URL's password and ``user:password`` (as written and unescaped)."""
    if proxy is None:
        return ()
    url = httpx.URL(proxy)
    if not url.password:
        return ()
    raw = url.userinfo.decode("ascii", "replace")
    found = {raw, url.password, raw.partition(":")[2]}
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))
