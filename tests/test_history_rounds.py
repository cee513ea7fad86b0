"""history_series: which records form one sampling time, and each server's clock
checked against the records' timestamps; Baseline.reset.

Written to kill mutants that survived ``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from memcachier_async import HistoryRecord, ServerStats, Stats, history_series
from memcachier_async._insight import COUNTERS, GAUGES, Baseline

EPOCH = 1_700_000_000
BASE = datetime.fromtimestamp(EPOCH, timezone.utc)
RATE = 100  # gets per second


def stats(wall: float, offset: float = 0.0) -> ServerStats:
    """A server ``wall`` seconds in, whose clock is ``offset`` seconds off."""
    counters = dict.fromkeys(COUNTERS, 0)
    counters.update(cmd_get=int(RATE * wall), get_hits=int(RATE * wall))
    gauges = dict.fromkeys(GAUGES, 1)
    moment = datetime.fromtimestamp(EPOCH + wall + offset, timezone.utc)
    return ServerStats(time=moment, **counters, **gauges)  # type: ignore[arg-type]


def record(server: str, at: float, offset: float = 0.0) -> HistoryRecord:
    """``server``'s record sampled ``at`` seconds in."""
    return HistoryRecord(
        memcachier_id=1,  # type: ignore[arg-type]
        server=server,
        stats=stats(at, offset),
        timestamp=BASE + timedelta(seconds=at),  # type: ignore[arg-type]
    )


def test_records_exactly_the_tolerance_apart_are_one_sampling_time() -> None:
    """Two servers' records 1.0 s apart (the default tolerance) are one point, not two."""
    records = [record("a:1", 0), record("b:1", 1.0), record("a:1", 60), record("b:1", 61.0)]
    series = history_series(records)
    assert len(series) == 1
    assert set(series[0].servers) == {"a:1", "b:1"}


def test_records_past_the_default_tolerance_are_separate_sampling_times() -> None:
    """Records 1.5 s apart are two sampling times with the default tolerance of 1 s."""
    records = [record("a:1", 0), record("b:1", 1.5), record("a:1", 60), record("b:1", 61.5)]
    assert len(history_series(records)) == 2
    assert len(history_series(records, tolerance=2.0)) == 1


def test_a_clock_that_jumped_forward_between_records_is_a_clock_step() -> None:
    """A server whose clock moved 560 s between records sampled 60 s apart is a clock step, no rate."""
    records = [record("a:1", 0), record("a:1", 60, offset=500), record("a:1", 120, offset=500)]
    series = history_series(records)
    assert series[0].clock_steps == ("a:1",)
    assert series[0].total.get_rate is None
    assert series[1].clock_steps == ()
    assert series[1].total.get_rate == RATE


def test_the_tolerance_widens_the_clock_check() -> None:
    """A clock 5.5 s off over 10 s is within CLOCK_TOLERANCE plus the 1 s sampling tolerance."""
    records = [record("a:1", 0), record("a:1", 10, offset=5.5)]
    assert history_series(records)[0].clock_steps == ()
    assert history_series(records, tolerance=0.0)[0].clock_steps == ("a:1",)


def test_baseline_reset_makes_the_next_snapshot_a_baseline_again() -> None:
    """After reset(), advance() gives no insight: the snapshot only becomes the new baseline."""
    baseline = Baseline()
    assert baseline.advance(Stats({"a:1": stats(0)}), 0.0, 0.0) is None
    assert baseline.advance(Stats({"a:1": stats(10)}), 10.0, 10.0) is not None
    baseline.reset()
    assert baseline.stats is None
    assert baseline.advance(Stats({"a:1": stats(20)}), 20.0, 20.0) is None
    found = baseline.advance(Stats({"a:1": stats(30)}), 30.0, 30.0)
    assert found is not None
    assert found.total.get_rate == RATE


def test_baseline_flags_a_clock_off_by_more_than_the_tolerance_over_instant_calls() -> None:
    """With calls that take no time, a clock 5.3 s off over 10 s is a step (tolerance 5 s)."""
    baseline = Baseline()
    baseline.advance(Stats({"a:1": stats(0)}), 0.0, 0.0)
    found = baseline.advance(Stats({"a:1": stats(10, offset=5.3)}), 10.0, 10.0)
    assert found is not None
    assert found.clock_steps == ("a:1",)


def test_baseline_widens_the_tolerance_by_half_of_each_calls_length() -> None:
    """Calls of 2 s each add 1 s + 1 s of slack: 6.5 s off passes, 7.5 s off is a step."""
    for offset, stepped in ((6.5, ()), (7.5, ("a:1",))):
        baseline = Baseline()
        baseline.advance(Stats({"a:1": stats(1)}), 0.0, 2.0)
        found = baseline.advance(Stats({"a:1": stats(11, offset=offset)}), 10.0, 12.0)
        assert found is not None
        assert found.clock_steps == stepped, offset


def test_baseline_keeps_a_stalled_servers_older_sample_and_its_wall_time() -> None:
    """A server that sent the same sample again is compared from its older sample and
    that sample's wall time: no false clock step, the full interval's rate."""
    baseline = Baseline()
    baseline.advance(Stats({"a:1": stats(0)}), 0.0, 0.0)
    # The same sample again, decoded afresh (an equal, distinct object).
    stalled = baseline.advance(Stats({"a:1": stats(0)}), 10.0, 10.0)
    assert stalled is not None
    assert stalled.stalled_servers == ("a:1",)
    found = baseline.advance(Stats({"a:1": stats(20)}), 20.0, 20.0)
    assert found is not None
    assert found.clock_steps == ()
    assert found.total.get_rate == RATE
