"""watch() / Poller: rounds on a fixed cadence, insight per cache, bounded memory.

The caches are faked by an httpx transport. Each call of a cache reports
10 more gets (8 hits) and a server clock 10 s later, so every interval has
a get rate of 1/s and a hit rate of 0.8. On trio the tests run on trio's
MockClock (time jumps when every task waits), so cadence is checked
exactly; on asyncio they use the real clock with short intervals and
margins of half an interval.
"""

from __future__ import annotations

import base64
import gc
import json
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trio.testing

from memcachier_async import (
    AsyncAnalytics,
    CacheCredentials,
    Insight,
    PollRound,
    ProcessedStats,
    RetryPolicy,
    ServerError,
    ServerStats,
    Stats,
    watch,
)

pytestmark = pytest.mark.anyio

NO_RETRY = RetryPolicy.disabled()
TEMPLATE = json.loads((Path(__file__).parent / "samples" / "insight_idle_before.json").read_text())[
    "idle.example.com:11211"
]
EPOCH = 1_500_000_000


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio on the real clock; trio on a MockClock that jumps when all tasks wait."""
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {})


@pytest.fixture(autouse=True)
def compressed_server_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's server clock runs 10 s per call, much faster than these short intervals;
    the clock-step check (tests/test_clock_steps.py) would rightly call that a jump."""
    monkeypatch.setattr("memcachier_async._insight.CLOCK_TOLERANCE", 1e9)


@pytest.fixture
def interval(anyio_backend: Any) -> float:
    """One interval: 1 s of mock time on trio, 0.1 s of real time on asyncio."""
    return 1.0 if anyio_backend[0] == "trio" else 0.1


def username_of(request: httpx.Request) -> str:
    token = request.headers["authorization"].partition(" ")[2]
    return base64.b64decode(token).decode().partition(":")[0]


def stats_body(calls: int) -> bytes:
    server = dict(TEMPLATE)
    server.update(
        cmd_get=10 * calls, get_hits=8 * calls, get_misses=2 * calls, time=EPOCH + 10 * calls
    )
    return json.dumps({"s1:11211": server}).encode()


class FakeCaches(httpx.AsyncBaseTransport):
    """Stats by username; ``slow`` maps a username to the seconds its calls take."""

    def __init__(self, slow: dict[str, float] | None = None) -> None:
        self.slow = slow or {}
        self.failing: set[str] = set()
        self.started: defaultdict[str, list[float]] = defaultdict(list)
        self.busy: defaultdict[str, int] = defaultdict(int)
        self.most_busy: defaultdict[str, int] = defaultdict(int)

    @property
    def in_flight(self) -> int:
        return sum(self.busy.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        user = username_of(request)
        self.started[user].append(anyio.current_time())
        calls = len(self.started[user])
        self.busy[user] += 1
        self.most_busy[user] = max(self.most_busy[user], self.busy[user])
        try:
            await anyio.sleep(self.slow.get(user, 0.0))
            if user in self.failing:
                return httpx.Response(500, text="Server error: s1:11211")
            return httpx.Response(200, content=stats_body(calls))
        finally:
            self.busy[user] -= 1


def caches(*names: str) -> list[CacheCredentials]:
    return [CacheCredentials(name, "pw", cache_id=i) for i, name in enumerate(names)]


def our_tasks() -> list[str]:
    return [t.name for t in anyio.get_running_tasks() if "memcachier_async" in str(t.name)]


async def test_rounds_carry_stats_and_insight(interval: float) -> None:
    """The first round is a baseline; each later one has the insight since the one before."""
    fake = FakeCaches()
    rounds: list[PollRound] = []
    async with watch(
        caches("a", "b", "c"), interval, rounds=4, transport=fake, retry=NO_RETRY
    ) as poller:
        async for polled in poller:
            rounds.append(polled)
    assert [r.number for r in rounds] == [0, 1, 2, 3]
    start = rounds[0].due
    assert [r.due for r in rounds] == [start + n * interval for n in range(4)]
    first = rounds[0].results
    assert [r.status for r in first] == ["ok"] * 3
    assert all(r.insight is None and r.stats is not None for r in first)
    for polled in rounds[1:]:
        assert polled.count("ok") == 3
        for result in polled.results:
            assert result.insight is not None
            assert result.insight.total.get_rate == pytest.approx(1.0)
            assert result.insight.total.get_hit_rate == pytest.approx(0.8)
            assert result.insight.seconds == 10.0
    assert [r.target.username for r in rounds[-1].results] == ["a", "b", "c"]
    assert fake.in_flight == 0
    assert our_tasks() == []


async def test_cadence_is_kept_with_a_slow_cache(interval: float) -> None:
    """A cache taking 2.5 intervals is skipped while busy; the others keep the grid, no drift."""
    fake = FakeCaches(slow={"slow": 2.5 * interval})
    rounds: list[PollRound] = []
    async for polled in watch(
        caches("fast1", "slow", "fast2"), interval, rounds=8, transport=fake, retry=NO_RETRY
    ):
        rounds.append(polled)
    assert [r.number for r in rounds] == list(range(8))
    start = rounds[0].due
    for name in ("fast1", "fast2"):
        assert len(fake.started[name]) == 8
        for number, started in enumerate(fake.started[name]):
            due = start + number * interval
            assert due <= started < due + interval / 2, (name, number)
    # The slow cache is called at rounds 0, 3 and 6 only, each on time.
    assert len(fake.started["slow"]) == 3
    for number, started in zip((0, 3, 6), fake.started["slow"], strict=True):
        due = start + number * interval
        assert due <= started < due + interval / 2, number
    assert fake.most_busy["slow"] == 1  # never two calls at once
    slow = [r.results[1] for r in rounds]
    assert [r.skipped for r in slow] == [False, True, True, False, True, True, False, True]
    assert [r.status for r in slow] == [
        "pending",
        "pending",
        "ok",
        "pending",
        "pending",
        "ok",
        "pending",
        "pending",
    ]
    second = slow[5].insight
    assert second is not None
    assert second.total.get_rate == pytest.approx(1.0)
    assert all(r.results[0].status == "ok" for r in rounds)
    assert [r.skipped for r in rounds] == [0, 1, 1, 0, 1, 1, 0, 1]


async def test_a_failing_cache_keeps_its_latest_stats(interval: float) -> None:
    """Failed rounds report the error and the last good stats; the next insight spans the gap."""
    fake = FakeCaches()
    results = []
    async with watch(
        caches("flaky", "steady"), interval, rounds=5, transport=fake, retry=NO_RETRY
    ) as poller:
        async for polled in poller:
            results.append(polled.results[0])
            if polled.number == 1:
                fake.failing.add("flaky")
            if polled.number == 3:
                fake.failing.discard("flaky")
    assert [r.status for r in results] == ["ok", "ok", "failed", "failed", "ok"]
    good = results[1].stats
    assert good is not None
    for failed in results[2:4]:
        assert isinstance(failed.error, ServerError)
        assert failed.missing_servers == ("s1:11211",)
        assert failed.stats is good
        assert failed.insight is None
    recovered = results[4].insight
    assert recovered is not None
    assert recovered.seconds == 30.0  # since the last good snapshot, 3 calls ago
    assert recovered.total.get_rate == pytest.approx(1.0)


async def test_a_slow_reader_skips_rounds_and_keeps_the_grid(interval: float) -> None:
    """A reader that takes 2.3 intervals per round sees rounds 0, 2, 4: due times never shift."""
    fake = FakeCaches()
    numbers = []
    async with watch(caches("a"), interval, rounds=3, transport=fake, retry=NO_RETRY) as poller:
        async for polled in poller:
            numbers.append(polled.number)
            await anyio.sleep(2.3 * interval)
    assert numbers == [0, 2, 4]
    start = fake.started["a"][0]
    for number, started in zip(numbers, fake.started["a"], strict=True):
        assert started >= start + number * interval - 1e-9


def live(*classes: type) -> int:
    """How many objects of these classes are alive."""
    return sum(1 for o in gc.get_objects() if isinstance(o, classes))


def traced_in_package(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes allocated by code of the package (attrs' generated __init__ included)."""
    ours = snapshot.filter_traces([tracemalloc.Filter(True, "*memcachier_async*")])
    return sum(stat.size for stat in ours.statistics("filename"))


async def test_memory_stays_constant_over_100_rounds(anyio_backend: Any) -> None:
    """100 rounds of 2 caches: as many snapshots alive at round 100 as at 20, and no memory kept."""
    fake = FakeCaches()
    interval = 1.0 if anyio_backend[0] == "trio" else 0.01
    objects: dict[int, int] = {}
    kept = -1
    try:
        async with watch(
            caches("a", "b"), interval, rounds=100, transport=fake, retry=NO_RETRY
        ) as poller:
            count = 0
            async for polled in poller:
                count += 1
                assert polled.count("failed") == 0, [r.error for r in polled.results]
                if count in (20, 100):
                    del polled
                    gc.collect()
                    objects[count] = live(Stats, ServerStats, Insight, ProcessedStats)
                    assert len(poller.snapshots()) == 2
                if count == 20:
                    # From here on, whatever the package allocates and keeps is traced.
                    tracemalloc.start()
                if count == 100:
                    kept = traced_in_package(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    assert count == 100
    # Not growing: a leak of one snapshot per round would add 80 x 2 x 4
    # objects. The count can differ by a few between the two moments (a call
    # of the next round already decoded, or not yet), hence the small slack.
    assert objects[100] <= objects[20] + 8, objects
    # Keeping every snapshot and insight would be some 80 x 2 x 3 kB; what
    # stays is the last snapshots and the decoder's bounded cache of
    # timestamps (10-30 kB here, more if its dict happens to resize).
    assert 0 <= kept < 100_000, kept


async def test_leaving_early_cancels_calls_in_flight(interval: float) -> None:
    """Leaving `async with` while a slow call runs cancels it; no task of ours is left."""
    fake = FakeCaches(slow={"slow": 100 * interval})
    async with watch(caches("fast", "slow"), interval, transport=fake, retry=NO_RETRY) as poller:
        async for polled in poller:
            if polled.number == 2:
                break
    assert fake.in_flight == 0
    assert our_tasks() == []
    with pytest.raises(StopAsyncIteration):
        await poller.__anext__()


async def test_clients_as_targets(interval: float) -> None:
    """AsyncAnalytics clients are polled as they are, and not closed by the poller."""
    fake = FakeCaches()
    client = AsyncAnalytics("c", "pw", cache_id=7, transport=fake, retry=NO_RETRY)
    async with client:
        rounds = [r async for r in watch([client], interval, rounds=2)]
        assert rounds[1].results[0].target is client
        assert rounds[1].results[0].insight is not None
        assert not client.http_client.is_closed


async def test_no_rounds_asked() -> None:
    """rounds=0 yields nothing."""
    assert [r async for r in watch(caches("a"), 1.0, rounds=0)] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": float("inf")}, "interval"),
        ({"interval": 1.0, "rounds": -1}, "rounds"),
        ({"interval": 1.0, "concurrency": 0}, "concurrency"),
        ({"interval": 1.0, "timeout": 0}, "timeout"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    """Bad settings are refused when watch() is called."""
    with pytest.raises(ValueError, match=message):
        watch(caches("a"), **kwargs)


def test_repr_has_no_password() -> None:
    """Neither the poller nor a credential set shows the password."""
    poller = watch([("user", "hunter2-secret")], 5.0)
    assert "hunter2-secret" not in repr(poller)
    assert "hunter2-secret" not in repr(CacheCredentials("user", "hunter2-secret"))


async def test_rounds_carry_names_and_their_wall_clock_time(interval: float) -> None:
    """Each result is named after its cache; each round carries the aware UTC time its calls
    started, beside the monotonic due time, in order and within the poll's wall-clock span."""
    from datetime import datetime, timezone

    fake = FakeCaches()
    targets = [CacheCredentials("a", "pw", cache_id=1, name="web"), ("b", "pw")]
    before = datetime.now(timezone.utc)
    rounds = [
        polled
        async for polled in watch(targets, interval, rounds=3, transport=fake, retry=NO_RETRY)
    ]
    after = datetime.now(timezone.utc)
    assert [[r.name for r in polled.results] for polled in rounds] == [["web", "b"]] * 3
    times = [polled.taken_at for polled in rounds]
    assert all(t.tzinfo is timezone.utc for t in times)
    assert before <= times[0] <= times[1] <= times[2] <= after
