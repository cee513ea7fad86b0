"""with_options views, request() to any path, APIError.headers, from_env's base URL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from memcachier_async import (
    APIError,
    AsyncAnalytics,
    DecodeError,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from memcachier_async.testing import Emulator

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
FAST = RetryPolicy(initial_backoff=0.0, max_backoff=0.0)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emulator = Emulator()
    yield emulator
    emulator.close()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/login").respond(200, json={"cache_id": 7})
        yield router


class Slow(httpx.AsyncBaseTransport):
    """Answers from ``inner`` after ``delay`` seconds on the paths that end in ``slow_suffix``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, delay: float, slow_suffix: str) -> None:
        self.inner = inner
        self.delay = delay
        self.slow_suffix = slow_suffix
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith(self.slow_suffix):
            await anyio.sleep(self.delay)
        return await self.inner.handle_async_request(request)


async def test_a_view_shares_pool_login_and_budget(emulator: Emulator) -> None:
    """A view sends on the same httpx client, logs in once with the original, and spends its budget."""
    async with emulator.client(retry=FAST) as api:
        view = api.with_options(timeout=5, retry=RetryPolicy(max_attempts=2))
        assert view.http_client is api.http_client
        await view.stats()
        await api.stats()
        assert emulator.calls["login"] == 1
        assert api.cache_id == view.cache_id == emulator.cache.cache_id
        policy = view._policy
        transport = api.http_client._transport
        assert policy is not None
        assert policy.budget is transport.policy.budget  # type: ignore[attr-defined]
        assert policy.max_attempts == 2
        assert policy.deadline == 5.0
        await view.aclose()  # a view owns nothing
        assert not api.http_client.is_closed
        await api.stats()


async def test_the_view_timeout_bounds_the_whole_call(emulator: Emulator) -> None:
    """A 0.1 s view gives up on a 0.5 s answer with a TransportError; the original waits for it."""
    slow = Slow(emulator.transport(), delay=0.5, slow_suffix="/history")
    api = AsyncAnalytics(emulator.username, emulator.password, transport=slow, retry=FAST)
    async with api:
        quick = api.with_options(timeout=0.1)
        with pytest.raises(TransportError) as caught:
            await quick.history()
        assert "deadline" in str(caught.value) or "Timeout" in str(caught.value)
        assert isinstance(await api.history(), list)  # the original has no such deadline


async def test_the_view_timeout_with_a_given_http_client(emulator: Emulator) -> None:
    """With the user's own http_client (no retry layer of ours), the deadline still holds."""
    slow = Slow(emulator.transport(), delay=0.5, slow_suffix="/stats")
    async with httpx.AsyncClient(transport=slow) as http:
        api = AsyncAnalytics(emulator.username, emulator.password, http_client=http)
        quick = api.with_options(timeout=0.1)
        with pytest.raises(TransportError, match="deadline"):
            await quick.stats()
        with pytest.raises(ValueError, match="RetryTransport"):
            api.with_options(retry=RetryPolicy(max_attempts=3))


async def test_views_and_original_run_at_once(emulator: Emulator) -> None:
    """The original and several views call concurrently, each with its own options."""
    async with emulator.client(retry=FAST) as api:
        views = [api, *(api.with_options(timeout=10, headers={"X-N": str(n)}) for n in range(4))]
        results: list[int] = []

        async def one(view: AsyncAnalytics) -> None:
            results.append(len(await view.stats()))

        async with anyio.create_task_group() as tasks:
            for view in views * 3:
                tasks.start_soon(one, view)
        assert results == [len(emulator.cache.servers)] * 15
        assert emulator.calls["login"] == 1


async def test_view_retry_policy_replaces_the_clients(router: respx.MockRouter) -> None:
    """A view with max_attempts=1 sees the first 503; the original retries it away."""
    route = router.get("/7/stats").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={}), httpx.Response(503)]
    )
    async with AsyncAnalytics("u", "p", retry=FAST) as api:
        assert len(await api.stats()) == 0  # 503, then 200
        with pytest.raises(ServerError):
            await api.with_options(retry=RetryPolicy.disabled()).stats()
    assert route.call_count == 3


async def test_view_headers_are_added_and_authorization_is_refused(
    router: respx.MockRouter,
) -> None:
    """headers= go on the view's requests only; Authorization cannot be replaced."""
    route = router.get("/7/stats").respond(200, json={})
    async with AsyncAnalytics("u", "p") as api:
        tagged = api.with_options(headers={"X-Request-Id": "abc"})
        await tagged.with_options(headers={"X-Other": "1"}).stats()
        await api.stats()
        with pytest.raises(ValueError, match="must not set"):
            api.with_options(headers={"authorization": "Basic x"})
        with pytest.raises(ValueError, match="positive"):
            api.with_options(timeout=0)
    first, second = (call.request for call in route.calls)
    assert first.headers["x-request-id"] == "abc"
    assert first.headers["x-other"] == "1"
    assert first.headers["authorization"].startswith("Basic ")
    assert "x-request-id" not in second.headers


async def test_request_reaches_any_path_with_the_login(emulator: Emulator) -> None:
    """request() fills in {cache_id} after logging in and returns the decoded JSON."""
    async with emulator.client() as api:
        body = await api.request("GET", "/{cache_id}/stats")
        assert isinstance(body, dict)
        assert set(body) == {s.name for s in emulator.cache.servers}
        assert emulator.calls["login"] == 1
        assert await api.request("post", "/{cache_id}/flush") in (None, "")


async def test_request_sends_json_and_raises_the_error_tree(router: respx.MockRouter) -> None:
    """A JSON body is sent as JSON; a 403 is a PermissionDeniedError with the safe headers."""
    router.patch("/7/thing").respond(200, json={"ok": [1, 2]})
    router.get("/7/secret").respond(
        403,
        text="You are not authorized to perform this action.",
        headers={"X-Trace": "t1", "Set-Cookie": "session=s3cr3t", "Retry-After": "3"},
    )
    async with AsyncAnalytics("u", "p") as api:
        assert await api.request("PATCH", "/{cache_id}/thing", json={"a": True}) == {"ok": [1, 2]}
        sent = router.calls[-1].request
        assert sent.headers["content-type"] == "application/json"
        assert sent.content == b'{"a":true}'
        with pytest.raises(PermissionDeniedError) as caught:
            await api.request("GET", "/{cache_id}/secret")
    assert caught.value.headers["x-trace"] == "t1"
    assert "set-cookie" not in caught.value.headers
    assert "s3cr3t" not in repr(dict(caught.value.headers))


async def test_request_is_retried_by_method(router: respx.MockRouter) -> None:
    """GET through request() is retried after a 502; POST is not (it may have acted)."""
    get = router.get("/7/x").mock(side_effect=[httpx.Response(502), httpx.Response(200, json=1)])
    post = router.post("/7/x").mock(side_effect=[httpx.Response(502), httpx.Response(200)])
    async with AsyncAnalytics("u", "p", retry=FAST) as api:
        assert await api.request("GET", "/{cache_id}/x") == 1
        with pytest.raises(ServerError) as caught:
            await api.request("POST", "/{cache_id}/x")
    assert get.call_count == 2
    assert post.call_count == 1
    assert isinstance(caught.value, APIError)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[" * 100 + b"]" * 100, b"\xff\xfe"],
    ids=["text", "deep", "binary"],
)
async def test_request_bodies_are_checked(router: respx.MockRouter, body: bytes) -> None:
    """A body that is not JSON, or nested past the limit, is a DecodeError."""
    router.get("/login2").respond(200, content=body)
    async with AsyncAnalytics("u", "p", cache_id=7) as api:
        with pytest.raises(DecodeError):
            await api.request("GET", "/login2")


@pytest.mark.parametrize(
    "path",
    ["stats", "//evil.example/x", "/../login", "/a/./b", "/a#b", "/a b", "/a\\b", "/a\nb"],
)
async def test_request_paths_stay_under_the_base_url(path: str) -> None:
    """A path that could leave the base URL, or is not a path, is refused before any I/O."""
    async with AsyncAnalytics("u", "p", cache_id=7) as api:
        with pytest.raises(ValueError, match="path"):
            await api.request("GET", path)
        with pytest.raises(ValueError, match="method"):
            await api.request("GE T", "/x")


def test_from_env_reads_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMCACHIER_BASE_URL points from_env() at another server; an explicit base_url wins."""
    monkeypatch.setenv("MEMCACHIER_USERNAME", "u")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "p")
    monkeypatch.setenv("MEMCACHIER_BASE_URL", "http://127.0.0.1:9999/api/v1")
    assert AsyncAnalytics.from_env().base_url == "http://127.0.0.1:9999/api/v1"
    assert AsyncAnalytics.from_env(base_url=BASE).base_url == BASE
    monkeypatch.delenv("MEMCACHIER_BASE_URL")
    assert AsyncAnalytics.from_env().base_url == BASE


def test_with_options_refuses_wrong_types() -> None:
    """A retry that is not a RetryPolicy, or a timeout that is not a number, is a TypeError."""
    api = AsyncAnalytics("u", "p")
    bad: Any = "fast"
    with pytest.raises(TypeError):
        api.with_options(retry=bad)
    with pytest.raises(TypeError):
        api.with_options(timeout=bad)


async def test_views_of_fan_out_clients_reach_the_shared_retry_layer(
    router: respx.MockRouter,
) -> None:
    """Inside fan_out (one shared stack), a view's retry policy still reaches the retry layer."""
    from memcachier_async import CacheCredentials, fan_out

    route = router.get("/7/stats").respond(503)
    targets = [CacheCredentials("u", "p", cache_id=7)]
    call = lambda api: api.with_options(retry=RetryPolicy(max_attempts=2)).stats()  # noqa: E731
    async with fan_out(targets, call, retry=FAST) as results:
        (result,) = [r async for r in results]
    assert isinstance(result.error, ServerError)
    assert len(result.error.attempts) == 2  # not FAST's 4
    assert route.call_count == 2


async def test_the_client_page_examples(emulator: Emulator) -> None:
    """docs/client.md's with_options, request() and to_json examples run as written."""
    import json

    from docs_examples import page_code

    code = page_code("client.md")
    async with emulator.client() as api:
        assert await code["quick_stats"](api) == len(emulator.cache.servers)
        await code["one_try"](api)
        raw = await code["raw_stats"](api)
        assert set(raw) == {s.name for s in emulator.cache.servers}
        document = json.loads(code["stats_document"](await api.stats()))
    assert emulator.calls["flush"] == 1
    assert document["servers"] == len(emulator.cache.servers)
    assert set(document["stats"]) == set(raw)


async def test_the_client_page_s_own_client_example_retries_over_tcp() -> None:
    """docs/client.md's "your own httpx.AsyncClient" example, against the emulator
    over TCP: its RetryTransport retries two 503s, and the call answers."""
    from docs_examples import page_code

    from memcachier_async.testing import FaultPlan

    emulator = Emulator(faults=FaultPlan().script("stats", "unavailable", "unavailable"))
    code = page_code("client.md")
    async with emulator.serve() as base_url:
        got = await code["with_my_client"](emulator.username, emulator.password, base_url)
    assert got == len(emulator.cache.servers)
    assert emulator.calls["stats"] == 3
    emulator.close()


async def test_request_bodies_obey_the_size_limit(router: respx.MockRouter) -> None:
    """request() reads within max_response_size like every other call."""
    from memcachier_async import ResponseTooLargeError

    router.get("/7/big").respond(200, json={"padding": "x" * 1000})
    async with AsyncAnalytics("u", "p", cache_id=7, max_response_size=100) as api:
        with pytest.raises(ResponseTooLargeError):
            await api.request("GET", "/{cache_id}/big")
