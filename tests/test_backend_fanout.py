"""``http_backend`` in fan_out and watch: the same meaning as in AsyncAnalytics.

Over real sockets to the emulator; aiohttp runs on asyncio only.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from memcachier_async import AsyncAnalytics, CacheCredentials, Stats, fan_out, watch
from memcachier_async._transports import aiohttp as aiohttp_backend
from memcachier_async.testing import Emulator

pytest.importorskip("aiohttp")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the aiohttp transport sent (a wrapper around the real method)."""
    seen: list[str] = []
    real = aiohttp_backend.AiohttpTransport.handle_async_request

    async def send(self: Any, request: httpx.Request) -> Any:
        seen.append(str(request.url))
        return await real(self, request)

    monkeypatch.setattr(aiohttp_backend.AiohttpTransport, "handle_async_request", send)
    return seen


def targets(emulator: Emulator, count: int) -> list[CacheCredentials]:
    return [CacheCredentials(emulator.username, emulator.password) for _ in range(count)]


@pytest.mark.anyio
async def test_fan_out_on_aiohttp_sends_with_the_aiohttp_transport(sent: list[str]) -> None:
    """fan_out(http_backend="aiohttp"): every cache's stats arrive, sent on aiohttp."""
    emulator = Emulator()
    async with (
        emulator.serve() as base_url,
        fan_out(
            targets(emulator, 5), AsyncAnalytics.stats, base_url=base_url, http_backend="aiohttp"
        ) as results,
    ):
        got = [result async for result in results]
    assert len(got) == 5
    assert all(r.ok and isinstance(r.value, Stats) for r in got)
    # A login and a stats call per cache, all through the aiohttp transport.
    assert sum(url.endswith("/stats") for url in sent) == 5
    assert len(sent) == 10


@pytest.mark.anyio
async def test_watch_on_aiohttp_reports_every_cache(sent: list[str]) -> None:
    """watch(http_backend="aiohttp"): one round with every cache's stats."""
    emulator = Emulator()
    async with (
        emulator.serve() as base_url,
        watch(
            targets(emulator, 3), 5.0, rounds=1, base_url=base_url, http_backend="aiohttp"
        ) as poller,
    ):
        rounds = [r async for r in poller]
    assert len(rounds) == 1
    assert [r.stats is not None for r in rounds[0].results] == [True, True, True]
    assert sum(url.endswith("/stats") for url in sent) == 3


@pytest.mark.parametrize("make", [fan_out, watch])
def test_http_backend_is_refused_with_a_transport_of_yours(make: Any) -> None:
    """http_backend chooses the client's own transport: with a given one it is a ValueError."""
    with pytest.raises(ValueError, match="http_backend"):
        make(
            [CacheCredentials("u", "p")],
            AsyncAnalytics.stats if make is fan_out else 60.0,
            transport=httpx.MockTransport(lambda request: httpx.Response(200)),
            http_backend="aiohttp",
        )


@pytest.mark.parametrize("make", [fan_out, watch])
@pytest.mark.parametrize(
    "option", [{"verify": False}, {"proxy": "http://127.0.0.1:3128"}, {"cert": "client.pem"}]
)
def test_tls_and_proxy_options_are_refused_with_a_client_of_yours(
    make: Any, option: dict[str, Any]
) -> None:
    """verify, cert and proxy configure the shared client's own transport: with an
    http_client of yours they are a ValueError, as for AsyncAnalytics."""
    with pytest.raises(ValueError, match="verify, cert and proxy"):
        make(
            [CacheCredentials("u", "p")],
            AsyncAnalytics.stats if make is fan_out else 60.0,
            http_client=httpx.AsyncClient(),
            **option,
        )
