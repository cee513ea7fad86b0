"""The aiohttp-backed transport: ``AsyncAnalytics(..., http_backend="aiohttp")``.

aiohttp cannot be mocked with respx, so these tests talk to a small
aiohttp.web server on 127.0.0.1. aiohttp runs on asyncio only: under trio
the tests check the clear error instead.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memcachier_async import (
    AsyncAnalytics,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    Stats,
    TransportError,
)
from memcachier_async._transports.aiohttp import AiohttpTransport

web = pytest.importorskip("aiohttp.web")

SAMPLES = Path(__file__).parent / "samples"
STATS = (SAMPLES / "stats_two_servers.json").read_bytes()


class Origin:
    """A recording aiohttp.web server with a few canned routes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        segments = request.raw_path.split("/")
        tail = segments[-1]
        if "forbidden" in segments:
            return web.Response(status=403, text="You are not authorized to perform this action.")
        if "nothing-here" in segments:
            return web.Response(status=404, text="No cache found.")
        if tail == "stats":
            return web.Response(body=STATS, content_type="application/json")
        if tail == "gzipped":
            return web.Response(
                body=gzip.compress(STATS),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        if tail == "slow":
            await asyncio.sleep(5)
        if tail == "drop":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.1)
        if request.method == "PATCH":
            return web.json_response(json.loads(body))
        return web.Response(text='""')

    async def __aenter__(self) -> Origin:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/api/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def origin(anyio_backend: str) -> AsyncIterator[Origin]:
    if anyio_backend != "asyncio":
        pytest.skip("aiohttp runs on asyncio only (the trio case has its own test)")
    async with Origin() as server:
        yield server


def _client(origin: Origin, **kwargs: Any) -> AsyncAnalytics:
    kwargs.setdefault("retry", RetryPolicy.disabled())
    kwargs.setdefault("base_url", origin.base_url)
    return AsyncAnalytics("user", "pw", cache_id=14, http_backend="aiohttp", **kwargs)


@pytest.mark.anyio
async def test_stats_over_aiohttp_match_the_default_backend(origin: Origin) -> None:
    """The aiohttp backend decodes the same models as the default httpx one."""
    async with _client(origin) as api:
        over_aiohttp = await api.stats()
    async with AsyncAnalytics("user", "pw", cache_id=14, base_url=origin.base_url) as api:
        over_httpx = await api.stats()
    assert isinstance(over_aiohttp, Stats)
    assert over_aiohttp == over_httpx
    assert len(over_aiohttp) == 2


@pytest.mark.anyio
async def test_requests_carry_the_sdk_headers_and_no_aiohttp_defaults(origin: Origin) -> None:
    """Auth, Accept and the SDK's User-Agent reach the server; aiohttp adds no User-Agent of its own."""
    async with _client(origin) as api:
        await api.stats()
    headers = origin.requests[0]["headers"]
    assert headers["Authorization"].startswith("Basic ")
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith("memcachier-async/")
    assert origin.requests[0]["raw_path"] == "/api/v1/14/stats"


@pytest.mark.anyio
async def test_escaped_username_stays_one_path_segment(origin: Origin) -> None:
    """A username with "/" reaches the server percent-encoded, not unescaped by aiohttp."""
    async with _client(origin) as api:
        await api.delete_credential("a/../b")
    sent = origin.requests[0]
    assert sent["method"] == "DELETE"
    assert sent["raw_path"] == "/api/v1/14/credentials/primary/a%2F..%2Fb"


@pytest.mark.anyio
async def test_patch_sends_the_json_body(origin: Origin) -> None:
    """update_credential's JSON body and Content-Type go through the aiohttp transport."""
    async with _client(origin) as api:
        caps = await api.update_credential(
            "cred", write_capability=True, flush_capability=False, api_capability=True
        )
    sent = origin.requests[0]
    assert sent["method"] == "PATCH"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {
        "flush_capability": False,
        "write_capability": True,
        "api_capability": True,
    }
    assert caps.write_capability is True
    assert caps.flush_capability is False


@pytest.mark.anyio
async def test_gzip_body_is_decoded_once(origin: Origin) -> None:
    """A gzip-encoded body is decompressed by httpx, as with the default transport."""
    async with AiohttpTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        response = await client.get(origin.base_url + "/gzipped")
    assert response.json() == json.loads(STATS)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "error"),
    [("forbidden", PermissionDeniedError), ("nothing-here", NotFoundError)],
)
async def test_status_errors_map_as_with_httpx(
    origin: Origin, path: str, error: type[Exception]
) -> None:
    """Status codes coming through aiohttp raise the same SDK exceptions."""
    async with _client(origin, base_url=origin.base_url + "/" + path) as api:
        with pytest.raises(error):
            await api.stats()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_refused_connection_is_a_connect_error(origin: Origin) -> None:
    """Nothing listening: httpx.ConnectError, which tells the retry layer nothing was sent."""
    async with AiohttpTransport() as transport:
        request = httpx.Request("GET", f"http://127.0.0.1:{_closed_port()}/x")
        with pytest.raises(httpx.ConnectError):
            await transport.handle_async_request(request)


@pytest.mark.anyio
async def test_slow_answer_is_a_read_timeout(origin: Origin) -> None:
    """The read timeout applies and raises httpx.ReadTimeout (the request may have arrived)."""
    async with AiohttpTransport() as transport:
        request = httpx.Request(
            "GET",
            origin.base_url + "/slow",
            extensions={"timeout": {"connect": 1.0, "read": 0.1, "write": 1.0, "pool": 1.0}},
        )
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(request)


@pytest.mark.anyio
async def test_dropped_connection_is_not_a_connect_error(origin: Origin) -> None:
    """A connection closed after the request was sent is never reported as 'not sent'."""
    async with AiohttpTransport() as transport:
        request = httpx.Request("POST", origin.base_url + "/drop")
        with pytest.raises(httpx.TransportError) as caught:
            await transport.handle_async_request(request)
    assert not isinstance(caught.value, (httpx.ConnectError, httpx.ConnectTimeout))


@pytest.mark.anyio
async def test_client_wraps_transport_failures(origin: Origin) -> None:
    """Through the SDK, an aiohttp failure is a TransportError chained to the httpx one."""
    async with AsyncAnalytics(
        "user",
        "pw",
        cache_id=14,
        base_url=f"http://127.0.0.1:{_closed_port()}/api/v1",
        http_backend="aiohttp",
        retry=RetryPolicy.disabled(),
    ) as api:
        with pytest.raises(TransportError) as caught:
            await api.stats()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.anyio
async def test_trio_gets_a_clear_error(anyio_backend: str) -> None:
    """Under trio the aiohttp backend refuses with a message naming the fix."""
    if anyio_backend != "trio":
        pytest.skip("the asyncio case is covered above")
    async with AsyncAnalytics(
        "user", "pw", cache_id=1, base_url="http://127.0.0.1:9/api/v1", http_backend="aiohttp"
    ) as api:
        with pytest.raises(RuntimeError, match="asyncio only"):
            await api.stats()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"http_backend": "requests"},
        {
            "http_backend": "aiohttp",
            "transport": httpx.MockTransport(lambda r: httpx.Response(200)),
        },
        {"http_backend": "aiohttp", "http_client": httpx.AsyncClient()},
    ],
)
def test_bad_backend_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    """An unknown backend, or one combined with a transport or client of your own, is a ValueError."""
    with pytest.raises(ValueError, match="http_backend"):
        AsyncAnalytics("user", "pw", **kwargs)
