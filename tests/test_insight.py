"""Totals, memory and every derived metric, against values computed by hand.

The fixtures ``insight_before.json`` and ``insight_after.json`` hold one
cache at two moments:

- ``a``: an ordinary interval of 10 s;
- ``b``: restarted (its counters dropped; ``cmd_flush`` went 0 → 1) over 20 s;
- ``c``: its clock did not advance (the same second sampled twice);
- ``d``: vanished; ``e``: new (a baseline only).

The deltas of ``a`` over its 10 s: 100 gets (80 hits, 20 misses), 40 sets of
which 10 CAS (6 hits, 2 misses, 2 bad values), 10 deletes (7/3), 5 touches
(4/1), 4 incr (3/1), 2 decr (1/1), 2 auth commands, 5,000 bytes read,
20,000 written, 5 evictions, 3 expired, 4 connections. Its requests:
100 + 40 + 10 + 5 + 0 + 4 + 2 = 161.

``b`` counts from zero over its 20 s: 50 gets (20 hits, 30 misses), 10
sets, 1 flush, 1 auth command, 1 auth error, 1,000 bytes read, 2,000
written, 2 connections. Its requests: 50 + 10 + 1 = 61.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

from memcachier_async import (
    HistoryRecord,
    Insight,
    ProcessedStats,
    ServerStats,
    Stats,
    history_series,
    insight,
)
from memcachier_async._convert import structure
from memcachier_async._insight import PROCESSED_NAMES, next_baseline

SAMPLES = Path(__file__).parent / "samples"
A, B, C, D, E = (f"{x}.example.com:11211" for x in "abcde")

NOTES_NAMES = """auth_cmds_rate, auth_errors_rate, bytes,
bytes_read_rate, bytes_write_rate, cas_badval_rate, cas_fraction,
cas_hit_rate, cas_rate, connection_rate, connections, decr_fraction,
decr_hit_rate, decr_rate, delete_fraction, delete_hit_rate, delete_rate,
eviction_rate, flush_fraction, flush_rate, get_expired_rate, get_fraction,
get_hit_rate, get_rate, hit_rate, incr_fraction, incr_hit_rate, incr_rate,
items, max_bytes, request_rate, set_fraction, set_rate, touch_fraction,
touch_hit_rate, touch_rate"""


def load(name: str) -> Stats:
    return structure(json.loads((SAMPLES / name).read_text()), Stats, "stats")


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


@pytest.fixture(scope="module")
def before() -> Stats:
    return load("insight_before.json")


@pytest.fixture(scope="module")
def after() -> Stats:
    return load("insight_after.json")


@pytest.fixture(scope="module")
def result(before: Stats, after: Stats) -> Insight:
    return insight(before, after)


def assert_metrics(actual: ProcessedStats, expected: dict[str, Any]) -> None:
    """Every one of the 36 names is given, and each matches (floats within 1e-12)."""
    assert set(expected) == set(PROCESSED_NAMES)
    for name, value in expected.items():
        got = getattr(actual, name)
        if value is None:
            assert got is None, name
        else:
            assert got == pytest.approx(value, rel=1e-12), name


def test_processed_names_are_the_36_of_the_notes() -> None:
    """ProcessedStats has exactly the names NOTES.md lists for processed stats."""
    expected = {name.strip() for name in NOTES_NAMES.replace("\n", " ").split(",")}
    assert len(expected) == 36
    assert set(PROCESSED_NAMES) == expected


def test_total_sums_counters_and_gauges(after: Stats) -> None:
    """total() sums every counter and gauge over the servers; time is the latest clock."""
    total = after.total()
    assert isinstance(total, ServerStats)
    for field in attrs.fields(ServerStats):
        if field.name in ("time", "extra"):
            continue
        assert getattr(total, field.name) == sum(getattr(s, field.name) for s in after.values())
    # By hand: a 1,100 gets + b 50 + c 707 + e 300.
    assert total.cmd_get == 2157
    assert total.bytes == 4500
    assert total.limit_maxbytes == 16000
    assert total.time == utc(1500000010)


def test_total_leaves_unknown_fields_out() -> None:
    """Fields of unknown kind (an 'uptime') are not summed into the totals."""
    stats = load("stats_two_servers.json")
    assert stats["mc1.example.com:11211"].extra == {"uptime": 12345}
    assert stats.total().extra == {}


def test_total_of_no_servers_is_an_error() -> None:
    """A cache without servers has no totals to make up."""
    with pytest.raises(ValueError, match="without servers"):
        Stats({}).total()


def test_memory_overall_and_fullest(after: Stats) -> None:
    """memory() and fullest(): 4,500 of 16,000 bytes overall, b is the fullest at 75 %."""
    memory = after.memory()
    assert (memory.used, memory.limit) == (4500, 16000)
    assert memory.usage == pytest.approx(0.28125)
    assert memory.fullest is not None
    assert memory.fullest.server == B
    assert (memory.fullest.used, memory.fullest.limit) == (3000, 4000)
    assert memory.fullest.usage == pytest.approx(0.75)
    assert after.fullest() == memory.fullest


def test_memory_of_no_servers_and_zero_limits() -> None:
    """No servers: nothing used, no ratio, no fullest; a zero limit gives no ratio."""
    empty = Stats({}).memory()
    assert (empty.used, empty.limit, empty.usage, empty.fullest) == (0, 0, None, None)
    stats = load("insight_idle_after.json")
    server = next(iter(stats.values()))
    zero = Stats({"z:1": attrs.evolve(server, limit_maxbytes=0, bytes=10)})
    memory = zero.memory()
    assert memory.usage is None
    assert memory.fullest is not None
    assert memory.fullest.usage is None


def test_server_sets(result: Insight) -> None:
    """New, vanished and stalled servers are named; resets name the counters that dropped."""
    assert result.new_servers == (E,)
    assert result.vanished_servers == (D,)
    assert result.stalled_servers == (C,)
    assert set(result.servers) == {A, B, C, E}
    assert set(result.resets) == {B}
    # Every counter of b dropped but cmd_flush (0 → 1) and the ones at 0 before.
    assert "cmd_get" in result.resets[B]
    assert "cmd_flush" not in result.resets[B]
    assert result.start == utc(1499999990)
    assert result.end == utc(1500000010)
    assert result.seconds == 20.0


def test_cache_metrics_by_hand(result: Insight) -> None:
    """The whole cache: rates add a's (÷10 s) and b's (÷20 s); c, d and e add no traffic."""
    request_rate = 161 / 10 + 61 / 20  # 19.15
    assert_metrics(
        result.total,
        {
            # gauges of a, b, c and e as they are now
            "bytes": 4500.0,
            "items": 45.0,
            "connections": 7.0,
            "max_bytes": 16000.0,
            # rates
            "get_rate": 100 / 10 + 50 / 20,
            "set_rate": 40 / 10 + 10 / 20,
            "delete_rate": 10 / 10,
            "touch_rate": 5 / 10,
            "flush_rate": 1 / 20,
            "incr_rate": 4 / 10,
            "decr_rate": 2 / 10,
            "cas_rate": 10 / 10,
            "cas_badval_rate": 2 / 10,
            "request_rate": request_rate,
            "auth_cmds_rate": 2 / 10 + 1 / 20,
            "auth_errors_rate": 1 / 20,
            "bytes_read_rate": 5000 / 10 + 1000 / 20,
            "bytes_write_rate": 20000 / 10 + 2000 / 20,
            "eviction_rate": 5 / 10,
            "get_expired_rate": 3 / 10,
            "connection_rate": 4 / 10 + 2 / 20,
            # hit rates: summed hits over summed lookups, never averaged
            "get_hit_rate": (80 + 20) / (80 + 20 + 20 + 30),
            "cas_hit_rate": 6 / 8,
            "delete_hit_rate": 7 / 10,
            "touch_hit_rate": 4 / 5,
            "incr_hit_rate": 3 / 4,
            "decr_hit_rate": 1 / 2,
            "hit_rate": (100 + 6 + 7 + 4 + 3 + 1)
            / (100 + 6 + 7 + 4 + 3 + 1 + 50 + 2 + 3 + 1 + 1 + 1),
            # fractions: the cache's rates over its request rate
            "get_fraction": 12.5 / request_rate,
            "set_fraction": 4.5 / request_rate,
            "delete_fraction": 1.0 / request_rate,
            "touch_fraction": 0.5 / request_rate,
            "flush_fraction": 0.05 / request_rate,
            "incr_fraction": 0.4 / request_rate,
            "decr_fraction": 0.2 / request_rate,
            "cas_fraction": 1.0 / request_rate,
        },
    )


def test_hit_rate_is_not_an_average_of_server_hit_rates(result: Insight) -> None:
    """a hits 80 %, b 40 %: the cache's 100/150 is not their mean (60 %)."""
    a, b = result.servers[A].get_hit_rate, result.servers[B].get_hit_rate
    assert (a, b) == (pytest.approx(0.8), pytest.approx(0.4))
    assert result.total.get_hit_rate == pytest.approx(2 / 3)


def test_server_a_by_hand(result: Insight) -> None:
    """Server a alone, over its own 10 s."""
    assert_metrics(
        result.servers[A],
        {
            "bytes": 1000.0,
            "items": 10.0,
            "connections": 3.0,
            "max_bytes": 4000.0,
            "get_rate": 10.0,
            "set_rate": 4.0,
            "delete_rate": 1.0,
            "touch_rate": 0.5,
            "flush_rate": 0.0,
            "incr_rate": 0.4,
            "decr_rate": 0.2,
            "cas_rate": 1.0,
            "cas_badval_rate": 0.2,
            "request_rate": 16.1,
            "auth_cmds_rate": 0.2,
            "auth_errors_rate": 0.0,
            "bytes_read_rate": 500.0,
            "bytes_write_rate": 2000.0,
            "eviction_rate": 0.5,
            "get_expired_rate": 0.3,
            "connection_rate": 0.4,
            "get_hit_rate": 0.8,
            "cas_hit_rate": 0.75,
            "delete_hit_rate": 0.7,
            "touch_hit_rate": 0.8,
            "incr_hit_rate": 0.75,
            "decr_hit_rate": 0.5,
            "hit_rate": 101 / (101 + 28),
            "get_fraction": 100 / 161,
            "set_fraction": 40 / 161,
            "delete_fraction": 10 / 161,
            "touch_fraction": 5 / 161,
            "flush_fraction": 0.0,
            "incr_fraction": 4 / 161,
            "decr_fraction": 2 / 161,
            "cas_fraction": 10 / 161,
        },
    )


def test_server_after_reset_counts_from_zero(result: Insight) -> None:
    """b restarted: its new counter values are the deltas, over its own 20 s."""
    b = result.servers[B]
    assert b.get_rate == pytest.approx(2.5)
    assert b.flush_rate == pytest.approx(0.05)
    assert b.get_hit_rate == pytest.approx(0.4)
    # No CAS, delete, touch, incr or decr on b: those hit rates are undefined.
    assert b.cas_hit_rate is None
    assert b.delete_hit_rate is None
    assert b.hit_rate == pytest.approx(20 / 50)
    assert b.request_rate == pytest.approx(61 / 20)


@pytest.mark.parametrize("server", [C, E])
def test_stalled_and_new_servers_have_gauges_only(result: Insight, server: str) -> None:
    """A server without an interval (clock stood still, or first seen) has gauges and no rates."""
    metrics = result.servers[server]
    gauges = {"bytes", "items", "connections", "max_bytes"}
    for name in PROCESSED_NAMES:
        assert (getattr(metrics, name) is not None) == (name in gauges), name


def test_zero_traffic() -> None:
    """60 s without traffic: rates are 0, hit rates and fractions undefined, no error."""
    idle = insight(load("insight_idle_before.json"), load("insight_idle_after.json"))
    for metrics in (idle.total, *idle.servers.values()):
        for name in PROCESSED_NAMES:
            value = getattr(metrics, name)
            if name.endswith(("hit_rate", "_fraction")):
                assert value is None, name
            elif name in ("bytes", "items", "connections", "max_bytes"):
                assert value is not None, name
                assert value > 0, name
            else:
                assert value == 0.0, name
    assert idle.seconds == 60.0


def test_same_snapshot_twice_has_no_interval(before: Stats) -> None:
    """Comparing a snapshot with itself: every server stalled, no rates, no start or end."""
    same = insight(before, before)
    assert set(same.stalled_servers) == set(before)
    assert same.total.get_rate is None
    assert same.total.hit_rate is None
    assert same.total.bytes == 5000.0
    assert (same.start, same.end, same.seconds) == (None, None, None)


def test_next_baseline_keeps_a_stalled_servers_older_sample(before: Stats, after: Stats) -> None:
    """The next comparison starts from c's older sample, and drops the vanished d."""
    baseline = next_baseline(before, after)
    assert set(baseline) == {A, B, C, E}
    assert baseline[C] is before[C]
    assert baseline[A] is after[A]
    assert next_baseline(None, after) is after
    assert next_baseline(before, before) is before


# --- history ----------------------------------------------------------------


def history_records() -> list[HistoryRecord]:
    """Three sampling times of a and b, 60 s apart, given out of order and interleaved.

    b's second record lands 2 ms after a's; b restarts before the third.
    """
    template = load("insight_idle_before.json")["idle.example.com:11211"]
    t0 = 1490731500

    def record(server: str, at_ms: int, seconds: int, gets: int, hits: int) -> HistoryRecord:
        stats = attrs.evolve(
            template, time=utc(seconds), cmd_get=gets, get_hits=hits, get_misses=gets - hits
        )
        moment = datetime.fromtimestamp(at_ms / 1000, timezone.utc)
        return HistoryRecord(memcachier_id=11, server=server, stats=stats, timestamp=moment)

    ms = t0 * 1000
    return [
        record("b", ms + 60_002, t0 + 61, 200, 100),
        record("a", ms, t0, 1000, 900),
        record("b", ms, t0 + 1, 100, 50),
        record("a", ms + 60_000, t0 + 60, 1600, 1440),
        record("a", ms + 120_000, t0 + 120, 1900, 1710),
        record("b", ms + 120_000, t0 + 121, 30, 0),
    ]


def test_history_series_by_hand() -> None:
    """n sampling times give n - 1 points; each server uses its own clock; a reset counts from 0."""
    series = history_series(history_records())
    assert len(series) == 2
    first, second = series
    t0 = 1490731500
    assert first.start == datetime.fromtimestamp(t0, timezone.utc)
    assert first.end == datetime.fromtimestamp(t0 + 60.002, timezone.utc)
    assert second.start == first.end
    # a: 600 gets (540 hits) in 60 s; b: 100 gets (50 hits) in 60 s.
    assert first.total.get_rate == pytest.approx(600 / 60 + 100 / 60)
    assert first.total.get_hit_rate == pytest.approx((540 + 50) / 700)
    # a: 300 gets (270 hits); b restarted: 30 gets, no hits.
    assert second.total.get_rate == pytest.approx(300 / 60 + 30 / 60)
    assert second.total.get_hit_rate == pytest.approx(270 / 330)
    assert second.resets == {"b": ("cmd_get", "get_hits", "get_misses")}
    chart = [(point.end, point.total.hit_rate) for point in series]
    assert [value for _, value in chart] == [pytest.approx(590 / 700), pytest.approx(270 / 330)]


def test_history_series_of_the_reference_sample() -> None:
    """The reference's history (a and d sampled, then a alone 60 s later) gives one point for a."""
    from memcachier_async._convert import decode

    records = decode((SAMPLES / "history.json").read_bytes(), list[HistoryRecord], "history")
    (point,) = history_series(records)
    assert set(point.servers) == {"a.b.c.totallyaserver.memcachier.com"}
    assert point.seconds == 60.0
    assert point.total.get_rate == 0.0
    assert point.total.hit_rate is None


def test_history_server_missing_one_sampling_time() -> None:
    """A server absent from one sampling time is compared with its last record when it returns."""
    records = [r for r in history_records() if not (r.server == "b" and r.stats.cmd_get == 200)]
    first, second = history_series(records)
    assert set(first.servers) == {"a"}
    # b: from its first record (t0 + 1) to its third (t0 + 121), after a restart.
    assert second.servers["b"].get_rate == pytest.approx(30 / 120)


def test_history_series_empty_and_single() -> None:
    """No records, or a single sampling time, give no points."""
    assert history_series([]) == []
    first_time = [r for r in history_records() if r.stats.cmd_get in (1000, 100)]
    assert len(first_time) == 2
    assert history_series(first_time) == []


def test_str_of_an_insight_shows_the_headline_figures(result: Insight) -> None:
    """print(insight) gives the interval and the cache's rates, hit rate and gauges."""
    total = result.total
    assert total.request_rate is not None
    assert total.hit_rate is not None
    text = str(result)
    assert text.startswith(f"over {result.seconds:.0f} s: ")
    assert f"{total.request_rate:.1f} requests/s" in text
    assert f"hit rate {total.hit_rate:.1%}" in text
    assert "n/a" not in text


def test_str_of_an_insight_without_an_interval_says_so(before: Stats) -> None:
    """The same snapshot twice (every clock stalled) prints, with n/a for every rate."""
    same = insight(before, before)
    assert same.total.request_rate is None
    text = str(same)
    assert text.startswith(f"no interval yet ({len(before)} of {len(before)} servers): ")
    assert "n/a requests/s, hit rate n/a, n/a evictions/s" in text
    assert str(same.total) in text


def test_str_of_processed_stats_never_fails_on_unknown_values() -> None:
    """A ProcessedStats with nothing known prints n/a where f"{None:.1f}" would raise."""
    assert str(ProcessedStats()) == (
        "n/a requests/s, hit rate n/a, n/a evictions/s, n/a items, n/a bytes"
    )
