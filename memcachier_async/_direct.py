"""Sending straight to the transport of the client ``AsyncAnalytics`` owns.

``httpx.AsyncClient.build_request`` and ``send`` do a lot per request that
this SDK never uses: parse and merge the URL, merge headers and cookies,
run an auth flow and event hooks, extract cookies from the response. On a
small body that is about a third of a call's CPU time. When the client is
the SDK's own and is still as the SDK made it, :class:`DirectSender` builds
the ``httpx.Request`` the client would have built (same headers, same
timeout extension) from cached parts and hands it to the transport (the
retry layer) itself. As soon as the client is changed (event hooks, auth,
headers, cookies, timeout, redirects) or closed, the SDK goes back to
``client.send``, so the client's documented behaviour holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["DirectSender"]

_MAX_CACHED_URLS = 256


class DirectSender:
    """Builds and sends requests for one owned ``httpx.AsyncClient``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        transport: httpx.AsyncBaseTransport,
        headers: Mapping[str, str],
    ) -> None:
        self._client = client
        self._transport = transport
        self._own_headers = dict(headers)
        self._timeout = client.timeout
        self._timeout_dict = client.timeout.as_dict()
        self._client_headers = client.headers.raw
        merged = httpx.Headers(client.headers)
        merged.update(self._own_headers)
        self._headers = merged
        self._urls: dict[str, httpx.URL] = {}

    def usable(self) -> bool:
        """Whether the client is still exactly as the SDK made it."""
        client = self._client
        hooks = client.event_hooks
        return not (
            client.is_closed
            or hooks["request"]
            or hooks["response"]
            or client.auth is not None
            or client.follow_redirects
            or client.timeout is not self._timeout
            or client.cookies
            or client.headers.raw != self._client_headers
        )

    def _url(self, url: str) -> httpx.URL:
        found = self._urls.get(url)
        if found is None:
            if len(self._urls) >= _MAX_CACHED_URLS:
                self._urls.clear()
            found = self._urls[url] = httpx.URL(url)
        return found

    async def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None,
        headers: Mapping[str, str],
        extensions: Mapping[str, Any],
    ) -> httpx.Response:
        """The response, its body read, as ``client.send(request)`` would return it."""
        if headers:
            merged = httpx.Headers(self._headers)
            merged.update(headers)
        else:
            merged = self._headers
        request = httpx.Request(
            method,
            self._url(url),
            headers=merged,
            content=content,
            extensions={**extensions, "timeout": self._timeout_dict},
        )
        response = await self._transport.handle_async_request(request)
        response.request = request
        if isinstance(response.stream, httpx.ByteStream):
            # In memory (the retry layer returns bodies read): decode it
            # without the async iteration aread() would go through.
            response.read()
            return response
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response
