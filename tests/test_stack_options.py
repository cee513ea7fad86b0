"""headers= and max_response_size= mean for fan_out and watch what they mean for AsyncAnalytics.

Every entry point turns its keywords into one ``StackOptions``, checked when
it is made: the caches are faked with respx behind the SDK's own stack, so
the headers are read where the server would read them.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import respx

from memcachier_async import (
    AsyncAnalytics,
    CacheCredentials,
    FanOut,
    Poller,
    ResponseTooLargeError,
    RetryPolicy,
    fan_out,
    watch,
)
from memcachier_async._stack import StackKeywords, StackOptions

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
NO_RETRY = RetryPolicy.disabled()
TARGETS = [CacheCredentials(f"user{n}", "pw", cache_id=n) for n in (1, 2, 3)]
#: Valid stats of two servers (1.5 KB), over the limit the tests set.
STATS_BODY = (Path(__file__).parent / "samples" / "stats_two_servers.json").read_bytes()
LIMIT = 1000


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        for n in (1, 2, 3):
            router.get(f"/{n}/stats").respond(json={})
        yield router


def tenant_per_cache(router: respx.MockRouter) -> dict[str, str | None]:
    """The X-Tenant header each cache's stats request carried, by path."""
    return {call.request.url.path: call.request.headers.get("x-tenant") for call in router.calls}


EVERY_CACHE = {f"/api/v1/{n}/stats": "blue" for n in (1, 2, 3)}


async def test_fan_out_sends_the_headers_to_every_cache(router: respx.MockRouter) -> None:
    """fan_out(headers=): every cache's request carries them, and the credentials are its own."""
    async with fan_out(
        TARGETS, AsyncAnalytics.stats, base_url=BASE, retry=NO_RETRY, headers={"X-Tenant": "blue"}
    ) as results:
        assert sorted([r.index async for r in results if r.ok]) == [0, 1, 2]
    assert tenant_per_cache(router) == EVERY_CACHE
    users = {call.request.headers["authorization"] for call in router.calls}
    assert users == {httpx.BasicAuth(f"user{n}", "pw")._auth_header for n in (1, 2, 3)}


async def test_watch_sends_the_headers_to_every_cache(router: respx.MockRouter) -> None:
    """watch(headers=): every cache's stats request of a round carries them."""
    async with watch(
        TARGETS, rounds=1, base_url=BASE, retry=NO_RETRY, headers={"X-Tenant": "blue"}
    ) as poller:
        statuses = [[r.status for r in polled.results] async for polled in poller]
    assert statuses == [["ok", "ok", "ok"]]
    assert tenant_per_cache(router) == EVERY_CACHE


def too_large_for_cache_2(router: respx.MockRouter) -> None:
    assert len(STATS_BODY) > LIMIT
    router.get("/2/stats").respond(content=STATS_BODY)


async def test_fan_out_max_response_size_is_that_caches_result(router: respx.MockRouter) -> None:
    """fan_out(max_response_size=): a body over it is that cache's ResponseTooLargeError; the others report."""
    too_large_for_cache_2(router)
    async with fan_out(
        TARGETS, AsyncAnalytics.stats, base_url=BASE, retry=NO_RETRY, max_response_size=LIMIT
    ) as results:
        found = {r.index: r async for r in results}
    assert isinstance(found[1].error, ResponseTooLargeError)
    assert [found[0].ok, found[2].ok] == [True, True]


async def test_watch_max_response_size_is_that_caches_result(router: respx.MockRouter) -> None:
    """watch(max_response_size=): a body over it fails that cache in the round; the others are ok."""
    too_large_for_cache_2(router)
    async with watch(
        TARGETS, rounds=1, base_url=BASE, retry=NO_RETRY, max_response_size=LIMIT
    ) as poller:
        (polled,) = [polled async for polled in poller]
    assert [r.status for r in polled.results] == ["ok", "failed", "ok"]
    assert isinstance(polled.results[1].error, ResponseTooLargeError)


async def test_without_max_response_size_fan_out_reads_the_default_limit(
    router: respx.MockRouter,
) -> None:
    """fan_out's default limit is AsyncAnalytics' (64 MiB): the same body is read and decoded there."""
    too_large_for_cache_2(router)
    async with fan_out(TARGETS, AsyncAnalytics.stats, base_url=BASE, retry=NO_RETRY) as results:
        assert sorted([r.index async for r in results if r.ok]) == [0, 1, 2]


def make_client(**kwargs: Any) -> object:
    return AsyncAnalytics("user", "pw", cache_id=14, transport=httpx.MockTransport(print), **kwargs)


MAKERS: list[Any] = [
    pytest.param(lambda **kw: fan_out(TARGETS, AsyncAnalytics.stats, **kw), id="fan_out"),
    pytest.param(lambda **kw: FanOut(TARGETS, AsyncAnalytics.stats, **kw), id="FanOut"),
    pytest.param(lambda **kw: watch(TARGETS, **kw), id="watch"),
    pytest.param(lambda **kw: Poller(TARGETS, 60.0, **kw), id="Poller"),
]

BAD_VALUES = [
    pytest.param({"headers": {"Authorization": "Basic eDp5"}}, id="reserved-header"),
    pytest.param({"headers": {"Host": "elsewhere"}}, id="host-header"),
    pytest.param({"headers": {"X-Count": 1}}, id="non-str-value"),
    pytest.param({"max_response_size": 0}, id="zero-size"),
    pytest.param({"max_response_size": True}, id="bool-size"),
    pytest.param({"max_response_size": 1.5}, id="float-size"),
]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_values_are_refused_as_async_analytics_refuses_them(
    make: Callable[..., object], bad: dict[str, Any]
) -> None:
    """A bad headers= or max_response_size= is the same exception and message as AsyncAnalytics', raised at once."""
    with pytest.raises((TypeError, ValueError)) as theirs:
        make_client(**bad)
    with pytest.raises(type(theirs.value)) as ours:
        make(**bad)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "entry", [AsyncAnalytics, AsyncAnalytics.from_env, fan_out, FanOut, watch, Poller]
)
def test_every_entry_point_takes_the_one_set_of_stack_keywords(
    entry: Callable[..., object],
) -> None:
    """AsyncAnalytics, from_env, fan_out, FanOut, watch and Poller all take the stack
    options as the one StackKeywords set (``**``), never re-listed; and that set is
    exactly what StackOptions checks."""
    parameters = inspect.signature(entry).parameters
    (variadic,) = [p for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert variadic.annotation == "Unpack[StackKeywords]"
    fields = {field.name for field in attrs.fields(StackOptions) if field.init}
    assert not fields & set(parameters)
    assert set(StackKeywords.__annotations__) == fields


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda **kw: AsyncAnalytics("u", "p", **kw), "AsyncAnalytics"),
        (lambda **kw: fan_out([], AsyncAnalytics.stats, **kw), "fan_out"),
        (lambda **kw: watch([], 1.0, **kw), "watch"),
    ],
)
def test_an_unknown_stack_keyword_names_the_entry_point(
    make: Callable[..., object], name: str
) -> None:
    """A misspelt keyword is a TypeError naming the function called, at once."""
    with pytest.raises(
        TypeError, match=rf"^{name}\(\) got an unexpected keyword argument 'http_bakend'"
    ):
        make(http_bakend="aiohttp")


def test_timeout_means_the_whole_call_and_http_timeout_each_operation() -> None:
    """The two meanings have two names: ``timeout=`` (fan_out, watch, with_options)
    bounds each whole call; ``http_timeout=`` sets the network operations' timeouts."""
    for entry in (fan_out, watch):
        assert "timeout" in inspect.signature(entry).parameters
    assert "timeout" in inspect.signature(AsyncAnalytics.with_options).parameters
    with pytest.raises(TypeError, match="'timeout'"):
        AsyncAnalytics("u", "p", timeout=5)  # type: ignore[call-arg]
    api = AsyncAnalytics("u", "p", http_timeout=7.5)
    assert api.http_client.timeout == httpx.Timeout(7.5)
    with pytest.raises(ValueError, match="http_timeout"):
        AsyncAnalytics("u", "p", http_timeout=-1)


BAD_TLS = [
    pytest.param({"verify": 123}, id="verify-type"),
    pytest.param({"cert": 5}, id="cert-type"),
    pytest.param({"cert": ("a.pem", "b.key", "pw", "extra")}, id="cert-tuple"),
    pytest.param({"verify": ssl.create_default_context(), "cert": "c.pem"}, id="cert-with-context"),
    pytest.param({"verify": "/nonexistent/ca-bundle.pem"}, id="missing-ca-file"),
]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("bad", BAD_TLS)
def test_bad_tls_values_are_refused_at_once_as_async_analytics_refuses_them(
    make: Callable[..., object], bad: dict[str, Any]
) -> None:
    """A bad verify= or cert= raises from fan_out()/watch() itself, as from AsyncAnalytics, not per cache."""
    with pytest.raises(Exception) as theirs:  # noqa: PT011 - compared with ours just below
        AsyncAnalytics("user", "pw", cache_id=14, **bad)
    with pytest.raises(type(theirs.value)) as ours:
        make(**bad)
    assert str(ours.value) == str(theirs.value)
