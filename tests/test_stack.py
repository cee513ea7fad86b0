"""The client stack is built in one place: AsyncAnalytics, fan_out and watch take the
same arguments for it, apply them the same way and refuse the same combinations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.lowlevel
import httpx
import pytest

from memcachier_async import AsyncAnalytics, CacheCredentials, RetryPolicy, fan_out, watch
from memcachier_async._stack import StackOptions, build_stack
from memcachier_async._transports.retry import RetryTransport
from memcachier_async._transports.shards import ShardedTransport

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
TARGET = CacheCredentials("user", "pw", cache_id=14)


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


def retry(attempts: int) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, budget=None, sleep=no_sleep)


def make_client(**kwargs: Any) -> object:
    return AsyncAnalytics("user", "pw", cache_id=14, **kwargs)


def make_fan_out(**kwargs: Any) -> object:
    return fan_out([TARGET], AsyncAnalytics.stats, **kwargs)


def make_watch(**kwargs: Any) -> object:
    return watch([TARGET], rounds=1, **kwargs)


MAKERS = [
    pytest.param(make_client, id="AsyncAnalytics"),
    pytest.param(make_fan_out, id="fan_out"),
    pytest.param(make_watch, id="watch"),
]


@pytest.mark.parametrize("make", MAKERS)
async def test_retry_with_a_given_http_client_is_refused_everywhere(
    make: Callable[..., object],
) -> None:
    """retry= (more than one attempt) with http_client= is a ValueError, not silently dropped."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="RetryTransport"):
            make(http_client=http, retry=retry(5))
        make(http_client=http, retry=RetryPolicy.disabled())  # one attempt asks for nothing


@pytest.mark.parametrize("make", MAKERS)
async def test_http_client_and_transport_together_are_refused_everywhere(
    make: Callable[..., object],
) -> None:
    """http_client= and transport= together is the same ValueError everywhere."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="either http_client or transport"):
            make(http_client=http, transport=httpx.MockTransport(lambda r: httpx.Response(200)))


async def test_retry_applies_to_a_given_transport_everywhere() -> None:
    """transport= with retry=RetryPolicy(max_attempts=3): three requests for a cache that 503s."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(503)

    mock = httpx.MockTransport(handler)
    async with AsyncAnalytics("user", "pw", cache_id=14, transport=mock, retry=retry(3)) as api:
        with pytest.raises(Exception, match="503"):
            await api.stats()
    assert len(sent) == 3

    sent.clear()
    async with fan_out([TARGET], AsyncAnalytics.stats, transport=mock, retry=retry(3)) as results:
        assert [r.ok async for r in results] == [False]
    assert len(sent) == 3

    sent.clear()
    async with watch([TARGET], rounds=1, transport=mock, retry=retry(3)) as poller:
        assert [[r.status for r in round.results] async for round in poller] == [["failed"]]
    assert len(sent) == 3


async def test_a_given_http_client_is_used_as_it_is_and_never_closed() -> None:
    """With http_client=, fan_out sends through that client (its hooks run) and leaves it open."""
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), event_hooks={"request": [hook]}
    ) as http:
        async with fan_out([TARGET], AsyncAnalytics.stats, http_client=http) as results:
            assert [r.ok async for r in results] == [True]
        assert not http.is_closed
    assert seen == ["/api/v1/14/stats"]


async def test_the_own_stack_is_retries_over_httpx_transport() -> None:
    """Without a client or transport: an owned httpx client over RetryTransport over
    httpx's own AsyncHTTPTransport pools (of at most 16 connections each)."""
    stack = build_stack(StackOptions(retry=retry(2)), base_url=BASE)
    try:
        assert stack.owned
        transport = stack.client._transport  # httpx keeps it there
        assert isinstance(transport, RetryTransport)
        assert isinstance(transport.inner, ShardedTransport)
        assert len(transport.inner.shards) == 7  # 100 connections
        assert all(type(s) is httpx.AsyncHTTPTransport for s in transport.inner.shards)
        assert transport.policy.max_attempts == 2
        assert stack.retry is transport
    finally:
        await stack.aclose()
    assert stack.client.is_closed


async def test_a_given_client_stack_is_not_ours_to_close() -> None:
    """A stack on a given client has no retry layer of ours and leaves the client open when closed."""
    async with httpx.AsyncClient() as http:
        stack = build_stack(StackOptions(http_client=http), base_url=BASE)
        assert not stack.owned
        assert stack.retry is None
        await stack.aclose()
        assert not http.is_closed
