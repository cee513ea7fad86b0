"""The hand-written fast hooks for stats and history decode exactly as the detailed converter.

The fast converter is what every call uses; the detailed one only explains
failures. They must agree on every input: the same models for a valid
body, and a failure for every body the detailed converter refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memcachier_async import DecodeError, HistoryRecord, Stats
from memcachier_async._convert import _DETAILED, _FAST, _STATS_ORDER, decode

SAMPLES = Path(__file__).parent / "samples"
STATS = json.loads((SAMPLES / "stats_two_servers.json").read_text())
HISTORY = json.loads((SAMPLES / "history.json").read_text())

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    # The edges of the wire's ranges (counters < 2**64, ids < 2**63).
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64 - 1, 2**64]),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


def _outcome(converter: Any, data: Any, cls: Any) -> Any:
    try:
        return ("ok", converter.structure(data, cls))
    except Exception:
        return ("error", None)


def _stats_object() -> st.SearchStrategy[dict[str, Any]]:
    """A stats object: mostly valid, some fields replaced, dropped or added."""
    base = next(iter(STATS.values()))
    return st.builds(
        _mutate,
        st.just(base),
        st.dictionaries(st.sampled_from(_STATS_ORDER), odd_values, max_size=2),
        st.lists(st.sampled_from(_STATS_ORDER), max_size=1),
        st.dictionaries(st.text(min_size=1, max_size=8), odd_values, max_size=2),
    )


def _mutate(
    base: dict[str, Any], replace: dict[str, Any], drop: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    value = {**base, **extra, **replace}
    for name in drop:
        value.pop(name, None)
    return value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _stats_object(), max_size=3))
def test_stats_fast_and_detailed_agree(data: dict[str, Any]) -> None:
    """Any stats body: the fast hooks return what the detailed converter returns, or both fail."""
    assert _outcome(_FAST, data, Stats) == _outcome(_DETAILED, data, Stats)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "memcachier_id": st.one_of(st.just("11"), st.text(max_size=3), odd_values),
                "server": st.one_of(st.just("a.b.c"), odd_values),
                "stats": _stats_object(),
                "timestamp": st.one_of(st.just("1490731541096"), st.text(max_size=4), odd_values),
            }
        ),
        max_size=3,
    )
)
def test_history_fast_and_detailed_agree(data: list[dict[str, Any]]) -> None:
    """Any history body: the fast hooks return what the detailed converter returns, or both fail."""
    cls = list[HistoryRecord]
    assert _outcome(_FAST, data, cls) == _outcome(_DETAILED, data, cls)


def test_unknown_integer_fields_are_kept_in_extra() -> None:
    """A new integer stats field survives the fast path, in extra; a new non-integer one is dropped."""
    server = next(iter(STATS))
    data = {server: {**STATS[server], "new_counter": 5, "new_text": "x"}}
    stats = _FAST.structure(data, Stats)
    assert stats[server].extra["new_counter"] == 5
    assert "new_text" not in stats[server].extra


@pytest.mark.parametrize("cls", [Stats, list[HistoryRecord]])
def test_a_wrong_body_still_says_where(cls: Any) -> None:
    """A failure on the fast path is explained by the detailed converter's field path."""
    if cls is Stats:
        server = next(iter(STATS))
        body = {server: {**STATS[server], "get_hits": "12"}}
    else:
        body = [{**HISTORY[0], "stats": {**HISTORY[0]["stats"], "get_hits": 1.5}}]
    with pytest.raises(DecodeError) as caught:
        decode(json.dumps(body).encode(), cls, "x")
    assert "get_hits" in str(caught.value)


def test_big_body_leaves_the_garbage_collector_as_it_was() -> None:
    """Decoding a body big enough to pause the GC turns it back on, even when decoding fails."""
    import gc

    record = HISTORY[0]
    body = json.dumps([record] * 2000).encode()
    assert len(body) > 256 * 1024
    assert gc.isenabled()
    assert len(decode(body, list[HistoryRecord], "history")) == 2000
    assert gc.isenabled()
    with pytest.raises(DecodeError):
        decode(body[:-1], list[HistoryRecord], "history")
    assert gc.isenabled()
