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
    # With a transport of the user's (here httpx's, which respx sees), the
    # SDK sends through DirectSender; with its own pool, through PoolSender
    # (which respx never sees, so under respx it defers to client.send).
    return AsyncAnalytics(
        "user",
        "pw",
        cache_id=14,
        retry=RetryPolicy.disabled(),
        transport=httpx.AsyncHTTPTransport(),
    )


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


class _Recorder(httpx.AsyncBaseTransport):
    """Answers every request with the stats sample and keeps the requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=STATS)


class _StampAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["X-Stamp"] = "stamped"
        yield request


async def test_auth_set_on_the_client_later_is_applied() -> None:
    """An auth set on api.http_client after construction runs on the next call."""
    recorder = _Recorder()
    async with AsyncAnalytics(
        "user", "pw", cache_id=14, transport=recorder, retry=RetryPolicy.disabled()
    ) as api:
        await api.stats()
        assert "x-stamp" not in recorder.requests[-1].headers
        api.http_client.auth = _StampAuth()
        await api.stats()
    assert recorder.requests[-1].headers["x-stamp"] == "stamped"


async def test_timeout_set_on_the_client_later_is_applied() -> None:
    """A timeout set on api.http_client after construction is the next request's timeout."""
    recorder = _Recorder()
    async with AsyncAnalytics(
        "user", "pw", cache_id=14, transport=recorder, retry=RetryPolicy.disabled()
    ) as api:
        await api.stats()
        assert recorder.requests[-1].extensions["timeout"]["read"] == pytest.approx(30.0, abs=1)
        api.http_client.timeout = httpx.Timeout(1.5, connect=0.5)
        await api.stats()
    timeout = recorder.requests[-1].extensions["timeout"]
    assert timeout["read"] == pytest.approx(1.5, abs=0.1)
    assert timeout["connect"] == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize(
    "own",
    [
        {"Authorization": "Basic dXNlcjpwdw==", "Accept": "application/json"},
        {"Accept": "application/json", "authorization": "Basic b3RoZXI6c2VjcmV0"},
        {"Authorization": "Basic dXNlcjpwdw==", "User-Agent": "x", "X-Extra": "1"},
        {"Accept": "application/json"},  # no credentials: merged whole
        {"Authorization": "Basic eDp5", "authorization": "Basic eTp6"},  # two: merged whole
    ],
)
async def test_header_pairs_are_the_merged_headers_items(own: dict[str, str]) -> None:
    """The aiohttp sender's header pairs, built from a cached template, equal the
    merged httpx.Headers' items, for the first set of credentials and the next."""
    from memcachier_async._stack import StackOptions, build_stack

    stack = build_stack(StackOptions(), base_url=BASE)
    parts = stack.parts
    assert parts is not None
    stack.client.headers["X-Client"] = "c"
    try:
        for _ in range(2):  # the template made, then reused
            assert parts.header_pairs(own) == parts.headers(own).multi_items()
        other = {
            k: ("Basic Ym9iOnB3" if k.lower() == "authorization" else v) for k, v in own.items()
        }
        assert parts.header_pairs(other) == parts.headers(other).multi_items()
    finally:
        await stack.aclose()
