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

_MAX_CACHED = 256


def _merged(base: httpx.Headers, own: Mapping[str, str]) -> httpx.Headers:
    """``base`` updated with ``own`` as ``Headers.update`` does it (the replaced
    headers move to the end), in one pass: a fan-out builds a sender per cache."""
    replaced = {name.lower() for name in own}
    pairs = [(k, v) for k, v in base.multi_items() if k.lower() not in replaced]
    pairs.extend(own.items())
    return httpx.Headers(pairs)


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
        self._headers = _merged(client.headers, self._own_headers)
        self._urls: dict[str, httpx.URL] = {}
        self._requests: dict[tuple[Any, ...], httpx.Request] = {}

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
            if len(self._urls) >= _MAX_CACHED:
                self._urls.clear()
            found = self._urls[url] = httpx.URL(url)
        return found

    def _request(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        extensions: Mapping[str, Any],
    ) -> httpx.Request:
        if content is None and not headers:
            # A call without a body is the same request every time (the
            # layers below never change a request; the retry layer copies
            # it per attempt), so it is built once.
            key = (method, url, *extensions.items())
            found = self._requests.get(key)
            if found is None:
                if len(self._requests) >= _MAX_CACHED:
                    self._requests.clear()
                found = self._requests[key] = self._build(method, url, None, None, extensions)
            return found
        return self._build(method, url, content, headers, extensions)

    def _build(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        extensions: Mapping[str, Any],
    ) -> httpx.Request:
        if headers:
            merged = httpx.Headers(self._headers)
            merged.update(headers)
        else:
            merged = self._headers
        return httpx.Request(
            method,
            self._url(url),
            headers=merged,
            content=content,
            extensions={**extensions, "timeout": self._timeout_dict},
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None,
        headers: Mapping[str, str],
        extensions: Mapping[str, Any],
    ) -> tuple[httpx.Response, bytes]:
        """The response and its decoded body, as ``client.send(request)`` would give them."""
        request = self._request(method, url, content, headers, extensions)
        response = await self._transport.handle_async_request(request)
        response.request = request
        if isinstance(response.stream, httpx.ByteStream):
            # In memory (the retry layer returns bodies read): no async
            # iteration, and no decoder at all for an unencoded body.
            if "content-encoding" not in response.headers:
                return response, b"".join(response.stream)
            return response, response.read()
        try:
            return response, await response.aread()
        finally:
            await response.aclose()
