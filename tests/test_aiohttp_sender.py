"""The aiohttp backend's own sender keeps the call's deadline as the retry layer does.

``AsyncAnalytics(http_backend="aiohttp")`` sends without httpx's models
(``AiohttpSender``); a deadline that passes must say how far the request
got, exactly as through ``RetryTransport``: still queued for a connection
means nothing was sent, later means the outcome is unknown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
from _limits_server import LoopbackServer, head

from memcachier_async import AsyncAnalytics, OutcomeUnknownError, RetryPolicy, TransportError
from memcachier_async._stack import DEFAULT_TIMEOUT

pytest.importorskip("aiohttp")

PRODUCTION = "https://analytics.memcachier.com/api/v1"  # never reached: nothing is sent
ONE_TRY = RetryPolicy(max_attempts=1, deadline=0.5, budget=None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def slow(request: bytes) -> Iterator[bytes]:
    time.sleep(1.5)
    yield head("200 OK", "Content-Length: 2") + b"[]"


def client(
    server: LoopbackServer | None,
    *,
    retry: RetryPolicy = ONE_TRY,
    timeout: httpx.Timeout | None = None,
) -> AsyncAnalytics:
    """An aiohttp-backend client (of ``server``, or of the default base URL)."""
    api = AsyncAnalytics(
        "user",
        "pw",
        cache_id=1,
        http_backend="aiohttp",
        limits=httpx.Limits(max_connections=1),
        retry=retry,
        base_url=PRODUCTION if server is None else server.url(),
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
    )
    assert type(api._direct).__name__ == "AiohttpSender"
    return api


@pytest.mark.anyio
async def test_a_deadline_in_the_pool_queue_means_nothing_was_sent() -> None:
    """The only connection busy: a create whose deadline passes in the queue is a plain
    TransportError (PoolTimeout), not OutcomeUnknownError, and reaches no server."""
    with LoopbackServer(slow) as server:
        async with client(server) as api:
            relaxed = api.with_options(timeout=5.0)

            async def hold_the_connection() -> None:
                await relaxed.list_credentials()

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold_the_connection)
                await anyio.sleep(0.2)
                started = time.monotonic()
                with pytest.raises(TransportError) as caught:
                    await api.create_credential()
                elapsed = time.monotonic() - started
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert [a.outcome for a in caught.value.attempts] == ["PoolTimeout"]
    assert "deadline of 0.5 s" in str(caught.value)
    assert elapsed < 1.4  # ended by the deadline, not by the held connection's answer
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_a_deadline_after_sending_leaves_the_outcome_unknown() -> None:
    """A create sent to a server that answers after the deadline: OutcomeUnknownError
    (DeadlineExceeded), sent once."""
    with LoopbackServer(slow) as server:
        async with client(server) as api:
            started = time.monotonic()
            with pytest.raises(OutcomeUnknownError) as caught:
                await api.create_credential()
            elapsed = time.monotonic() - started
    assert [a.outcome for a in caught.value.attempts] == ["DeadlineExceeded"]
    assert elapsed < 1.4
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_a_read_timeout_shorter_than_the_deadline_still_ends_the_attempt() -> None:
    """timeout=Timeout(5, read=0.3) under a 5 s deadline: the slow answer is a ReadTimeout
    attempt after about 0.3 s, not a wait until the deadline."""
    policy = RetryPolicy(max_attempts=1, deadline=5.0, budget=None)
    with LoopbackServer(slow) as server:
        async with client(server, retry=policy, timeout=httpx.Timeout(5.0, read=0.3)) as api:
            started = time.monotonic()
            with pytest.raises(TransportError) as caught:
                await api.list_credentials()
            elapsed = time.monotonic() - started
    assert [a.outcome for a in caught.value.attempts] == ["ReadTimeout"]
    assert elapsed < 1.2


@pytest.mark.anyio
async def test_no_timer_is_armed_that_only_the_deadline_could_beat() -> None:
    """With the default timeouts every phase is at least the deadline: each attempt's
    aiohttp timeout is the deadline alone (one timer per request, none re-armed per
    chunk); a shorter read or pool timeout is kept."""
    async with client(None) as api:
        default = api._direct._timeout(29.5)
    assert (default.total, default.sock_read, default.connect) == (29.5, None, None)
    async with client(None, timeout=httpx.Timeout(30.0, read=2.0, pool=1.0, connect=1.0)) as api:
        short = api._direct._timeout(29.5)
    assert (short.total, short.sock_read, short.connect, short.sock_connect) == (
        29.5,
        2.0,
        2.0,
        1.0,
    )
