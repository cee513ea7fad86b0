"""fan_out(): one call over many caches, bounded, isolated, with a deadline.

The caches are faked by an httpx transport that answers by username. On
trio the tests run on trio's MockClock (time jumps when every task waits),
so deadlines measure waiting, never how fast this machine is; on asyncio
they run on the real clock with deadlines far above the work to be done.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trio.testing

from memcachier_async import (
    AsyncAnalytics,
    AuthenticationError,
    CacheCredentials,
    CacheResult,
    CacheTimeout,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
    Stats,
    fan_out,
)

pytestmark = pytest.mark.anyio

STATS_BODY = (Path(__file__).parent / "samples" / "stats_two_servers.json").read_bytes()
NO_RETRY = RetryPolicy.disabled()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio on the real clock; trio on a MockClock that jumps when all tasks wait."""
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {})


def username_of(request: httpx.Request) -> str:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode().partition(":")[0]


class FakeCaches(httpx.AsyncBaseTransport):
    """Answers stats calls by username, and measures how many are in flight.

    ``behaviour`` maps a username to ``"hang"``, ``"fail"`` (500 naming two
    servers) or ``"forbidden"`` (403); anyone else gets stats after
    ``delay`` seconds. With ``fill``, the first ``fill`` requests are held
    until that many are in flight at once (or 5 s passed), so the test
    sees the pool fill up whatever the speed of the machine.
    """

    def __init__(
        self, behaviour: dict[str, str] | None = None, *, delay: float = 0.0, fill: int = 0
    ) -> None:
        self.behaviour = behaviour or {}
        self.delay = delay
        self.fill = fill
        self.filled = anyio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.received = 0
        self.answered = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.received += 1
        number = self.received
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight >= self.fill:
            self.filled.set()
        try:
            kind = self.behaviour.get(username_of(request), "ok")
            if kind == "hang":
                await anyio.sleep_forever()
            if number <= self.fill:
                with anyio.move_on_after(5.0):
                    await self.filled.wait()
            await anyio.sleep(self.delay)
            self.answered += 1
            if kind == "fail":
                return httpx.Response(500, text="Server error: mc1:11211,mc2:11211")
            if kind == "forbidden":
                return httpx.Response(403, text="You are not authorized to perform this action.")
            return httpx.Response(200, content=STATS_BODY)
        finally:
            self.in_flight -= 1


def credentials(count: int) -> list[CacheCredentials]:
    return [CacheCredentials(f"user{i}", f"secret-{i}", cache_id=1000 + i) for i in range(count)]


def fan_out_tasks() -> list[str]:
    """Names of the tasks fan_out started that are still running."""
    return [t.name for t in anyio.get_running_tasks() if "memcachier_async" in str(t.name)]


async def collect(results: AsyncIterator[CacheResult[Any]]) -> list[CacheResult[Any]]:
    return [result async for result in results]


async def stats_of(api: AsyncAnalytics) -> Stats:
    return await api.stats()


async def test_thousand_caches_all_arrive_within_the_limit() -> None:
    """1,000 caches: one result each, and never more than 50 requests in flight (measured)."""
    fake = FakeCaches(fill=50)
    sampled: list[int] = []
    async with fan_out(
        credentials(1000), stats_of, concurrency=50, transport=fake, retry=NO_RETRY
    ) as results:
        received = []
        async for result in results:
            sampled.append(results.in_flight)
            received.append(result)
    assert sorted(r.index for r in received) == list(range(1000))
    assert all(r.ok and isinstance(r.value, Stats) for r in received)
    assert fake.received == 1000
    assert fake.max_in_flight == 50  # the limit was reached, and never passed
    assert max(sampled) <= 50
    assert fan_out_tasks() == []


async def test_default_concurrency_stays_within_the_pool() -> None:
    """Without concurrency=, at most the default pool size (100) is in flight."""
    fake = FakeCaches(fill=100)
    results = await collect(fan_out(credentials(400), stats_of, transport=fake, retry=NO_RETRY))
    assert len(results) == 400
    assert fake.max_in_flight == 100


async def test_failures_are_per_cache() -> None:
    """Failing caches yield their error (with missing servers); the others their stats."""
    behaviour = {f"user{i}": "fail" for i in range(0, 300, 10)}
    behaviour |= {f"user{i}": "forbidden" for i in range(5, 300, 50)}
    fake = FakeCaches(behaviour, delay=0.001)
    results = await collect(
        fan_out(credentials(300), stats_of, concurrency=64, transport=fake, retry=NO_RETRY)
    )
    assert len(results) == 300
    by_index = {r.index: r for r in results}
    for index, result in by_index.items():
        kind = behaviour.get(f"user{index}", "ok")
        if kind == "fail":
            assert isinstance(result.error, ServerError)
            assert result.missing_servers == ("mc1:11211", "mc2:11211")
        elif kind == "forbidden":
            assert isinstance(result.error, PermissionDeniedError)
            assert result.missing_servers == ()
        else:
            assert result.ok
            assert result.missing_servers == ()
    assert sum(r.ok for r in results) == 300 - 30 - 6


async def test_slow_subset_does_not_delay_the_rest() -> None:
    """20 hanging and 30 failing caches: the other 950 all arrive before the deadline ends the 20."""
    hanging = {f"user{i}": "hang" for i in range(0, 1000, 50)}
    failing = {f"user{i}": "fail" for i in range(13, 1000, 33)}
    assert len(hanging) == 20
    assert len(failing) == 30
    assert not hanging.keys() & failing.keys()
    fake = FakeCaches(hanging | failing)
    async with fan_out(
        credentials(1000), stats_of, concurrency=50, deadline=8.0, transport=fake, retry=NO_RETRY
    ) as results:
        order = await collect(results)
    assert len(order) == 1000
    timed_out = [r for r in order if isinstance(r.error, CacheTimeout)]
    assert sorted(r.index for r in timed_out) == sorted(int(u[4:]) for u in hanging)
    assert all(r.error.started for r in timed_out if isinstance(r.error, CacheTimeout))
    # Everything else came first: nothing waited for the hanging caches.
    assert order[-20:] == timed_out
    assert sum(r.ok for r in order) == 1000 - 20 - 30
    assert fake.in_flight == 0


async def test_deadline_reports_targets_never_started() -> None:
    """With one slot held by a hanging cache, the deadline ends it and reports the rest as not started."""
    fake = FakeCaches({"user0": "hang"})
    results = await collect(
        fan_out(
            credentials(5), stats_of, concurrency=1, deadline=0.5, transport=fake, retry=NO_RETRY
        )
    )
    results.sort(key=lambda r: r.index)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    errors = [r.error for r in results]
    assert all(isinstance(e, CacheTimeout) for e in errors)
    assert [e.started for e in errors if isinstance(e, CacheTimeout)] == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert "deadline" in str(errors[1])
    assert fake.received == 1


async def test_timeout_per_call_frees_the_slots() -> None:
    """timeout= ends hanging calls, so the caches queued behind them still run."""
    fake = FakeCaches({"user0": "hang", "user1": "hang"})
    results = await collect(
        fan_out(
            credentials(12), stats_of, concurrency=2, timeout=0.2, transport=fake, retry=NO_RETRY
        )
    )
    assert len(results) == 12
    assert {r.index for r in results if isinstance(r.error, CacheTimeout)} == {0, 1}
    assert sum(r.ok for r in results) == 10


async def test_breaking_out_cancels_the_rest() -> None:
    """Leaving `async with` after 10 of 1,000 results: no task of ours runs, nothing is in flight."""
    fake = FakeCaches(delay=0.05)
    async with fan_out(
        credentials(1000), stats_of, concurrency=20, transport=fake, retry=NO_RETRY
    ) as results:
        seen = 0
        async for _ in results:
            seen += 1
            if seen == 10:
                break
        assert fan_out_tasks() != []
    assert fan_out_tasks() == []
    assert fake.in_flight == 0
    assert fake.received < 1000
    with pytest.raises(StopAsyncIteration):
        await results.__anext__()


async def test_outer_cancellation_cleans_up() -> None:
    """Cancelling the reader (a timeout around the loop) cancels every call of the fan-out."""
    fake = FakeCaches({f"user{i}": "hang" for i in range(1000)})
    with anyio.move_on_after(0.3) as scope:
        async with fan_out(
            credentials(1000), stats_of, concurrency=30, transport=fake, retry=NO_RETRY
        ) as results:
            await collect(results)
    assert scope.cancelled_caught
    assert fake.in_flight == 0
    assert fan_out_tasks() == []


async def test_plain_iteration_cleans_up_when_cancelled() -> None:
    """Without `async with`, a cancelled `async for` still cancels the calls it started."""
    fake = FakeCaches({f"user{i}": "hang" for i in range(100)})
    with anyio.move_on_after(0.3):
        async for _ in fan_out(credentials(100), stats_of, transport=fake, retry=NO_RETRY):
            pass  # pragma: no cover - nothing ever answers
    assert fake.in_flight == 0
    assert fan_out_tasks() == []


async def test_aclose_stops_a_plain_iteration() -> None:
    """aclose() (as in contextlib.aclosing) stops an iteration broken off early."""
    fake = FakeCaches(delay=0.05)
    async with contextlib.aclosing(
        fan_out(credentials(200), stats_of, concurrency=10, transport=fake, retry=NO_RETRY)
    ) as results:
        async for _ in results:
            break
    assert fake.in_flight == 0
    assert fan_out_tasks() == []


async def test_clients_as_targets() -> None:
    """AsyncAnalytics targets are used as they are, and come back as the result's target."""
    fake = FakeCaches({"user1": "fail"})
    clients = [
        AsyncAnalytics(f"user{i}", "pw", cache_id=i, transport=fake, retry=NO_RETRY)
        for i in range(3)
    ]
    try:
        results = {r.index: r for r in await collect(fan_out(clients, stats_of))}
    finally:
        for client in clients:
            await client.aclose()
    assert [results[i].target for i in range(3)] == clients
    assert results[1].missing_servers == ("mc1:11211", "mc2:11211")
    assert results[0].unwrap() == results[2].unwrap()
    with pytest.raises(ServerError):
        results[1].unwrap()


async def test_credential_sets_share_one_client() -> None:
    """Every credential set is served by one pooled httpx.AsyncClient, closed at the end."""
    fake = FakeCaches()
    used: set[int] = set()
    kept: list[httpx.AsyncClient] = []

    async def call(api: AsyncAnalytics) -> str:
        used.add(id(api.http_client))
        kept.append(api.http_client)
        await api.stats()
        return api.username

    results = await collect(fan_out(credentials(5), call, transport=fake, retry=NO_RETRY))
    assert sorted(r.unwrap() for r in results) == [f"user{i}" for i in range(5)]
    assert len(used) == 1
    assert kept[0].is_closed


async def test_pairs_become_credentials_without_the_password() -> None:
    """A (username, password) pair comes back as CacheCredentials; no repr shows the password."""
    fake = FakeCaches({"alice": "fail"})
    (result,) = await collect(
        fan_out([("alice", "s3cret-pw")], stats_of, transport=fake, retry=NO_RETRY)
    )
    assert result.target == CacheCredentials("alice", "s3cret-pw")
    assert "s3cret-pw" not in repr(result)
    assert "s3cret-pw" not in str(result.error)


async def test_login_failures_and_bad_credentials_are_results() -> None:
    """A login answered 401, or a credential the client refuses, is that cache's result."""

    def reject(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text="Invalid username or password.")

    results = await collect(
        fan_out(
            [("ok-name", "pw"), CacheCredentials("", "pw")],
            stats_of,
            transport=httpx.MockTransport(reject),
            retry=NO_RETRY,
        )
    )
    by_index = {r.index: r for r in results}
    assert isinstance(by_index[0].error, AuthenticationError)
    assert isinstance(by_index[1].error, ValueError)


async def test_any_exception_of_the_call_is_isolated() -> None:
    """A bug in the caller's function fails that cache only."""
    fake = FakeCaches()

    async def call(api: AsyncAnalytics) -> str:
        if api.username == "user3":
            raise KeyError("boom")
        await api.stats()
        return api.username

    results = await collect(fan_out(credentials(6), call, transport=fake, retry=NO_RETRY))
    assert {r.index for r in results if r.ok} == {0, 1, 2, 4, 5}
    assert [type(r.error) for r in results if not r.ok] == [KeyError]


async def test_no_targets() -> None:
    """No targets: no results, at once."""
    assert await collect(fan_out([], stats_of)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"deadline": 0}, "deadline"),
        ({"timeout": -1}, "timeout"),
        ({"http_client": httpx.AsyncClient(), "transport": httpx.MockTransport(print)}, "either"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    """Bad limits are refused when fan_out() is called, not later."""
    with pytest.raises(ValueError, match=message):
        fan_out(credentials(1), stats_of, **kwargs)


def test_a_target_of_the_wrong_type_is_refused_without_its_value() -> None:
    """A target that is neither a client nor a credential set is a TypeError naming only its type."""
    with pytest.raises(TypeError, match="not dict") as info:
        fan_out([{"username": "u", "password": "hunter2"}], stats_of)  # type: ignore[list-item]
    assert "hunter2" not in str(info.value)


async def test_iterating_twice_is_an_error() -> None:
    """A fan-out runs once."""
    results = fan_out([], stats_of)
    await collect(results)
    with pytest.raises(RuntimeError, match="once"):
        async with results:
            pass  # pragma: no cover


async def test_results_carry_the_name_of_each_cache() -> None:
    """A result's name is its credential set's name (default: the username), or a client's
    username, so a fleet's results need no mapping of index back to cache."""
    fake = FakeCaches({"u-fail": "fail"})
    client = AsyncAnalytics("u-client", "pw", cache_id=4, transport=fake, retry=NO_RETRY)
    targets = [
        CacheCredentials("u-web", "pw", cache_id=1, name="web"),
        CacheCredentials("u-fail", "pw", cache_id=2, name="sessions"),
        CacheCredentials("u-plain", "pw", cache_id=3),
        client,
    ]
    async with client, fan_out(targets, stats_of, transport=fake, retry=NO_RETRY) as results:
        named = {result.name: result.ok async for result in results}
    assert named == {"web": True, "sessions": False, "u-plain": True, "u-client": True}


@pytest.mark.parametrize("name", ["", 7, None])
def test_a_cache_name_must_be_a_non_empty_string(name: object) -> None:
    """CacheCredentials(name=...) is checked when given, and the error names the argument."""
    with pytest.raises(ValueError, match=r"^name must be a non-empty str$"):
        CacheCredentials("user", "pw", name=name)  # type: ignore[arg-type]


def test_a_pair_target_is_named_by_its_username() -> None:
    """CacheCredentials without a name, or made from a (username, password) pair, is its username."""
    assert CacheCredentials("user", "pw").name == "user"
    assert CacheCredentials("user", "pw", 5, name="web").name == "web"
    assert "pw" not in repr(CacheCredentials("user", "pw", name="web"))
