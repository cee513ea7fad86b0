"""The client stack, built in one place: engine, retries, ``httpx.AsyncClient``.

``AsyncAnalytics``, :func:`fan_out` and :func:`watch` take the same stack
keywords (:class:`StackKeywords`: ``http_client``, ``transport``, ``retry``,
``headers``, ``max_response_size``, and for a client of the SDK's own
``http_backend``, ``http_timeout``, ``limits``, ``verify``, ``cert``,
``proxy``), checked once into a :class:`StackOptions` and applied by
:func:`build_stack`, so a keyword means the same thing everywhere and a bad
value or combination is refused the same way everywhere.

There is one road: every request of every call goes through ``send()`` of
the ``httpx.AsyncClient`` the stack holds, so its event hooks, auth, respx,
OpenTelemetry and any patch of ``send`` see each one::

    own client:   httpx.AsyncClient(transport=RetryTransport(engine))
                  engine: httpx.AsyncHTTPTransport pools of at most 16 connections
                          behind ShardedTransport (http_backend="httpx", httpcore),
                          AiohttpTransport (http_backend="aiohttp"),
                          or the given transport= (a mock, the emulator's)
    given client: used as it is (wrap its transport in RetryTransport to retry)

The SDK's own client keeps no cookie a server sets: the API authenticates
every request with Basic auth, and in a fan-out one cache's cookie must never
reach another cache's request.
"""

from __future__ import annotations

import functools
import http.cookiejar
import importlib.util
import ipaddress
import os
import re
import ssl
import threading
import urllib.request
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypedDict

import attrs
import httpx

from ._transports.body import DEFAULT_MAX_RESPONSE_SIZE
from ._transports.retry import RetryPolicy, RetryTransport
from ._transports.shards import ShardedTransport, shard_limits
from ._version import __version__

if TYPE_CHECKING:
    pass

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "Backend",
    "CertTypes",
    "Stack",
    "StackKeywords",
    "StackOptions",
    "build_stack",
    "check_headers",
    "check_max_response_size",
    "common_headers",
    "default_tls_context",
    "is_loopback",
    "set_mock",
    "stack_options",
]

#: 5 s to connect, 30 s to read, write or wait for a pooled connection.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: Sized for many concurrent calls from one process (pollers, fan-out).
DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0
)

Backend = Literal["httpx", "aiohttp"]
#: A client certificate: its file, (certificate, key) or (certificate, key, password).
CertTypes = str | tuple[str, str] | tuple[str, str, str]

_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.ip_address("::1")


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``: nothing else.

    Not ``*.localhost``: a resolver may send those names to DNS (RFC 6761
    only asks it not to), and then they are anyone's.
    """
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _LOOPBACK_V4
    return address == _LOOPBACK_V6


MockFactory = Callable[[str], "httpx.AsyncBaseTransport | None"]
# Pushed by memcachier_async.testing.mock_api(): given a stack's base URL, the
# transport to use instead of ours (or None to leave that stack alone).
_mocks: list[MockFactory] = []


def set_mock(factory: MockFactory | None) -> None:
    """Push a mock transport factory (or pop the latest with ``None``)."""
    if factory is None:
        _mocks.pop()
    else:
        _mocks.append(factory)


@attrs.frozen(eq=False)
class Stack:
    """The ``httpx.AsyncClient`` every call is sent with, and whether its builder closes it."""

    client: httpx.AsyncClient
    owned: bool
    #: The retry layer the SDK put under ``client`` (``None`` for a given client):
    #: ``with_options`` hands it per-call policies.
    retry: RetryTransport | None = None
    #: Whether ``client`` carries :func:`common_headers` itself (the SDK made it).
    has_headers: bool = False
    #: The options it was built with: every client on it sends their
    #: ``headers`` and reads within their ``max_response_size``.
    options: StackOptions = attrs.field(factory=lambda: StackOptions())

    async def aclose(self) -> None:
        """Close the client if it was made here; a given one is its owner's."""
        if self.owned:
            await self.client.aclose()


USER_AGENT = f"memcachier-async/{__version__}"


def common_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers every request carries but ``Authorization``: ours, the
    user's ``extra`` over them (checked already, see :func:`check_headers`).

    ``Accept-Encoding`` names only what the SDK inflates within the size
    limit (httpx would add br and zstd when their packages are installed).
    """
    headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
    headers["User-Agent"] = USER_AGENT
    for name, value in (extra or {}).items():
        for known in [k for k in headers if k.lower() == name.lower()]:
            del headers[known]
        headers[name] = value
    return headers


_RESERVED_HEADERS = frozenset({"authorization", "host", "content-length", "transfer-encoding"})


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The extra headers of every request, checked: str to str, none the SDK sets."""
    found: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("headers must map str to str")
        if not _TOKEN.fullmatch(name):
            # The name only, cut short: a value may be a token, never echoed.
            raise ValueError(
                f"headers: {name[:40]!r} is not a header name (RFC 9110 token characters)"
            )
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"headers must not set {name!r}: the SDK sets it")
        if not _FIELD_VALUE.fullmatch(value):
            raise ValueError(
                f"headers: the value of {name!r} holds a line break, NUL or another "
                "control character (not shown: it may be a secret)"
            )
        found[name] = value
    return found


# RFC 9110 5.1 and 5.5: a field name is a token; a field value is visible
# characters (and obs-text) with spaces and tabs between them.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t \x21-\x7e\x80-\xff]*")


def check_max_response_size(value: int | None) -> int | None:
    """A positive int (bytes), or ``None`` for no bound."""
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise ValueError("max_response_size must be a positive int (bytes), or None for no bound")
    return value


def _frozen_headers(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(check_headers(headers))


def _check_http_timeout(value: httpx.Timeout | float | None) -> httpx.Timeout:
    """``None`` (the default, :data:`DEFAULT_TIMEOUT`), seconds, or an ``httpx.Timeout``."""
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, httpx.Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"http_timeout must be seconds or an httpx.Timeout, not {type(value).__name__}"
        )
    if not value > 0 or value == float("inf"):
        raise ValueError(f"http_timeout must be positive, finite seconds, got {value!r}")
    return httpx.Timeout(float(value))


class StackKeywords(TypedDict, total=False):
    """The keywords ``AsyncAnalytics``, :func:`fan_out` and :func:`watch` share.

    - ``http_client``: your own ``httpx.AsyncClient``, used as it is and never
      closed here (wrap its transport in :class:`RetryTransport` to retry);
    - ``transport``: any httpx async transport for the SDK's own client (a
      mock, the emulator's), under the SDK's retries;
    - ``retry``: the :class:`RetryPolicy` of the SDK's own client;
    - ``http_backend``: the engine of the SDK's own client, ``"httpx"``
      (``httpx.AsyncHTTPTransport``, the default) or ``"aiohttp"`` (the
      ``aiohttp`` extra, asyncio only);
    - ``http_timeout``: the connect, read, write and pool timeouts of each
      network operation (:data:`DEFAULT_TIMEOUT`; seconds or an ``httpx.Timeout``);
    - ``limits``: the connection pool's ``httpx.Limits``;
    - ``verify``, ``cert``, ``proxy``: TLS and the proxy of the SDK's own engine;
    - ``headers``: sent with every request (never ``Authorization``);
    - ``max_response_size``: the bound on a success body, in bytes (``None``: none).
    """

    http_client: httpx.AsyncClient | None
    transport: httpx.AsyncBaseTransport | None
    retry: RetryPolicy | None
    http_backend: Backend
    http_timeout: httpx.Timeout | float | None
    limits: httpx.Limits | None
    verify: ssl.SSLContext | str | bool
    cert: CertTypes | None
    proxy: str | httpx.URL | None
    headers: Mapping[str, str] | None
    max_response_size: int | None


_KEYWORDS = frozenset(StackKeywords.__annotations__)


def stack_options(caller: str, keywords: Mapping[str, object]) -> StackOptions:
    """``keywords`` (:class:`StackKeywords`) checked into :class:`StackOptions`;
    an unknown one is a ``TypeError`` that names ``caller``."""
    unknown = sorted(set(keywords) - _KEYWORDS)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    return StackOptions(**keywords)  # type: ignore[arg-type]


@attrs.frozen(eq=False)
class StackOptions:
    """The arguments of a client stack, checked once, when made.

    ``AsyncAnalytics``, :class:`FanOut` and :class:`Poller` each turn their
    keywords into one of these and hand it down whole (to
    :func:`build_stack`, and through :class:`Stack` to every client on the
    stack), so an argument means the same thing everywhere and a bad value
    or combination is refused the same way, before anything is built.

    ``headers`` and ``max_response_size`` are what every client on the
    stack sends with and reads within; the others shape the stack itself.
    ``limits`` is ``None`` for the default pool (see :func:`build_stack`).
    Neither the proxy URL, the certificate nor the headers are in ``repr``:
    each may hold a secret.
    """

    http_client: httpx.AsyncClient | None = None
    transport: httpx.AsyncBaseTransport | None = None
    retry: RetryPolicy | None = None
    http_backend: Backend = "httpx"
    http_timeout: httpx.Timeout = attrs.field(default=None, converter=_check_http_timeout)
    limits: httpx.Limits | None = None
    verify: ssl.SSLContext | str | bool = attrs.field(default=True, repr=False)
    cert: CertTypes | None = attrs.field(default=None, repr=False)
    proxy: str | httpx.URL | None = attrs.field(default=None, repr=False)
    max_response_size: int | None = attrs.field(
        default=DEFAULT_MAX_RESPONSE_SIZE, converter=check_max_response_size
    )
    headers: Mapping[str, str] = attrs.field(default=None, converter=_frozen_headers, repr=False)
    # Made with the options when verify or cert is not the default, so that a
    # bad one is refused by fan_out() and watch() as by the constructor, not
    # turned into every cache's error when their stack is built later.
    _tls: ssl.SSLContext | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        """Refuse the combinations that could not mean what they say (``ValueError``),
        and a ``verify``/``cert`` no TLS context can be made of (as :func:`ssl_context`)."""
        if self.http_client is not None and self.transport is not None:
            raise ValueError("pass either http_client or transport, not both")
        if self.http_backend not in ("httpx", "aiohttp"):
            raise ValueError(
                f"http_backend must be 'httpx' or 'aiohttp', not {self.http_backend!r}"
            )
        theirs = self.theirs
        if self.http_backend != "httpx" and theirs:
            raise ValueError("http_backend chooses the client's own transport: not with ours")
        if self.http_client is not None and self.http_timeout is not DEFAULT_TIMEOUT:
            raise ValueError("http_timeout configures the SDK's own client: set it on yours")
        if self.limits is not None and theirs:
            raise ValueError("limits size the client's own transport: not with ours")
        if (self.verify is not True or self.cert is not None or self.proxy is not None) and theirs:
            raise ValueError(
                "verify, cert and proxy configure the client's own transport: "
                "set them on your http_client or transport instead"
            )
        if self.http_client is not None and self.retry is not None and self.retry.max_attempts > 1:
            raise ValueError(
                "retry= applies to the client's own transport; with http_client, wrap "
                "its transport in RetryTransport(transport, policy) instead"
            )
        if self.proxy is not None:
            check_proxy(str(self.proxy), self.http_backend, "proxy")
        if not theirs and (self.verify is not True or self.cert is not None):
            object.__setattr__(self, "_tls", ssl_context(self.verify, self.cert))

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context of the client's own transport, for ``verify`` and ``cert``."""
        return ssl_context(self.verify, self.cert) if self._tls is None else self._tls

    @property
    def theirs(self) -> bool:
        """Whether the user gave the client or the transport (no transport of ours)."""
        return self.http_client is not None or self.transport is not None


def build_stack(options: StackOptions, *, base_url: str, pool_size: int | None = None) -> Stack:
    """The stack for these (already checked) options.

    A given ``http_client`` is used as it is. Otherwise the client's
    engine is the given ``transport`` or one of ours (``http_backend``,
    sized by ``limits``, else by ``pool_size`` connections, else
    :data:`DEFAULT_LIMITS`; with ``verify``/``cert``, through ``proxy`` or
    the environment's proxy where :func:`proxy_for` allows one), under a
    :class:`RetryTransport` with ``retry`` (a ``RetryPolicy()`` of its own by
    default; a given ``RetryTransport`` is not wrapped twice).
    """
    if options.http_client is not None:
        _check_client_route(options.http_client, base_url)
        return Stack(options.http_client, owned=False, options=options)
    limits = options.limits
    if limits is None:
        limits = DEFAULT_LIMITS if pool_size is None else _pool_limits(pool_size)
    transport = options.transport
    if transport is None and _mocks:
        transport = _mocks[-1](base_url)
    if transport is None:
        transport = _engine(options, base_url, limits)
    retry = options.retry
    if not isinstance(transport, RetryTransport) or retry is not None:
        transport = RetryTransport(transport, RetryPolicy() if retry is None else retry)
    client = httpx.AsyncClient(
        transport=transport,
        # What every request of every credential set carries, set once (a
        # request then adds only its Authorization).
        headers=common_headers(options.headers),
        timeout=options.http_timeout,
        follow_redirects=False,
        # Proxies come from proxy_for (our rules), not from httpx's reading of the environment.
        trust_env=False,
        cookies=http.cookiejar.CookieJar(policy=_KeepNoCookie()),
    )
    return Stack(client, owned=True, retry=transport, has_headers=True, options=options)


class _KeepNoCookie(http.cookiejar.DefaultCookiePolicy):
    """A cookie policy that stores no cookie a server sets (cookies a user
    puts in the jar themselves are still sent)."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


_PROXY_SCHEMES = {"httpx": ("http", "https", "socks5", "socks5h"), "aiohttp": ("http", "https")}


def check_proxy(url: str, backend: Backend, where: str) -> None:
    """Refuse a proxy URL the engine cannot use (``ValueError`` naming ``where``,
    never quoting the URL: it may hold the proxy's password)."""
    try:
        scheme = httpx.URL(url if "://" in url else f"http://{url}").scheme
    except httpx.InvalidURL:
        raise ValueError(f"{where} is not a valid proxy URL") from None
    if scheme not in _PROXY_SCHEMES[backend]:
        raise ValueError(
            f"{where}: a {scheme[:10]}:// proxy is not supported by http_backend={backend!r} "
            f"(use {', '.join(s + '://' for s in _PROXY_SCHEMES[backend])})"
        )
    if scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
        raise ValueError(
            f'{where}: a SOCKS proxy needs the socksio package (pip install "httpx[socks]")'
        )


def _engine(options: StackOptions, base_url: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """The transport that puts the bytes on the wire, for ``http_backend``."""
    proxy = options.proxy
    proxy_url = proxy_for(base_url, None if proxy is None else str(proxy))
    if proxy_url is not None and proxy is None:
        check_proxy(
            proxy_url, options.http_backend, "the environment's proxy (HTTPS_PROXY/ALL_PROXY)"
        )
    if base_url[:7].lower() == "http://" and options.verify is True and options.cert is None:
        # Never TLS (an http:// base is loopback only, and never proxied):
        # no CA bundle to load; a context trusting nothing fails closed.
        context = _trusts_nothing()
    else:
        context = options.tls_context()
    if options.http_backend == "aiohttp":
        # Imported here: aiohttp is an optional extra.
        from ._transports.aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits, proxy=proxy_url, verify=context)

    def pool(share: httpx.Limits) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(
            verify=context, limits=share, proxy=proxy_url, trust_env=False
        )

    if len(shard_limits(limits)) == 1:
        return pool(limits)
    # httpcore 1.0's pool costs CPU per request in proportion to its
    # connections: several small pools cost a fraction (see shards.py).
    return ShardedTransport(limits, pool)


def _pool_limits(size: int) -> httpx.Limits:
    """A pool of ``size`` connections, all kept alive as long as the default keeps them."""
    return httpx.Limits(
        max_connections=size,
        max_keepalive_connections=size,
        keepalive_expiry=DEFAULT_LIMITS.keepalive_expiry,
    )


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


@functools.cache
def _trusts_nothing() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, with no CA to verify against


def ssl_context(verify: ssl.SSLContext | str | bool, cert: CertTypes | None) -> ssl.SSLContext:
    """The TLS context of the client's own transport.

    ``verify=True``: the CA bundle httpx trusts (certifi, or SSL_CERT_FILE);
    a path: that CA file (or directory); ``False``: no verification (a test
    server only); an ``SSLContext``: used as it is (put a client certificate
    into it rather than passing ``cert``).
    """
    if isinstance(verify, ssl.SSLContext):
        if cert is not None:
            raise ValueError("with verify=<SSLContext>, load the client certificate into it")
        return verify
    if verify is True and cert is None:
        return default_tls_context()
    if isinstance(verify, bool):
        context = httpx.create_ssl_context(verify=verify)
    elif isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if os.path.isdir(path):
            context = ssl.create_default_context(capath=path)
        else:
            context = ssl.create_default_context(cafile=path)
    else:
        raise TypeError("verify must be a bool, a CA bundle path or an ssl.SSLContext")
    if isinstance(cert, str):
        context.load_cert_chain(cert)
    elif isinstance(cert, tuple) and len(cert) in (2, 3):
        context.load_cert_chain(*cert)
    elif cert is not None:
        raise TypeError("cert must be a path, (certificate, key) or (certificate, key, password)")
    return context


def proxy_for(url: str, proxy: str | None = None) -> str | None:
    """The proxy to reach ``url`` through: ``proxy``, else the environment's.

    Only an ``https://`` origin beyond loopback ever goes through a proxy,
    and then through a CONNECT tunnel: the proxy sees TLS, never the
    ``Authorization`` header. A loopback origin is reached directly (as curl
    and requests treat localhost), and so is an ``http://`` one (only
    loopback is allowed): a proxy would read its Basic auth in clear text.
    httpx reads HTTPS_PROXY/ALL_PROXY/NO_PROXY only for a client without a
    transport; ours has one (the retry layer), so it reads them itself.
    """
    parsed = httpx.URL(url)
    if parsed.scheme != "https" or is_loopback(parsed.host):
        return None
    if proxy is None:
        proxies = urllib.request.getproxies()
        proxy = proxies.get("https") or proxies.get("all")
        if not proxy or urllib.request.proxy_bypass(parsed.host):
            return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _check_client_route(http_client: httpx.AsyncClient, base_url: str) -> None:
    """Refuse a user's client that would send an ``http://`` base URL through
    the environment's proxy (which would read the Basic auth in clear text).

    httpx mounts HTTP_PROXY/ALL_PROXY for a client made with
    ``trust_env=True`` (the default) and no transport of its own; asked here
    from the client's public ``trust_env`` and the environment, as httpx
    reads it. A proxy you mount yourself is your own choice.
    """
    if not base_url.startswith("http://") or not http_client.trust_env:
        return
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return
    if urllib.request.proxy_bypass(httpx.URL(base_url).host):
        return
    raise ValueError(
        "this http_client would send requests for an http:// base URL through a "
        "proxy (HTTP_PROXY/ALL_PROXY), which would read the Basic auth in clear "
        "text: create it with trust_env=False, or set NO_PROXY for the host"
    )
