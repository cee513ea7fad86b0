"""The fast paths for stats and history decode exactly as the detailed converter.

Two fast paths: the hand-written cattrs hooks (parsed JSON → models) and,
with msgspec installed, bytes → models in C (``_fast_json``). The detailed
converter only explains failures. They must agree on every input: the same
models for a valid body, and a failure for every body the detailed
converter refuses. The msgspec path may refuse more (it then hands the body
to the converter), never accept more or decode differently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memcachier_async import DecodeError, HistoryRecord, Stats
from memcachier_async._convert import (
    _DETAILED,
    _FAST,
    _FAST_BYTES,
    _STATS_ORDER,
    _loads,
    decode,
)

SAMPLES = Path(__file__).parent / "samples"
STATS = json.loads((SAMPLES / "stats_two_servers.json").read_text())
HISTORY = json.loads((SAMPLES / "history.json").read_text())

# Where the wire's ranges end: 64-bit counters, 63-bit ids, the year 9999.
EDGES = [
    -1,
    0,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    253_402_300_799,
    253_402_300_800,
]

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGES),
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


def _bytes_agree(data: Any, cls: Any) -> None:
    """The msgspec path decodes ``data``'s JSON as the detailed converter does, or refuses it;
    ``decode`` as a whole agrees with the detailed converter either way."""
    body = json.dumps(data).encode()
    try:
        # What the fallback sees: the body as the installed JSON parser reads it
        # (orjson reads an integer past 64 bits as a float, json.loads does not).
        parsed = _loads(body)
    except ValueError:
        expected: Any = ("error", None)
    else:
        expected = _outcome(_DETAILED, parsed, cls)
    fast = _FAST_BYTES[cls](body)
    if fast is not None:
        assert ("ok", fast) == expected
    try:
        whole = ("ok", decode(body, cls, "x"))
    except DecodeError:
        whole = ("error", None)
    assert whole == expected


def _stats_object() -> st.SearchStrategy[dict[str, Any]]:
    """A stats object: mostly valid, some fields replaced, dropped or added."""
    # The documented 31 fields; unknown ones come from the last argument.
    base = {k: v for k, v in next(iter(STATS.values())).items() if k in _STATS_ORDER}
    return st.builds(
        _mutate,
        st.just(base),
        st.dictionaries(st.sampled_from(_STATS_ORDER), odd_values, max_size=2),
        st.lists(st.sampled_from(_STATS_ORDER), max_size=1),
        st.dictionaries(st.text(min_size=1, max_size=8), odd_values, max_size=2),
    )


def _digit_strings() -> st.SearchStrategy[str]:
    """Strings of digits around the limits: 18-20 digits, leading zeros, the last millisecond."""
    edges = [str(n) for n in (*EDGES, 253_402_300_799_000, 253_402_300_799_001)]
    return st.one_of(
        st.sampled_from(["0", "0012", "9" * 18, "9" * 19, "9" * 20, *edges]),
        st.from_regex(r"\A[0-9]{1,21}\Z"),
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
    _bytes_agree(data, Stats)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "memcachier_id": st.one_of(
                    st.just("11"), st.text(max_size=3), _digit_strings(), odd_values
                ),
                "server": st.one_of(st.just("a.b.c"), odd_values),
                "stats": _stats_object(),
                "timestamp": st.one_of(
                    st.just("1490731541096"), st.text(max_size=4), _digit_strings(), odd_values
                ),
            }
        ),
        max_size=3,
    )
)
def test_history_fast_and_detailed_agree(data: list[dict[str, Any]]) -> None:
    """Any history body: the fast hooks return what the detailed converter returns, or both fail."""
    cls = list[HistoryRecord]
    assert _outcome(_FAST, data, cls) == _outcome(_DETAILED, data, cls)
    _bytes_agree(data, cls)


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


def test_msgspec_path_takes_the_usual_bodies() -> None:
    """Bodies as the API documents them decode on the msgspec path (not the fallback)."""
    # The sample's first server has a field the SDK does not know ("uptime",
    # for extra); the documented stats object has exactly the 31 known ones.
    documented = {server: {k: stats[k] for k in _STATS_ORDER} for server, stats in STATS.items()}
    history_body = (SAMPLES / "history.json").read_bytes()
    stats = _FAST_BYTES[Stats](json.dumps(documented).encode())
    history = _FAST_BYTES[list[HistoryRecord]](history_body)
    assert stats == _DETAILED.structure(documented, Stats)
    assert history == _DETAILED.structure(HISTORY, list[HistoryRecord])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"new_counter": 5}, "an unknown field belongs in extra"),
        ({"get_hits": 2**63}, "a counter past msgspec's signed 64-bit bounds"),
        ({"get_hits": -1}, "a negative counter"),
        ({"get_hits": "12"}, "a counter sent as a string"),
        ({"get_hits": 1.0}, "a counter sent as a float"),
        ({"time": 253_402_300_800}, "a clock past the year 9999"),
        ({"time": 1.5e9}, "a clock sent as a float"),
    ],
)
def test_msgspec_path_refuses_what_it_cannot_decode_exactly(
    change: dict[str, Any], why: str
) -> None:
    """Bodies outside the msgspec path's exact subset go to the converter, which decides."""
    server = next(iter(STATS))
    data = {server: {**STATS[server], **change}}
    body = json.dumps(data).encode()
    assert _FAST_BYTES[Stats](body) is None, why
    _bytes_agree(data, Stats)


@pytest.mark.parametrize(
    "change",
    [
        {"memcachier_id": "1" * 19},
        {"memcachier_id": "-1"},
        {"memcachier_id": 11},
        {"timestamp": "253402300799001"},
        {"timestamp": "1e12"},
        {"timestamp": "١٢٣"},
    ],
)
def test_msgspec_history_refuses_odd_ids_and_times(change: dict[str, Any]) -> None:
    """An id or millisecond time it cannot check exactly sends the history to the converter."""
    data = [{**HISTORY[0], **change}]
    assert _FAST_BYTES[list[HistoryRecord]](json.dumps(data).encode()) is None
    _bytes_agree(data, list[HistoryRecord])


def test_a_key_sent_twice_keeps_its_last_value_on_both_paths() -> None:
    """Duplicate keys (RFC 8259 leaves them open) mean the same on the msgspec path as with orjson."""
    server = next(iter(STATS))
    known = json.dumps({k: STATS[server][k] for k in _STATS_ORDER})
    twice = known[:-1] + ', "get_hits": 7}'
    body = f'{{"{server}": {known}, "{server}": {twice}}}'.encode()
    fast = _FAST_BYTES[Stats](body)
    assert fast is not None
    assert fast[server].get_hits == 7
    assert fast == _DETAILED.structure(json.loads(body), Stats)


def _near_valid_stats() -> st.SearchStrategy[dict[str, Any]]:
    """The 31 known fields, valid, with at most one of them moved to a range's edge."""
    number = st.integers(min_value=0, max_value=2**63 - 1)
    clock = st.integers(min_value=0, max_value=253_402_300_799)
    valid = st.fixed_dictionaries(
        {name: (clock if name == "time" else number) for name in _STATS_ORDER}
    )
    edge = st.dictionaries(st.sampled_from(_STATS_ORDER), st.sampled_from(EDGES), max_size=1)
    return st.builds(lambda v, e: {**v, **e}, valid, edge)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _near_valid_stats(), max_size=3))
def test_msgspec_stats_agree_near_the_limits(data: dict[str, Any]) -> None:
    """Stats bodies the msgspec path mostly accepts: same models as the converter, or refused."""
    _bytes_agree(data, Stats)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "memcachier_id": _digit_strings(),
                "server": st.text(max_size=8),
                "stats": _near_valid_stats(),
                "timestamp": st.one_of(
                    _digit_strings(),
                    st.integers(min_value=0, max_value=253_402_300_800_000).map(str),
                ),
            }
        ),
        max_size=3,
    )
)
def test_msgspec_history_agrees_near_the_limits(data: list[dict[str, Any]]) -> None:
    """History bodies the msgspec path mostly accepts: same models as the converter, or refused."""
    _bytes_agree(data, list[HistoryRecord])
