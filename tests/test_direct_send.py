"""The SDK's direct send (``_direct.DirectSender``): same request as ``client.send``, and
back to ``client.send`` as soon as the user changes the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from memcachier_async import AsyncAnalytics, RetryPolicy

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
STATS = json.loads((Path(__file__).parent / "samples" / "stats_two_servers.json").read_text())


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/14/stats").respond(json=STATS)
        router.patch("/14/credentials/bob").respond(
            json={"flush_capability": True, "write_capability": True, "api_capability": True}
        )
        yield router


def _api() -> AsyncAnalytics:
    return AsyncAnalytics("user", "pw", cache_id=14, retry=RetryPolicy.disabled())


def _sent(router: respx.MockRouter) -> httpx.Request:
    request: httpx.Request = router.calls.last.request
    return request


async def test_direct_request_matches_the_client_built_one(router: respx.MockRouter) -> None:
    """Method, URL, headers, body and timeout are what client.build_request makes."""
    async with _api() as api:
        assert api._direct is not None
        assert api._direct.usable()
        await api.update_credential(
            "bob", write_capability=True, flush_capability=True, api_capability=True
        )
        direct = _sent(router)
        expected = api.http_client.build_request(
            "PATCH",
            direct.url,
            content=direct.content,
            headers={**api._headers, "Content-Type": "application/json"},
        )
    assert direct.method == "PATCH"
    assert direct.url == expected.url
    assert direct.headers.multi_items() == expected.headers.multi_items()
    assert direct.content == expected.content
    # The retry layer under the SDK trims the timeouts to its deadline.
    assert direct.extensions["timeout"] == pytest.approx(expected.extensions["timeout"], abs=1)


async def test_event_hooks_added_to_the_client_run(router: respx.MockRouter) -> None:
    """A hook added to api.http_client runs: the SDK sends through the client again."""
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    async with _api() as api:
        api.http_client.event_hooks["request"].append(hook)
        await api.stats()
    assert seen == [BASE + "/14/stats"]


async def test_headers_added_to_the_client_are_sent(router: respx.MockRouter) -> None:
    """A header set on api.http_client reaches the server."""
    async with _api() as api:
        await api.stats()
        assert "x-trace" not in _sent(router).headers
        api.http_client.headers["X-Trace"] = "abc"
        await api.stats()
    assert _sent(router).headers["x-trace"] == "abc"


async def test_closed_client_refuses_as_httpx_does(router: respx.MockRouter) -> None:
    """After aclose, a call fails the way httpx's closed client fails."""
    api = _api()
    await api.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await api.stats()


async def test_given_client_is_always_used_as_is(router: respx.MockRouter) -> None:
    """With http_client=, every request goes through that client (its hooks run)."""
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.method)

    async with httpx.AsyncClient(event_hooks={"request": [hook]}) as http:
        api = AsyncAnalytics("user", "pw", cache_id=14, http_client=http)
        assert api._direct is None
        await api.stats()
    assert seen == ["GET"]
