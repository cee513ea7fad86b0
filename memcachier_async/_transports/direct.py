"""Sending straight to the transport of the client ``AsyncAnalytics`` owns.

``httpx.AsyncClient.build_request`` and ``send`` do a lot per request that
this SDK never uses: parse and merge the URL, merge headers and cookies,
run an auth flow and event hooks, extract cookies from the response. On a
small body that is about a third of a call's CPU time. When the client is
the SDK's own and is still as the SDK made it, but its transport is not one
the SDK drives itself (a ``transport=`` of the user's, ``mock_api``'s, the
pool behind a proxy; otherwise ``sender.PoolSender`` or
``aiohttp.AiohttpSender`` send with no httpx model at all),
:class:`DirectSender` builds
the ``httpx.Request`` the client would have built (same headers, same
timeout extension) from cached parts and hands it to the transport (the
retry layer) itself, and stores a ``Set-Cookie`` in the client's jar as
``client.send`` does. As soon as the client is changed (event hooks, auth,
headers, params, cookies, timeout, redirects) or closed, the SDK goes back
to ``client.send``, so the client's documented behaviour holds;
``tests/test_send_equivalence.py`` compares the bytes both put on the wire.

A fan-out or a poller makes one ``AsyncAnalytics`` per cache, all on one
``httpx.AsyncClient``: what their senders have in common (the client's
headers merged with ours, the parsed origin of the URLs) is built once, in
:class:`SharedParts`, not once per cache.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["DirectSender", "SharedParts"]

_MAX_CACHED = 256

#: A path httpx keeps exactly as written: no percent-escapes, no characters
#: it would quote, no empty, "." or ".." segments (that it would normalize).
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+/?")
_PROBE_PATH = "/0-probe/_x.y~z/"


def _merged(base: httpx.Headers, own: Mapping[str, str]) -> httpx.Headers:
    """``base`` updated with ``own`` as ``Headers.update`` does it (the replaced
    headers move to the end), in one pass."""
    replaced = {name.lower().encode("latin-1") for name in own}
    # The raw names: they go on the wire as the user spelled them.
    pairs = [(k, v) for k, v in base.raw if k.lower() not in replaced]
    pairs.extend((k.encode("latin-1"), v.encode(base.encoding)) for k, v in own.items())
    return httpx.Headers(pairs, encoding=base.encoding)


def _with_path(origin: httpx.URL, path: str) -> httpx.URL:
    """``origin`` with ``path``, without parsing the URL again (httpx's parse
    of a whole URL costs more than the rest of building a request)."""
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = origin._uri_reference._replace(path=path)
    return url


def _parsed_origin(origin: str) -> httpx.URL | None:
    """``scheme://authority`` parsed, if :func:`_with_path` gives on it exactly
    the URL httpx parses (checked once: it relies on httpx's internals)."""
    if "?" in origin or "#" in origin:
        return None
    try:
        parsed = httpx.URL(origin)
        fast = _with_path(parsed, _PROBE_PATH)
        full = httpx.URL(origin + _PROBE_PATH)
        same = (
            fast._uri_reference == full._uri_reference
            and str(fast) == str(full)
            and fast.raw_path == full.raw_path
        )
    except Exception:  # an httpx without these internals (or a bad URL): parse whole
        return None
    return parsed if same else None


class SharedParts:
    """What the senders on one owned ``httpx.AsyncClient`` have in common."""

    def __init__(self, client: httpx.AsyncClient, transport: httpx.AsyncBaseTransport) -> None:
        self.client = client
        self.transport = transport
        self.timeout = client.timeout
        self.timeout_dict = client.timeout.as_dict()
        self._client_headers = client.headers.raw
        self._origins: dict[str, httpx.URL | None] = {}
        self._templates: dict[
            tuple[tuple[str, str], ...],
            tuple[httpx.Headers, list[tuple[str, str]], int],
        ] = {}

    def usable(self) -> bool:
        """Whether the client is still exactly as the SDK made it."""
        client = self.client
        hooks = client.event_hooks
        return not (
            client.is_closed
            or hooks["request"]
            or hooks["response"]
            or client.auth is not None
            or client.follow_redirects
            or client.timeout is not self.timeout
            or client.params
            or client.cookies
            or client.headers.raw != self._client_headers
        )

    def headers(self, own: Mapping[str, str]) -> httpx.Headers:
        """The client's headers updated with ``own``, as :func:`_merged` makes them.

        The senders of one client differ only in ``Authorization``: the rest
        is merged once into a template, copied per sender.
        """
        found = self._template(own)
        if found is None:
            return _merged(self.client.headers, own)
        template, _, _, name = found
        merged = httpx.Headers(template)
        merged[name] = own[name]  # in place: the header keeps its position
        return merged

    def header_pairs(self, own: Mapping[str, str]) -> list[tuple[str, str]]:
        """``headers(own).multi_items()``, without making the headers."""
        found = self._template(own)
        if found is None:
            return _merged(self.client.headers, own).multi_items()
        _, pairs, at, name = found
        merged = list(pairs)
        merged[at] = ("authorization", own[name])
        return merged

    def raw_pairs(self, own: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
        """``headers(own).raw`` (names as the user spelled them), without making the headers."""
        found = self._template(own)
        if found is None:
            return list(_merged(self.client.headers, own).raw)
        template, _, at, name = found
        merged = list(template.raw)
        merged[at] = (merged[at][0], own[name].encode("ascii"))
        return merged

    def _template(
        self, own: Mapping[str, str]
    ) -> tuple[httpx.Headers, list[tuple[str, str]], int, str] | None:
        """The merged headers of ``own`` with an empty ``Authorization``, their
        pairs and the index of that header in them, and its name in ``own``
        (``None`` unless ``own`` has exactly one, in ASCII)."""
        auth = [name for name in own if name.lower() == "authorization"]
        if len(auth) != 1 or not own[auth[0]].isascii():
            return None
        key = tuple((k, "" if k == auth[0] else v) for k, v in own.items())
        found = self._templates.get(key)
        if found is None:
            if len(self._templates) >= _MAX_CACHED:
                self._templates.clear()
            template = _merged(self.client.headers, dict(key))
            pairs = template.multi_items()
            at = next(i for i, (k, _) in enumerate(pairs) if k == "authorization")
            found = self._templates[key] = (template, pairs, at)
        return (*found, auth[0])

    def url(self, url: str) -> httpx.URL:
        """``httpx.URL(url)``; the origin is parsed once, the path put on it."""
        scheme_end = url.find("://")
        path_start = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
        if path_start > 0 and _PLAIN_PATH.fullmatch(url, path_start):
            prefix = url[:path_start]
            if prefix in self._origins:
                origin = self._origins[prefix]
            else:
                if len(self._origins) >= _MAX_CACHED:
                    self._origins.clear()
                origin = self._origins[prefix] = _parsed_origin(prefix)
            if origin is not None:
                return _with_path(origin, url[path_start:])
        return httpx.URL(url)


class DirectSender:
    """Builds and sends the requests of one client (one set of credentials)."""

    def __init__(self, parts: SharedParts, headers: Mapping[str, str]) -> None:
        self._parts = parts
        self._transport = parts.transport
        self._timeout_dict = parts.timeout_dict
        self._headers = parts.headers(headers)
        self._urls: dict[str, httpx.URL] = {}
        self._requests: dict[tuple[Any, ...], httpx.Request] = {}

    def usable(self) -> bool:
        """Whether the client is still exactly as the SDK made it."""
        return self._parts.usable()

    def _url(self, url: str) -> httpx.URL:
        found = self._urls.get(url)
        if found is None:
            if len(self._urls) >= _MAX_CACHED:
                self._urls.clear()
            found = self._urls[url] = self._parts.url(url)
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
        if "set-cookie" in response.headers:
            # As client.send does: a load balancer's sticky cookie is kept
            # (and, the jar no longer empty, later calls go through the client).
            self._parts.client.cookies.extract_cookies(response)
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
