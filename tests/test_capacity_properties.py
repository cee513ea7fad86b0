"""Property tests of capacity() (hypothesis): the order of the records does not matter, and
the fill rate is a slope, blind to where the memory started."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memcachier_async import HistoryRecord, capacity
from memcachier_async._convert import structure
from memcachier_async._emulator._sources import STATS_FIELDS

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_700_000_000
LIMIT = 2**30


@st.composite
def histories(draw: st.DrawFn, *, restarts: bool) -> list[dict[str, Any]]:
    """Wire records of 1-3 servers sampled together every 30-120 s; with ``restarts``,
    counters and bytes may drop (a restart or a stats reset), and clocks may step."""
    servers = [f"s{i}.example.com:11211" for i in range(draw(st.integers(1, 3)))]
    rounds = draw(st.integers(1, 10))
    body: list[dict[str, Any]] = []
    for server in servers:
        at = 0
        evictions = draw(st.integers(0, 1000))
        gets = 0
        for _ in range(rounds):
            at += draw(st.integers(30, 120))
            if restarts and draw(st.booleans()):
                evictions, gets = 0, 0
            evictions += draw(st.integers(0, 50))
            gets += draw(st.integers(0, 500))
            step = draw(st.sampled_from([0, 0, 0, -3600, 7200])) if restarts else 0
            stats = dict.fromkeys(STATS_FIELDS, 0)
            stats.update(
                bytes=draw(st.integers(0, LIMIT)),
                curr_items=draw(st.integers(0, 10**6)),
                limit_maxbytes=LIMIT,
                evictions=evictions,
                cmd_get=gets,
                get_hits=gets,
                time=T0 + at + step,
            )
            body.append(
                {
                    "memcachier_id": "11",
                    "server": server,
                    "stats": stats,
                    "timestamp": str((T0 + at) * 1000),
                }
            )
    return body


def records(body: list[dict[str, Any]]) -> list[HistoryRecord]:
    return structure(body, list[HistoryRecord], "history")


NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@SETTINGS
@given(body=histories(restarts=True), data=st.data())
def test_shuffling_the_records_changes_nothing(body: list[dict[str, Any]], data: Any) -> None:
    """Any order of the same records gives the same advice, to the last bit."""
    shuffled = data.draw(st.permutations(body))
    assert capacity(records(shuffled), now=NOW) == capacity(records(body), now=NOW)


@SETTINGS
@given(body=histories(restarts=False), offset=st.integers(1, 2**40))
def test_adding_a_constant_to_bytes_leaves_the_fill_rate(
    body: list[dict[str, Any]], offset: int
) -> None:
    """bytes + c at every sample: every server's fill_rate is the same slope."""
    moved = [{**r, "stats": {**r["stats"], "bytes": r["stats"]["bytes"] + offset}} for r in body]
    before = capacity(records(body)).servers
    after = capacity(records(moved)).servers
    assert set(before) == set(after)
    for name, server in before.items():
        assert after[name].fill_rate == pytest.approx(server.fill_rate, rel=1e-9, abs=1e-9)
