"""The client stack, built in one place: transport, retries, ``httpx.AsyncClient``.

``AsyncAnalytics``, :func:`fan_out` and :func:`watch` all take the same
arguments for it (``http_client``, ``transport``, ``retry``, ``headers``,
``max_response_size``, and for a stack of their own ``http_backend``,
``verify``, ``cert``, ``proxy``, ``limits``) and turn them into one
:class:`StackOptions`, checked when it is made and applied by
:func:`build_stack`, so an argument means the same thing everywhere and a
bad value or combination is refused the same way everywhere::

    own client:  httpx.AsyncClient(RetryTransport(PoolTransport | AiohttpTransport | transport))
    given client: used as it is (wrap its transport in RetryTransport to retry)
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import attrs
import httpx

from ._transports.body import DEFAULT_MAX_RESPONSE_SIZE
from ._transports.direct import DirectSender, SharedParts
from ._transports.pool import PoolTransport, default_tls_context
from ._transports.retry import RetryPolicy, RetryTransport
from ._transports.sender import PoolSender

if TYPE_CHECKING:
    from ._transports.aiohttp import AiohttpSender, AiohttpTransport

    Sender = DirectSender | AiohttpSender | PoolSender

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "Backend",
    "CertTypes",
    "Stack",
    "StackOptions",
    "build_stack",
    "check_headers",
    "check_max_response_size",
    "is_loopback",
    "set_mock",
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
    """An ``httpx.AsyncClient`` to send with, and whether its builder closes it.

    ``parts`` is set when the SDK made the client (so nobody else holds it
    yet): its senders may then build requests themselves (see ``direct``).
    """

    client: httpx.AsyncClient
    owned: bool
    parts: SharedParts | None = None
    #: The retry layer the SDK put under ``client`` (``None`` for a given client):
    #: ``with_options`` hands it per-call policies.
    retry: RetryTransport | None = None
    #: The aiohttp transport the SDK made for ``client`` (``http_backend="aiohttp"``):
    #: its calls then skip httpx's models altogether (see ``aiohttp.AiohttpSender``).
    aiohttp: AiohttpTransport | None = None
    #: The pool the SDK made for ``client`` (the default backend, no proxy):
    #: its calls then skip httpx's models altogether (see ``sender.PoolSender``).
    pool: PoolTransport | None = None
    #: The options it was built with: every client on it sends their
    #: ``headers`` and reads within their ``max_response_size``.
    options: StackOptions = attrs.field(factory=lambda: StackOptions())

    def sender(self, headers: Mapping[str, str]) -> Sender | None:
        """A sender for one set of credentials, if the client is the SDK's."""
        if self.parts is None:
            return None
        if self.aiohttp is not None and self.retry is not None:
            from ._transports.aiohttp import AiohttpSender

            return AiohttpSender(self.parts, headers, self.retry, self.aiohttp)
        if self.pool is not None and self.retry is not None:
            return PoolSender(self.parts, headers, self.retry, self.pool)
        return DirectSender(self.parts, headers)

    async def aclose(self) -> None:
        """Close the client if it was made here; a given one is its owner's."""
        if self.owned:
            await self.client.aclose()


_RESERVED_HEADERS = frozenset({"authorization", "host", "content-length", "transfer-encoding"})


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The extra headers of every request, checked: str to str, none the SDK sets."""
    found: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("headers must map str to str")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"headers must not set {name!r}: the SDK sets it")
        found[name] = value
    return found


def check_max_response_size(value: int | None) -> int | None:
    """A positive int (bytes), or ``None`` for no bound."""
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise ValueError("max_response_size must be a positive int (bytes), or None for no bound")
    return value


def _frozen_headers(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(check_headers(headers))


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
        if not theirs and (self.verify is not True or self.cert is not None):
            object.__setattr__(self, "_tls", ssl_context(self.verify, self.cert))

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context of the client's own transport, for ``verify`` and ``cert``."""
        return ssl_context(self.verify, self.cert) if self._tls is None else self._tls

    @property
    def theirs(self) -> bool:
        """Whether the user gave the client or the transport (no transport of ours)."""
        return self.http_client is not None or self.transport is not None


def build_stack(
    options: StackOptions,
    *,
    base_url: str,
    timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
    pool_size: int | None = None,
) -> Stack:
    """The stack for these (already checked) options.

    A given ``http_client`` is used as it is. Otherwise the stack is the
    given ``transport`` or one of ours (``http_backend``, sized by
    ``limits``, else by ``pool_size`` connections, else
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
    own_aiohttp: AiohttpTransport | None = None
    own_pool: PoolTransport | None = None
    if transport is None:
        proxy = options.proxy
        proxy_url = proxy_for(base_url, None if proxy is None else str(proxy))
        if base_url[:7].lower() == "http://" and options.verify is True and options.cert is None:
            # Never TLS (an http:// base is loopback only, and never proxied):
            # no CA bundle to load; a context trusting nothing fails closed.
            context = _trusts_nothing()
        else:
            context = options.tls_context()
        if options.http_backend == "aiohttp":
            # Imported here: aiohttp is an optional extra.
            from ._transports.aiohttp import AiohttpTransport

            transport = own_aiohttp = AiohttpTransport(
                limits=limits, proxy=proxy_url, verify=context
            )
        else:
            transport = PoolTransport(limits=limits, proxy=proxy_url, verify=context)
            if transport.direct:
                own_pool = transport
    retry = options.retry
    if not isinstance(transport, RetryTransport) or retry is not None:
        transport = RetryTransport(transport, RetryPolicy() if retry is None else retry)
    client = httpx.AsyncClient(
        transport=transport, timeout=timeout, limits=limits, follow_redirects=False
    )
    return Stack(
        client,
        owned=True,
        parts=SharedParts(client, transport),
        retry=transport,
        aiohttp=own_aiohttp,
        pool=own_pool,
        options=options,
    )


def _pool_limits(size: int) -> httpx.Limits:
    """A pool of ``size`` connections, all kept alive as long as the default keeps them."""
    return httpx.Limits(
        max_connections=size,
        max_keepalive_connections=size,
        keepalive_expiry=DEFAULT_LIMITS.keepalive_expiry,
    )


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
    """Refuse a user's client that would send an ``http://`` base URL through a proxy.

    httpx mounts a proxy per URL pattern from HTTP_PROXY/ALL_PROXY (for a
    client made with ``trust_env=True``, the default); it is asked through
    its routing, which it exposes only privately.
    """
    if not base_url.startswith("http://"):
        return
    try:
        route = http_client._transport_for_url(httpx.URL(base_url))
    except AttributeError:  # pragma: no cover - an httpx without this internal
        return
    pool = getattr(route, "_pool", None)
    if type(pool).__name__ in {"AsyncHTTPProxy", "AsyncSOCKSProxy"}:
        raise ValueError(
            "this http_client would send requests for an http:// base URL through a "
            "proxy (HTTP_PROXY/ALL_PROXY), which would read the Basic auth in clear "
            "text: create it with trust_env=False, or set NO_PROXY for the host"
        )
