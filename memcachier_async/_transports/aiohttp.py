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
import math
import ssl
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import httpx

from memcachier_async._errors import Attempt

from .body import Target, declared_within_limit, decoded_headers, read_body
from .core import RetryPolicy
from .direct import SharedParts
from .pool import default_tls_context
from .retry import (
    Reply,
    RetryTransport,
    attempt_timeout,
    public_url,
)
from .rules import PROGRESS_EXTENSION, Progress
from .sender import OwnSender, body_headers, keep_cookies, run_call, set_in_place

try:
    import aiohttp
    import multidict
    import yarl
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'http_backend="aiohttp" needs aiohttp: pip install "memcachier-async[aiohttp]"'
    ) from exc

__all__ = ["AiohttpSender", "AiohttpTransport"]


_TIMEOUTS: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}


def _timeout(timeout: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for httpx's (a request's ``timeout`` extension)."""
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


_AUTO_HEADERS = ("user-agent", "accept", "accept-encoding")


def auto_headers_to_skip(names: Iterable[str]) -> tuple[str, ...]:
    """The headers aiohttp would add to a request with headers ``names`` (lower
    case): those of User-Agent, Accept and Accept-Encoding it lacks. httpx
    decides every header, so these are to be skipped; when all are there
    (the usual case) aiohttp has nothing to add and nothing to skip."""
    present = set(names)
    return tuple(name for name in _AUTO_HEADERS if name not in present)


def _map_error(exc: BaseException, request: httpx.Request | None) -> httpx.TransportError:
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
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's own signature
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
            verify = default_tls_context()
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

    async def exchange(
        self,
        method: str,
        url: yarl.URL,
        headers: Sequence[tuple[str, str]],
        content: bytes | None,
        timeouts: aiohttp.ClientTimeout,
        target: httpx.Request | Target,
        progress: Progress | None,
        skip: tuple[str, ...] | None = None,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """Send once and read the body (bounded, decoded); the response, closed, and the body.

        ``skip``: :func:`auto_headers_to_skip` of ``headers``, when the caller knows it.

        aiohttp's failures come out as the httpx exceptions of :func:`_map_error`.
        """
        session = self._session or self._open()
        if skip is None:
            skip = auto_headers_to_skip(name for name, _ in headers)
        token = None
        if progress is not None:
            progress.queued = True
            token = _PROGRESS.set(progress)
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=content or None,
                allow_redirects=False,
                # httpx decides every header; aiohttp adds none of its own.
                skip_auto_headers=skip or None,
                timeout=timeouts,
                proxy=self._proxy,
            ) as response:
                encoding = response.headers.get("Content-Encoding")
                length = response.headers.get("Content-Length")
                if encoding is None and declared_within_limit(target, response.status, length):
                    # aiohttp reads exactly Content-Length bytes: within the
                    # limit, read at once rather than counted chunk by chunk.
                    body = await response.read()
                else:
                    body, whole = await read_body(
                        response.content.iter_any(),
                        status_code=response.status,
                        content_encoding=encoding,
                        content_length=length,
                        request=target,
                    )
                    if not whole:
                        response.close()  # the rest is not downloaded: the connection goes
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            request = target if isinstance(target, httpx.Request) else None
            raise _map_error(exc, request) from exc
        finally:
            if token is not None:
                _PROGRESS.reset(token)
        return response, body

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if isinstance(request.stream, httpx.ByteStream):
            content = b"".join(request.stream)  # no exception, no async iteration
        else:
            content = await request.aread()
        progress = request.extensions.get(PROGRESS_EXTENSION)
        response, body = await self.exchange(
            request.method,
            self._url(request.url),
            request.headers.multi_items(),
            content,
            _timeout(request.extensions.get("timeout") or {}),
            request,
            progress if isinstance(progress, Progress) else None,
        )
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


# --- the SDK's own sender ---------------------------------------------------

_DROPPED = frozenset({"content-encoding", "content-length"})
_MAX_CACHED = 256


class _Route:
    """One URL, prepared once: as aiohttp sends it (escaped as httpx escapes
    it), for logs (no user info, no query), as httpx parses it, and the
    header pairs of a request to it (and the headers aiohttp must not add)."""

    __slots__ = ("pairs", "public", "skip", "url", "wire")

    def __init__(
        self, wire: yarl.URL, public: str, url: httpx.URL, pairs: list[tuple[str, str]]
    ) -> None:
        self.wire = wire
        self.public = public
        self.url = url
        self.pairs = pairs
        self.skip = auto_headers_to_skip(name for name, _ in pairs)


class AiohttpSender(OwnSender):
    """Sends the calls of one set of credentials on the aiohttp session of the SDK's own client.

    What the direct sender, :class:`~.retry.RetryTransport` and
    :class:`AiohttpTransport` do for a call, in one loop and with no httpx
    model on the way: the retry rules of :class:`~.core.RetryCall`; one
    aiohttp request per attempt, from header pairs merged once and a URL
    parsed once; the body read once, through the size limit; the call's
    deadline as aiohttp's ``total`` timeout of each attempt (one timer, no
    cancel scope). The answer is a :class:`~.retry.Reply` and the body.

    Used only while the client is as the SDK made it (``usable``);
    ``tests/test_send_equivalence.py`` compares the bytes it puts on the
    wire with those ``client.send`` puts there.
    """

    def __init__(
        self,
        parts: SharedParts,
        headers: Mapping[str, str],
        retry: RetryTransport,
        transport: AiohttpTransport,
    ) -> None:
        self._parts = parts
        self._retry = retry
        self._transport = transport
        self._pairs = parts.header_pairs(headers)
        self._urls: dict[str, _Route] = {}

    def usable(self) -> bool:
        """Whether the client is still exactly as the SDK made it."""
        return self._parts.usable()

    def _route(self, url: str) -> _Route:
        found = self._urls.get(url)
        if found is None:
            if len(self._urls) >= _MAX_CACHED:
                self._urls.clear()
            parsed = self._parts.url(url)
            # The header pairs as an httpx.Request has them: Host first, as
            # httpx names it (in lower case: multi_items() lowers every name).
            host = ("host", parsed.netloc.decode("ascii"))
            found = self._urls[url] = _Route(
                self._transport._url(parsed), public_url(parsed), parsed, [host, *self._pairs]
            )
        return found

    async def _call(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        extensions: Mapping[str, Any],
        policy: RetryPolicy,
    ) -> tuple[Reply, bytes]:
        route = self._route(url)
        pairs = set_in_place(route.pairs, headers) if headers else route.pairs
        pairs = body_headers(pairs, method, content, "content-length")
        target = Target(method, route.public, extensions)
        transport = self._transport

        def attempt(
            remaining: float | None, progress: Progress
        ) -> Awaitable[tuple[aiohttp.ClientResponse, bytes]]:
            return transport.exchange(
                method,
                route.wire,
                pairs,
                content,
                self._timeout(remaining),
                target,
                progress,
                route.skip,
            )

        # On asyncio, anyio's clock is the loop's, time.monotonic(), without
        # the look-up of the running library on every reading.
        clock = time.monotonic if policy.clock is anyio.current_time else policy.clock
        result, attempts = await run_call(
            policy, method, route.public, extensions, attempt, _status, clock
        )
        return self._reply(method, route.url, result[0], attempts), result[1]

    def _timeout(self, remaining: float | None) -> aiohttp.ClientTimeout:
        timeouts = self._parts.timeout_dict
        if remaining is None:
            return _timeout(timeouts)
        shrunk = attempt_timeout(timeouts, remaining)
        pool, connect, read = shrunk["pool"], shrunk["connect"], shrunk["read"]
        total = max(remaining, 0.001)
        waiting = None if pool is None or connect is None else pool + connect
        return aiohttp.ClientTimeout(
            # The whole attempt, body included: the call's deadline.
            total=total,
            # A phase's timer that could only fire after the deadline's is
            # left out: aiohttp would arm it for every request (and re-arm
            # the read timer for every chunk) for nothing.
            connect=None if waiting is None or waiting >= total else waiting,
            sock_connect=connect,
            sock_read=None if read is None or read >= total else read,
            # aiohttp rounds a timeout of 5 s or more up to a whole second of
            # the loop's clock; a deadline ends when it says.
            ceil_threshold=math.inf,
        )

    def _reply(
        self,
        method: str,
        url: httpx.URL,
        response: aiohttp.ClientResponse,
        attempts: tuple[Attempt, ...],
    ) -> Reply:
        headers: Mapping[str, str] = response.headers
        if "Content-Encoding" in headers:
            # Decoded by read_body: its headers go, as the httpx stack drops them.
            headers = multidict.CIMultiDictProxy(
                multidict.CIMultiDict(
                    (k, v) for k, v in response.headers.items() if k.lower() not in _DROPPED
                )
            )
        status = response.status
        if "Set-Cookie" in headers:
            keep_cookies(self._parts, method, url, list(response.raw_headers))
        reason = response.reason or httpx.codes.get_reason_phrase(status)
        return Reply(status, reason, headers, attempts)


def _status(result: tuple[aiohttp.ClientResponse, bytes]) -> tuple[int, str | None]:
    return result[0].status, result[0].headers.get("Retry-After")
