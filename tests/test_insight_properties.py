"""Property tests of the derived metrics (hypothesis).

A cache's counters are split over a random number of servers that share one
clock. Whatever the split, the cache's metrics must equal those of a single
server holding the summed counters; ratios stay within [0, 1]; and nothing
raises, even on counters that jump around and servers that come and go.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from itertools import pairwise

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memcachier_async import HistoryRecord, ProcessedStats, ServerStats, Stats, history_series
from memcachier_async import insight as compute_insight
from memcachier_async._insight import COUNTERS, GAUGES, PROCESSED_NAMES

EPOCH = 1_500_000_000
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What a server does in a step, from which its counters follow the way
# memcached keeps them: cmd_get = hits + misses, cmd_set includes CAS, ...
EVENTS = (
    "get_hits",
    "get_misses",
    "plain_sets",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "delete_hits",
    "delete_misses",
    "touch_hits",
    "touch_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cmd_flush",
    "auth_cmds",
    "auth_errors",
    "bytes_read",
    "bytes_written",
    "evictions",
    "expired",
    "total_connections",
    "total_items",
)

events = st.fixed_dictionaries({name: st.integers(0, 10_000) for name in EVENTS})
gauges = st.fixed_dictionaries({name: st.integers(0, 2**40) for name in GAUGES})


def counters_after(totals: dict[str, int]) -> dict[str, int]:
    """The memcached counters of a server that has done ``totals`` so far."""
    counters = {name: totals[name] for name in EVENTS if name in COUNTERS}
    counters["cmd_get"] = totals["get_hits"] + totals["get_misses"]
    counters["cmd_set"] = (
        totals["plain_sets"] + totals["cas_hits"] + totals["cas_misses"] + totals["cas_badval"]
    )
    counters["cmd_delete"] = totals["delete_hits"] + totals["delete_misses"]
    counters["cmd_touch"] = totals["touch_hits"] + totals["touch_misses"]
    assert set(counters) == set(COUNTERS)
    return counters


def server(counters: dict[str, int], gauge: dict[str, int], seconds: int) -> ServerStats:
    return ServerStats(time=datetime.fromtimestamp(seconds, timezone.utc), **counters, **gauge)  # type: ignore[arg-type]


@st.composite
def split_cache(draw: st.DrawFn) -> list[Stats]:
    """Snapshots of a cache whose monotonic counters are split over 1-5 servers."""
    n_servers = draw(st.integers(1, 5))
    n_steps = draw(st.integers(2, 4))
    totals = [dict.fromkeys(EVENTS, 0) for _ in range(n_servers)]
    seconds = EPOCH
    snapshots = []
    for _ in range(n_steps):
        seconds += draw(st.integers(1, 3600))
        servers = {}
        for index in range(n_servers):
            step = draw(events)
            totals[index] = {k: totals[index][k] + step[k] for k in EVENTS}
            servers[f"s{index}:11211"] = server(
                counters_after(totals[index]), draw(gauges), seconds
            )
        snapshots.append(Stats(servers))
    return snapshots


def assert_close(a: float | None, b: float | None, name: str) -> None:
    if a is None or b is None:
        assert a is b, name
    else:
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (name, a, b)


def assert_bounded(metrics: ProcessedStats, *, cas_in_requests: bool = True) -> None:
    """Hit rates in [0, 1]; fractions in [0, 1]; everything else finite and >= 0."""
    for name in PROCESSED_NAMES:
        value = getattr(metrics, name)
        if value is None:
            continue
        assert math.isfinite(value), name
        assert value >= 0, name
        # memcached counts CAS in cmd_set; counters that break that rule
        # can make CAS more than all requests.
        if name.endswith("hit_rate") or (
            name.endswith("_fraction") and (cas_in_requests or name != "cas_fraction")
        ):
            assert value <= 1 + 1e-12, name


@SETTINGS
@given(split_cache())
def test_cache_metrics_equal_those_of_summed_counters(snapshots: list[Stats]) -> None:
    """However traffic is split over servers, the cache's metrics are those of the sums,
    and every ratio of every server and of the cache stays within [0, 1]."""
    for before, after in pairwise(snapshots):
        split = compute_insight(before, after)
        summed = compute_insight(Stats({"all": before.total()}), Stats({"all": after.total()}))
        for name in PROCESSED_NAMES:
            assert_close(getattr(split.total, name), getattr(summed.total, name), name)
        for metrics in (split.total, *split.servers.values()):
            assert_bounded(metrics)
            assert metrics.request_rate is not None


@SETTINGS
@given(split_cache())
def test_history_of_a_split_cache_matches_insight(snapshots: list[Stats]) -> None:
    """The history series of the same snapshots gives the same cache metrics as insight()."""
    records = [
        HistoryRecord(
            memcachier_id=1,
            server=name,
            stats=stats,
            timestamp=stats.time,  # type: ignore[arg-type]
        )
        for snapshot in snapshots
        for name, stats in snapshot.items()
    ]
    series = history_series(records)
    assert len(series) == len(snapshots) - 1
    for point, (before, after) in zip(series, pairwise(snapshots), strict=True):
        expected = compute_insight(before, after).total
        for name in PROCESSED_NAMES:
            assert_close(getattr(point.total, name), getattr(expected, name), name)


# --- anything goes ---------------------------------------------------------------

any_counters = st.fixed_dictionaries({name: st.integers(0, 2**63) for name in COUNTERS})


@st.composite
def chaotic_snapshots(draw: st.DrawFn) -> list[Stats]:
    """Counters that drop and jump, clocks that stall or go back, servers that come and go."""
    pool = [f"s{i}:1" for i in range(draw(st.integers(1, 5)))]
    snapshots = []
    for _ in range(draw(st.integers(1, 5))):
        names = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
        servers = {
            name: server(draw(any_counters), draw(gauges), EPOCH + draw(st.integers(-5, 5)))
            for name in names
        }
        snapshots.append(Stats(servers))
    return snapshots


@SETTINGS
@given(chaotic_snapshots())
def test_nothing_raises_on_chaotic_input(snapshots: list[Stats]) -> None:
    """Resets, stalls, clocks going back, churn: no exception, and ratios stay bounded."""
    for before, after in pairwise(snapshots):
        result = compute_insight(before, after)
        for metrics in (result.total, *result.servers.values()):
            assert_bounded(metrics, cas_in_requests=False)
        assert set(result.servers) == set(after)
        assert set(result.vanished_servers) == set(before) - set(after)
        after.memory()
        if after:
            after.total()
    base = datetime.fromtimestamp(EPOCH, timezone.utc)
    records = [
        HistoryRecord(
            memcachier_id=1,
            server=name,
            stats=attrs.evolve(stats),
            timestamp=base + timedelta(seconds=index),  # type: ignore[arg-type]
        )
        for index, snapshot in enumerate(snapshots)
        for name, stats in snapshot.items()
    ]
    for point in history_series(records):
        assert_bounded(point.total, cas_in_requests=False)
