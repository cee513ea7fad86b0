"""A server clock that steps (NTP corrections, a wrong clock set right) never makes a false rate.

A clock that went backwards, or moved far away from the wall time between
two snapshots, starts a new baseline and is named in ``Insight.clock_steps``;
no rate divides counters by an interval they do not cover.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memcachier_async import HistoryRecord, RetryPolicy, ServerStats, Stats, history_series, watch
from memcachier_async import insight as compute_insight
from memcachier_async._insight import CLOCK_TOLERANCE, COUNTERS, GAUGES, Baseline, next_baseline
from memcachier_async.testing import Emulator

EPOCH = 1_700_000_000
RATE = 100  # true gets per second


def sample(wall: int, offset: int, rate: int = RATE) -> ServerStats:
    """A server ``wall`` seconds into the test whose clock is ``offset`` seconds off."""
    counters = dict.fromkeys(COUNTERS, 0)
    counters.update(cmd_get=rate * wall, get_hits=rate * wall)
    gauges = dict.fromkeys(GAUGES, 1)
    moment = datetime.fromtimestamp(EPOCH + wall + offset, timezone.utc)
    return ServerStats(time=moment, **counters, **gauges)  # type: ignore[arg-type]


def test_ntp_step_back_re_baselines_instead_of_a_spike() -> None:
    """The issue's case: -500 s NTP step, 100 gets/s, a sample a minute, no elapsed given.

    The step round names the server in clock_steps and has no rate; every
    later round reports 100/s again (before, 8 rounds had none and then one
    reported 1,350/s)."""
    baseline: Stats | None = None
    reported: list[tuple[float | None, tuple[str, ...]]] = []
    for minute in range(12):
        offset = -500 if minute >= 3 else 0
        current = Stats({"s:1": sample(60 * minute, offset)})
        if baseline is not None:
            change = compute_insight(baseline, current)
            reported.append((change.total.get_rate, change.clock_steps))
        baseline = next_baseline(baseline, current)
    assert reported[2] == (None, ("s:1",))
    assert all(rate == RATE and steps == () for rate, steps in reported[:2] + reported[3:])


def test_forward_jump_is_caught_when_the_wall_time_is_known() -> None:
    """A clock that jumps an hour ahead between two samples a minute apart is a step, given elapsed."""
    before = Stats({"s:1": sample(0, 0), "t:1": sample(0, 0)})
    after = Stats({"s:1": sample(60, 3600), "t:1": sample(60, 0)})
    blind = compute_insight(before, after)
    assert blind.clock_steps == ()  # without the wall time, it cannot tell
    seen = compute_insight(before, after, elapsed=60.0)
    assert seen.clock_steps == ("s:1",)
    assert seen.servers["s:1"].get_rate is None
    assert seen.total.get_rate == RATE  # t:1 alone
    per_server = compute_insight(before, after, elapsed={"s:1": 60.0})
    assert per_server.clock_steps == ("s:1",)


def test_a_stalled_server_is_not_a_clock_step() -> None:
    """The same sample served twice stays 'stalled' (kept as the baseline), not a step."""
    before = Stats({"s:1": sample(0, 0)})
    again = compute_insight(before, before, elapsed=60.0)
    assert again.stalled_servers == ("s:1",)
    assert again.clock_steps == ()


steps = st.one_of(
    st.just(0),
    st.just(0),
    st.integers(-2000, 2000),
    st.integers(-3, 3),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(steps, st.integers(30, 120), st.floats(0, 3)), min_size=2, max_size=12),
    st.integers(1, 3),
)
def test_random_clock_steps_never_reach_a_rate(
    rounds: list[tuple[int, int, float]], servers: int
) -> None:
    """Random clock steps, intervals and call lengths: each rate is the true one within the
    tolerance, a step beyond the tolerance is always named, and no step is named without one."""
    tracker = Baseline()
    wall = 0
    offsets = [0] * servers
    # Each server's clock offset and wall time when its baseline was taken: a
    # stalled server keeps its old baseline, so what a later round sees is
    # every step since that one, over the time since then.
    base_offsets = [0] * servers
    base_walls = [0] * servers
    for number, (step, gap, call) in enumerate(rounds):
        wall += gap
        steps_now = [step if index == number % servers else 0 for index in range(servers)]
        offsets = [o + m for o, m in zip(offsets, steps_now, strict=True)]
        current = Stats(
            {
                f"s{index}:1": sample(wall, offsets[index], RATE * (index + 1))
                for index in range(servers)
            }
        )
        # The server read its clock at ``wall``, somewhere within the call.
        change = tracker.advance(current, wall - call / 2, wall + call / 2)
        if change is None:
            base_offsets, base_walls = list(offsets), [wall] * servers
            continue
        for index in range(servers):
            name = f"s{index}:1"
            if name in change.stalled_servers:
                continue
            moved = [o - b for o, b in zip(offsets, base_offsets, strict=True)]
            interval = wall - base_walls[index]
            base_offsets[index], base_walls[index] = offsets[index], wall
            rate = change.servers[name].get_rate
            allowed = max(CLOCK_TOLERANCE + call, 0.1 * interval)
            if abs(moved[index]) > allowed + 3:
                assert name in change.clock_steps, (moved, change.clock_steps)
            if moved[index] == 0:
                assert name not in change.clock_steps
                assert rate == RATE * (index + 1)
            if rate is not None:
                true_rate = RATE * (index + 1)
                low = true_rate * interval / (interval + allowed + 3)
                high = true_rate * interval / max(1e-9, interval - allowed - 3)
                assert low <= rate <= high, (rate, true_rate, moved)


def test_history_with_a_clock_step_has_no_spike() -> None:
    """history_series checks each server's clock against the sampling timestamps."""
    base = datetime.fromtimestamp(EPOCH, timezone.utc)
    records = [
        HistoryRecord(
            memcachier_id=1,  # type: ignore[arg-type]
            server="s:1",
            stats=sample(60 * minute, -500 if minute >= 3 else 0),
            timestamp=base + timedelta(minutes=minute),  # type: ignore[arg-type]
        )
        for minute in range(8)
    ]
    series = history_series(records)
    rates = [point.total.get_rate for point in series]
    assert rates[2] is None
    assert series[2].clock_steps == ("s:1",)
    assert [r for i, r in enumerate(rates) if i != 2] == [RATE] * 6


@pytest.mark.anyio
async def test_watch_names_a_server_whose_clock_stepped_back() -> None:
    """watch() over an emulator whose clock steps back 500 s: that round names every server in
    clock_steps with no rates; the next round has rates again."""
    offset = 0.0

    def clock() -> float:
        import time

        return time.time() + offset

    emulator = Emulator(clock=clock)
    results = []
    async with watch(
        [emulator.client(retry=RetryPolicy.disabled())], interval=1.1, rounds=4
    ) as poller:
        async for done in poller:
            results.append(done.results[0])
            if done.number == 1:
                offset = -500.0
    changes = [r.insight for r in results]
    assert changes[0] is None
    assert changes[1] is not None
    assert changes[1].clock_steps == ()
    assert changes[2] is not None
    assert set(changes[2].clock_steps) == set(results[2].stats or ())
    assert changes[2].total.get_rate is None
    assert changes[3] is not None
    assert changes[3].clock_steps == ()
    assert changes[3].total.get_rate is not None


def test_insight_has_clock_steps_of_its_own() -> None:
    """clock_steps is a field of its own, empty by default (not folded into stalled_servers)."""
    assert "clock_steps" in attrs.fields_dict(type(compute_insight(Stats({}), Stats({}))))
    assert compute_insight(Stats({}), Stats({})).clock_steps == ()
