"""The client stack, built in one place: transport, retries, ``httpx.AsyncClient``.

``AsyncAnalytics``, :func:`fan_out` and :func:`watch` all take the same
arguments for it (``http_client``, ``transport``, ``retry``, and for a
stack of their own ``http_backend``, ``limits``, ``timeout``) and get them
checked and applied by :func:`build_stack`, so an argument means the same
thing everywhere and a combination is refused the same way everywhere::

    own client:  httpx.AsyncClient(RetryTransport(PoolTransport | AiohttpTransport | transport))
    given client: used as it is (wrap its transport in RetryTransport to retry)
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from typing import Literal

import attrs
import httpx

from ._transports.direct import DirectSender, SharedParts
from ._transports.pool import PoolTransport
from ._transports.retry import RetryPolicy, RetryTransport

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TIMEOUT", "Stack", "build_stack"]

#: 5 s to connect, 30 s to read, write or wait for a pooled connection.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: Sized for many concurrent calls from one process (pollers, fan-out).
DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0
)

Backend = Literal["httpx", "aiohttp"]


@attrs.frozen(eq=False)
class Stack:
    """An ``httpx.AsyncClient`` to send with, and whether its builder closes it.

    ``parts`` is set when the SDK made the client (so nobody else holds it
    yet): its senders may then build requests themselves (see ``direct``).
    """

    client: httpx.AsyncClient
    owned: bool
    parts: SharedParts | None = None

    def sender(self, headers: Mapping[str, str]) -> DirectSender | None:
        """A direct sender for one set of credentials, if the client is the SDK's."""
        return None if self.parts is None else DirectSender(self.parts, headers)

    async def aclose(self) -> None:
        """Close the client if it was made here; a given one is its owner's."""
        if self.owned:
            await self.client.aclose()


def check_stack_arguments(
    *,
    http_client: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
    retry: RetryPolicy | None,
    http_backend: Backend = "httpx",
    limits: httpx.Limits | None = None,
) -> None:
    """Refuse the combinations that could not mean what they say (``ValueError``)."""
    if http_client is not None and transport is not None:
        raise ValueError("pass either http_client or transport, not both")
    if http_backend not in ("httpx", "aiohttp"):
        raise ValueError(f"http_backend must be 'httpx' or 'aiohttp', not {http_backend!r}")
    theirs = http_client is not None or transport is not None
    if http_backend != "httpx" and theirs:
        raise ValueError("http_backend chooses the client's own transport: not with ours")
    if limits is not None and theirs:
        raise ValueError("limits size the client's own transport: not with ours")
    if http_client is not None and retry is not None and retry.max_attempts > 1:
        raise ValueError(
            "retry= applies to the client's own transport; with http_client, wrap "
            "its transport in RetryTransport(transport, policy) instead"
        )


def build_stack(
    *,
    base_url: str,
    http_client: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    http_backend: Backend = "httpx",
    limits: httpx.Limits | None = None,
    timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
) -> Stack:
    """The stack for these arguments (checked with :func:`check_stack_arguments`).

    A given ``http_client`` is used as it is. Otherwise the stack is the
    given ``transport`` or one of ours (``http_backend``, sized by
    ``limits``, through the environment's proxy for ``base_url``), under a
    :class:`RetryTransport` with ``retry`` (a ``RetryPolicy()`` of its own by
    default; a given ``RetryTransport`` is not wrapped twice).
    """
    check_stack_arguments(
        http_client=http_client,
        transport=transport,
        retry=retry,
        http_backend=http_backend,
        limits=limits,
    )
    if http_client is not None:
        return Stack(http_client, owned=False)
    limits = DEFAULT_LIMITS if limits is None else limits
    if transport is None:
        transport = _own_transport(http_backend, limits, _env_proxy(base_url))
    if not isinstance(transport, RetryTransport) or retry is not None:
        transport = RetryTransport(transport, RetryPolicy() if retry is None else retry)
    client = httpx.AsyncClient(
        transport=transport, timeout=timeout, limits=limits, follow_redirects=False
    )
    return Stack(client, owned=True, parts=SharedParts(client, transport))


def _own_transport(
    backend: Backend, limits: httpx.Limits, proxy: str | None
) -> httpx.AsyncBaseTransport:
    if backend == "aiohttp":
        # Imported here: aiohttp is an optional extra.
        from ._transports.aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits, proxy=proxy)
    return PoolTransport(limits=limits, proxy=proxy)


def _env_proxy(url: str) -> str | None:
    # httpx reads HTTPS_PROXY/NO_PROXY only for a client without a transport;
    # ours has one (the retry layer), so it reads them itself.
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parsed.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
