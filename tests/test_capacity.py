"""Capacity advice from history, against values computed by hand.

Every case is a history body as the API sends it, served by respx and read
with ``await api.capacity()`` (on asyncio and trio); the same records given
to the pure ``capacity()`` must give the same answer. Servers sample every
60 s from ``T0``; their own clocks agree with the sampling times unless a
case says otherwise.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import respx

from memcachier_async import (
    AsyncAnalytics,
    Capacity,
    DecodeError,
    HistoryRecord,
    RetryPolicy,
    ServerCapacity,
    ServerError,
    capacity,
    fan_out,
    to_dict,
    to_json,
)
from memcachier_async._convert import structure
from memcachier_async._emulator._sources import STATS_FIELDS

BASE = "https://analytics.memcachier.com/api/v1"
T0 = 1_700_000_000  # Unix seconds of the first sample
MB = 1_000_000
A, B, C = (f"{x}.example.com:11211" for x in "abc")


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def record(server: str, at: int, *, clock: int | None = None, **fields: int) -> dict[str, Any]:
    """One history record of ``server`` sampled ``at`` seconds after T0 (its clock: ``clock``)."""
    stats = dict.fromkeys(STATS_FIELDS, 0)
    stats["limit_maxbytes"] = MB
    stats["time"] = T0 + (at if clock is None else clock)
    stats.update(fields)
    return {
        "memcachier_id": "11",
        "server": server,
        "stats": stats,
        "timestamp": str((T0 + at) * 1000),
    }


def records_of(body: list[dict[str, Any]]) -> list[HistoryRecord]:
    return structure(body, list[HistoryRecord], "history")


async def advice(body: list[dict[str, Any]]) -> Capacity:
    """``api.capacity()`` over ``body``; checked equal to the pure function's answer."""
    with respx.mock(base_url=BASE) as router:
        route = router.get("/1561/history").respond(json=body)
        async with AsyncAnalytics("user", "pw", cache_id=1561, retry=RetryPolicy.disabled()) as api:
            found = await api.capacity()
    assert route.call_count == 1
    # (An empty history's window is the time of the call.)
    assert found == capacity(records_of(body), now=found.window[1])
    return found


def growing(server: str, start: int, rate: int, *, samples: int = 11, **fields: int) -> list[Any]:
    """``bytes`` = start + rate × t at t = 0, 60, ... ; 100-byte items."""
    body = []
    for i in range(samples):
        used = start + rate * 60 * i
        body.append(record(server, 60 * i, bytes=used, curr_items=used // 100, **fields))
    return body


pytestmark = pytest.mark.anyio


async def test_linear_growth_gives_the_slope_and_the_time_until_full() -> None:
    """100 kB + 500 B/s for 10 min: 400 kB of 1 MB used, full in (1 MB - 400 kB) / 500 = 1200 s."""
    found = await advice(growing(A, 100_000, 500))
    server = found.servers[A]
    assert server.fill_rate == pytest.approx(500, rel=0.01)
    assert server.seconds_until_full == pytest.approx(1200, rel=0.01)
    assert (server.used_bytes, server.limit_bytes, server.items) == (400_000, MB, 4000)
    assert (server.evictions, server.eviction_rate, server.first_eviction) == (0, 0.0, None)
    assert server.needed_bytes is None
    assert found.fullest == server
    assert found.seconds_until_full == server.seconds_until_full
    assert found.window == (utc(T0), utc(T0 + 600))
    assert not found.evicting
    assert found.suggested_limit_bytes is None


async def test_flat_usage_never_fills() -> None:
    """Constant bytes: a slope of 0 and no time until full."""
    found = await advice(growing(A, 400_000, 0))
    assert found.servers[A].fill_rate == 0.0
    assert found.servers[A].seconds_until_full is None
    assert found.seconds_until_full is None
    assert found.fullest is not None
    assert found.fullest.server == A


async def test_shrinking_usage_never_fills() -> None:
    """A negative slope is reported as it is, and never gives a time until full."""
    found = await advice(growing(A, 800_000, -100))
    assert found.servers[A].fill_rate == pytest.approx(-100)
    assert found.servers[A].seconds_until_full is None


async def test_full_already_is_zero() -> None:
    """bytes at the limit: 0.0, even while bytes does not grow."""
    found = await advice(growing(A, MB, 0))
    assert found.servers[A].seconds_until_full == 0.0
    assert found.seconds_until_full == 0.0


async def test_evictions_in_the_last_interval_mean_full_whatever_bytes_says() -> None:
    """Half the memory used, flat, but evictions rose between the last two samples: 0.0."""
    body = growing(A, 500_000, 0, samples=3)
    body[-1]["stats"]["evictions"] = 7
    found = await advice(body)
    assert found.servers[A].seconds_until_full == 0.0
    # Evictions earlier in the window only: not full now.
    body.append(record(A, 180, bytes=500_000, curr_items=5000, evictions=7))
    found = await advice(body)
    assert found.servers[A].seconds_until_full is None
    assert found.servers[A].evictions == 7


def restarted_server() -> list[dict[str, Any]]:
    """Before: 50 kB + 1 kB/s, evictions 100 → 106. At t=360 a restart (bytes 0, counters
    from zero), then 200 B/s with evictions 0 → 3."""
    body = []
    for i, evicted in enumerate((100, 100, 100, 103, 103, 106)):
        used = 50_000 + 1000 * 60 * i
        body.append(
            record(
                A, 60 * i, bytes=used, curr_items=used // 100, evictions=evicted, cmd_get=5000 + i
            )
        )
    for i, evicted in enumerate((0, 1, 1, 3, 3)):
        used = 200 * 60 * i
        body.append(
            record(
                A, 360 + 60 * i, bytes=used, curr_items=used // 100, evictions=evicted, cmd_get=i
            )
        )
    return body


async def test_a_restart_starts_a_new_segment_and_evictions_stay_reset_safe() -> None:
    """The slope is the last segment's (200 B/s); evictions: 6 before, 0 at the reset, 3 after."""
    found = await advice(restarted_server())
    server = found.servers[A]
    assert server.fill_rate == pytest.approx(200)
    assert server.used_bytes == 48_000
    assert server.seconds_until_full == pytest.approx((MB - 48_000) / 200)
    assert server.evictions == 9
    assert server.eviction_rate == pytest.approx(9 / 600)
    assert server.first_eviction == utc(T0 + 180)
    assert server.needed_bytes == 48_000 + 9 * (48_000 // 480)


async def test_a_stats_reset_is_not_a_restart() -> None:
    """Counters that drop while the memory stays (a stats reset) keep one segment."""
    body = growing(A, 100_000, 500, cmd_get=0)
    for i, entry in enumerate(body):
        entry["stats"]["cmd_get"] = 1000 + i if i < 5 else i  # dropped at t=300
    found = await advice(body)
    assert found.servers[A].fill_rate == pytest.approx(500)


@pytest.mark.parametrize("rate", [300, 0])
async def test_a_server_clock_step_makes_no_false_slope(rate: int) -> None:
    """The server's clock steps back an hour at t=300: the slope is still the true one."""
    body = growing(A, 100_000, rate)
    for entry in body[5:]:
        entry["stats"]["time"] -= 3600
    found = await advice(body)
    assert found.servers[A].fill_rate == pytest.approx(rate, abs=1e-9)
    if rate == 0:
        assert found.servers[A].seconds_until_full is None


@pytest.mark.parametrize("rate", [300, 0])
async def test_a_sampling_clock_step_makes_no_false_slope(rate: int) -> None:
    """The sampling times jump an hour ahead at t=300 while the server's clock moves 60 s:
    the fit takes each side of the jump on its own, so the slope stays ``rate``."""
    body = []
    for i in range(11):
        used = 100_000 + rate * 60 * i
        at = 60 * i + (3600 if i >= 5 else 0)
        body.append(record(A, at, clock=60 * i, bytes=used, curr_items=used // 100))
    found = await advice(body)
    assert found.servers[A].fill_rate == pytest.approx(rate, abs=1e-9)
    # A fit over the jump would have found far less than 300 B/s.
    assert found.window == (utc(T0), utc(T0 + 600 + 3600))


async def test_evictions_starting_mid_window() -> None:
    """A evicts from t=360 (260 in all) at 990 kB with 9,900 items; B, flat at 300 kB, never.

    needed(A) = 990,000 + 260 × (990,000 // 9,900) = 1,016,000; two servers, so the
    suggested limit is 2 × 1,016,000.
    """
    evicted = (0, 0, 0, 0, 0, 0, 40, 90, 150, 200, 260)
    body = []
    for i, count in enumerate(evicted):
        used = min(990_000, 690_000 + 60_000 * i)
        body.append(record(A, 60 * i, bytes=used, curr_items=used // 100, evictions=count))
        body.append(record(B, 60 * i, bytes=300_000, curr_items=3000))
    found = await advice(body)
    a, b = found.servers[A], found.servers[B]
    assert a.first_eviction == utc(T0 + 360)
    assert a.evictions == 260
    assert a.eviction_rate == pytest.approx(260 / 600)
    assert a.needed_bytes == 1_016_000
    assert a.seconds_until_full == 0.0
    assert (b.evictions, b.first_eviction, b.needed_bytes) == (0, None, None)
    assert found.evicting
    assert found.suggested_limit_bytes == 2 * 1_016_000
    assert found.fullest == a


async def test_no_items_gives_no_needed_bytes() -> None:
    """Evictions with no items left: no mean item size, so no needed_bytes (and no suggestion)."""
    body = [record(A, 0, bytes=0), record(A, 60, bytes=0, evictions=5)]
    found = await advice(body)
    assert found.servers[A].evictions == 5
    assert found.servers[A].needed_bytes is None
    assert found.evicting
    assert found.suggested_limit_bytes is None


async def test_the_fullest_is_the_one_that_fills_first() -> None:
    """A: 400 kB + 500 B/s (1200 s); B: 800 kB + 1000 B/s (200 s); C: 900 kB, flat (never)."""
    body = [
        *growing(A, 100_000, 500),
        *growing(B, 200_000, 1000),
        *growing(C, 900_000, 0),
    ]
    found = await advice(body)
    assert found.fullest is not None
    assert found.fullest.server == B
    assert found.seconds_until_full == pytest.approx(200)
    assert found.servers[C].seconds_until_full is None


async def test_ties_and_servers_not_filling_go_by_usage() -> None:
    """Neither fills: the one with the higher used / limit is the fullest."""
    body = [*growing(A, 300_000, 0), *growing(B, 600_000, 0, limit_maxbytes=2 * MB)]
    body += growing(C, 500_000, 0)
    found = await advice(body)
    assert found.fullest is not None
    assert found.fullest.server == C  # 50 % beats A's 30 % and B's 30 %
    assert found.seconds_until_full is None


async def test_an_empty_history_is_a_capacity_without_servers() -> None:
    """No records: no servers, no fullest, a window at now; not an exception."""
    found = await advice([])
    assert found.servers == {}
    assert found.fullest is None
    assert found.seconds_until_full is None
    assert not found.evicting
    assert found.suggested_limit_bytes is None
    start, end = found.window
    assert start == end
    assert start.utcoffset() == timedelta(0)
    assert abs((datetime.now(timezone.utc) - start).total_seconds()) < 3600


def test_now_is_the_window_of_an_empty_history_and_must_be_aware() -> None:
    """``now`` sets the empty window; a naive datetime is refused, naming the argument."""
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert capacity([], now=moment).window == (moment, moment)
    assert capacity([], now=moment).window[0].tzinfo == timezone.utc
    with pytest.raises(ValueError, match="now"):
        capacity([], now=datetime(2026, 1, 2))


def test_a_single_sample_has_no_rate() -> None:
    """One sample per server: its latest values, no slope, no time until full."""
    found = capacity(records_of([record(A, 0, bytes=1000, curr_items=10)]))
    server = found.servers[A]
    assert (server.used_bytes, server.items, server.fill_rate) == (1000, 10, 0.0)
    assert server.seconds_until_full is None
    assert found.window == (utc(T0), utc(T0))


def test_a_sample_served_twice_counts_once() -> None:
    """The same sample again (its clock did not move) adds no point to the fit."""
    body = growing(A, 100_000, 500, samples=4)
    repeat = json.loads(json.dumps(body[-1]))
    repeat["timestamp"] = str((T0 + 240) * 1000)
    once = capacity(records_of(body))
    twice = capacity(records_of([*body, repeat]))
    assert twice.servers[A] == once.servers[A]


def test_capacity_serialises_like_the_other_models() -> None:
    """to_dict/to_json: servers by name, the window and first_eviction as ISO strings."""
    found = capacity(records_of(restarted_server()))
    data = json.loads(to_json(found))
    assert data["window"] == [utc(T0).isoformat(), utc(T0 + 600).isoformat()]
    assert data["servers"][A]["first_eviction"] == utc(T0 + 180).isoformat()
    assert data["fullest"] == data["servers"][A]
    assert set(data) == {a.name for a in Capacity.__attrs_attrs__}
    assert set(data["servers"][A]) == {a.name for a in ServerCapacity.__attrs_attrs__}
    assert to_dict(found)["suggested_limit_bytes"] == found.suggested_limit_bytes


async def test_fan_out_capacity_keeps_each_caches_failure_its_own() -> None:
    """fan_out(..., AsyncAnalytics.capacity): a history that does not decode and a 500 are
    those caches' errors; the good cache gets its advice."""
    good = growing(A, 100_000, 500)
    with respx.mock(base_url=BASE) as router:
        router.get("/1/history").respond(json=good)
        router.get("/2/history").respond(json=[{"server": A, "stats": {}, "timestamp": "x"}])
        router.get("/3/history").respond(500, text="Server error")
        targets = [
            AsyncAnalytics(f"cache{i}", "pw", cache_id=i, retry=RetryPolicy.disabled())
            for i in (1, 2, 3)
        ]
        async with fan_out(targets, AsyncAnalytics.capacity) as results:
            found = {result.index: result async for result in results}
        for api in targets:
            await api.aclose()
    assert found[0].value == capacity(records_of(good))
    assert isinstance(found[1].error, DecodeError)
    assert isinstance(found[2].error, ServerError)
    assert found[1].value is None
    assert found[2].value is None
