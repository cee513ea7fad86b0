"""Values from the wire are checked against the ranges the wire allows.

Counters and gauges are memcached's unsigned 64-bit integers; ids are
non-negative database keys; anything the JSON layer can raise is a
DecodeError. Extreme but valid values never make the arithmetic on top
(totals, memory, insight, the CLI's percentages) raise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memcachier_async import DecodeError, Stats, _convert, insight
from memcachier_async._cli import render
from memcachier_async._convert import THREAD_FROM, _json_loads, _loads_in_pieces, sort_history
from memcachier_async._protocol import ENDPOINTS

SAMPLES = Path(__file__).parent / "samples"
STATS = json.loads((SAMPLES / "stats_two_servers.json").read_text())
HISTORY = json.loads((SAMPLES / "history.json").read_text())
CREDENTIALS = json.loads((SAMPLES / "credentials.json").read_text())
SERVER = next(iter(STATS))
TOP = 2**64 - 1


@pytest.fixture(autouse=True, scope="module", params=["json", "orjson"])
def json_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every case holds with the standard parser and with orjson (the speedups extra).

    orjson reads integers beyond 64 bits as floats or refuses them, where the
    standard parser reads them exactly: the errors must not differ.
    """
    loads = _convert._json_loads
    if request.param == "orjson":
        loads = pytest.importorskip("orjson").loads
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_convert, "_loads", loads)
        yield request.param


def _decode(name: str, body: bytes) -> Any:
    endpoint = ENDPOINTS[name]
    return endpoint.decode(body, endpoint.name)


def _stats_body(**fields: Any) -> bytes:
    return json.dumps({SERVER: {**STATS[SERVER], **fields}}).encode()


@pytest.mark.parametrize("field", ["get_hits", "bytes", "limit_maxbytes", "curr_connections"])
@pytest.mark.parametrize("bad", [-1, 2**64, 10**400])
def test_stats_value_out_of_range_names_the_field(field: str, bad: int) -> None:
    """A counter or gauge below 0 or at 2**64 and beyond is a DecodeError at its field path."""
    with pytest.raises(DecodeError) as caught:
        _decode("stats", _stats_body(**{field: bad}))
    assert caught.value.path == f"$[{SERVER!r}].{field}"
    assert "out of range" in str(caught.value)
    assert str(bad)[:20] not in str(caught.value)  # the size, never a flood of digits


def test_history_value_out_of_range_names_the_record_and_field() -> None:
    """In a history, the path names the record and the stats field."""
    body = [HISTORY[0], {**HISTORY[1], "stats": {**HISTORY[1]["stats"], "evictions": -5}}]
    with pytest.raises(DecodeError) as caught:
        _decode("history", json.dumps(body).encode())
    assert caught.value.path == "$[1].stats.evictions"


@pytest.mark.parametrize(
    ("name", "body", "path"),
    [
        ("login", {"cache_id": -1}, "$.cache_id"),
        ("login", {"cache_id": 10**30}, "$.cache_id"),
        ("login", {"cache_id": 2**63}, "$.cache_id"),
        ("list_credentials", [{**CREDENTIALS[0], "cache_id": -14}], "$[0].cache_id"),
        ("list_credentials", [{**CREDENTIALS[0], "id": -44}], "$[0].id"),
        ("list_credentials", [{**CREDENTIALS[0], "id": 2**70}], "$[0].id"),
        ("history", [{**HISTORY[0], "memcachier_id": "9" * 30}], "$[0].memcachier_id"),
        ("history", [{**HISTORY[0], "memcachier_id": -3}], "$[0].memcachier_id"),
    ],
)
def test_ids_are_non_negative_and_bounded(name: str, body: Any, path: str) -> None:
    """cache_id, a credential's id and memcachier_id: 0 ≤ id < 2**63, else DecodeError."""
    with pytest.raises(DecodeError) as caught:
        _decode(name, json.dumps(body).encode())
    assert caught.value.path == path


def test_largest_values_decode() -> None:
    """2**64 - 1 everywhere a counter or gauge goes, and 2**63 - 1 as an id, are accepted."""
    fields = {name: TOP for name in STATS[SERVER] if name != "time"}
    stats = _decode("stats", _stats_body(**fields))
    assert stats[SERVER].get_hits == TOP
    assert _decode("login", json.dumps({"cache_id": 2**63 - 1}).encode()) == 2**63 - 1
    credential = {**CREDENTIALS[0], "id": None}
    assert _decode("list_credentials", json.dumps([credential]).encode())[0].id is None


def test_unknown_fields_outside_64_bits_are_dropped() -> None:
    """An unknown integer field is kept in extra when it fits 64 bits, else dropped like text."""
    body = _stats_body(new_signed=-(2**63), new_big=2**64, new_ok=TOP)
    extra = _decode("stats", body)[SERVER].extra
    assert {k: v for k, v in extra.items() if k.startswith("new_")} == {
        "new_signed": -(2**63),
        "new_ok": TOP,
    }


@pytest.mark.parametrize("name", ["login", "stats", "history", "list_credentials"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="deep-array"),
        pytest.param(b'{"a":' * 50_000, id="deep-object"),
        pytest.param(b"\xff\xfe{\x00}\x00", id="utf-16"),
        pytest.param(b'\xef\xbb\xbf{"cache_id": 1}', id="utf-8-bom"),
        pytest.param(b'{"cache_id": "\xe9"}', id="latin-1"),
        pytest.param(b'{"cache_id": NaN}', id="nan"),
        pytest.param(b'{"cache_id": 1e400}', id="infinite"),
        pytest.param(b'{"cache_id": ' + b"9" * 5000 + b"}", id="5000-digits"),
    ],
)
def test_json_layer_failures_are_decode_errors(name: str, body: bytes) -> None:
    """Nesting, encodings and numbers the JSON layer refuses become DecodeError, nothing else."""
    with pytest.raises(DecodeError) as caught:
        _decode(name, body)
    assert caught.value.endpoint == name


def test_fallback_parser_is_as_strict_as_orjson() -> None:
    """Without orjson, the standard parser refuses what orjson refuses (BOM, UTF-16, NaN)."""
    for body in (b'\xef\xbb\xbf{"a":1}', '{"a":1}'.encode("utf-16"), b"[NaN]", b"[-Infinity]"):
        with pytest.raises(ValueError):  # noqa: PT011 - the kind of ValueError varies
            _json_loads(body)
    assert _json_loads(b'{"a": 1.5}') == {"a": 1.5}


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b'{"cache_id": -1, "cache_id": 5}', 5), (b'{"cache_id": 5, "cache_id": -1}', None)],
)
def test_duplicate_keys_keep_the_last_value_and_check_it(body: bytes, expected: int | None) -> None:
    """A key sent twice keeps its last value (as orjson and json do), and that value is checked."""
    if expected is None:
        with pytest.raises(DecodeError, match="cache_id"):
            _decode("login", body)
    else:
        assert _decode("login", body) == expected


def _extreme(servers: int, bytes_: int, limit: int, counter: int, time: int) -> Stats:
    fields = {name: counter for name in STATS[SERVER] if name != "time"}
    fields.update(bytes=bytes_, limit_maxbytes=limit, time=time)
    body = {f"s{i}:1": {**STATS[SERVER], **fields} for i in range(servers)}
    stats: Stats = _decode("stats", json.dumps(body).encode())
    return stats


@pytest.mark.parametrize(("bytes_", "limit"), [(TOP, 1), (TOP, TOP), (0, TOP), (TOP, 0)])
def test_extreme_values_never_make_arithmetic_raise(bytes_: int, limit: int) -> None:
    """Totals, memory, insight and the CLI's tables work on 64 servers of 2**64 - 1."""
    time = STATS[SERVER]["time"]
    before = _extreme(64, bytes_, limit, 0, time)
    after = _extreme(64, bytes_, limit, TOP, time + 1)
    assert after.total().get_hits == 64 * TOP
    memory = after.memory()
    assert memory.used == 64 * bytes_
    change = insight(before, after)
    assert change.total.get_rate == pytest.approx(64 * TOP)
    assert change.total.bytes == pytest.approx(64 * bytes_)
    # The CLI's tables and JSON render them, with percentages a person can read.
    render.stats_table("c", 1, after)
    render.rates_table(change)
    render.demo_stats_table(after)
    json.dumps(render.stats_json("c", 1, after, change))
    shown = render.fmt_percent(memory.usage)
    assert len(shown) <= len("999.9%")


@pytest.mark.parametrize(
    ("usage", "shown"),
    [(None, render.DASH), (0.0, "0.0%"), (0.5, "50.0%"), (9.99, "999.0%"), (1e19, ">999%")],
)
def test_percentages_stay_readable(usage: float | None, shown: str) -> None:
    """A usage far beyond the limit is shown as >999%, never as 21 digits."""
    assert render.fmt_percent(usage) == shown


json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


def _parse(parser: Any, body: bytes) -> Any:
    try:
        return ("ok", parser(body))
    except (ValueError, RecursionError):
        return ("error", None)


@settings(max_examples=300, deadline=None)
@given(value=json_texts, spacing=st.sampled_from([None, 1, "\t"]), cut=st.integers(0, 8))
def test_piecewise_parser_agrees_with_the_whole_one(value: Any, spacing: Any, cut: int) -> None:
    """Big bodies are parsed member by member: the same result, or the same refusal, as one parse
    (valid JSON with any spacing, and the same text cut short or with a stray byte)."""
    text = json.dumps(value, indent=spacing).encode()
    for body in (text, b" \n" + text + b"\r\n", text[: len(text) - cut], text + b",", b"[" + text):
        assert _parse(_loads_in_pieces, body) == _parse(_json_loads, body), body


@pytest.mark.parametrize(
    "body",
    [b"[1,]", b"[,1]", b"{,}", b'{"a" 1}', b'{"a":1,}', b"{1:2}", b"[1 2]", b"[] []", b"[", b"{"],
)
def test_piecewise_parser_refuses_what_json_refuses(body: bytes) -> None:
    """Trailing commas, missing colons, non-string keys, extra data: refused by both parsers."""
    assert _parse(_loads_in_pieces, body) == ("error", None)
    assert _parse(_json_loads, body) == ("error", None)


def test_big_bodies_decode_the_same_through_the_piecewise_parser() -> None:
    """A history past the threshold decodes to the same records as a small one would."""
    records = [HISTORY[0], HISTORY[1]] * 3000
    body = json.dumps(records).encode()
    assert len(body) > THREAD_FROM
    big = _decode("history", body)
    slices = [json.dumps(records[i : i + 1000]).encode() for i in range(0, 6000, 1000)]
    assert all(len(piece) < THREAD_FROM for piece in slices)
    small = [record for piece in slices for record in _decode("history", piece)]
    assert big == sort_history(small)
    deep = b"[" + b'{"a":' * 50_000 + b" " * THREAD_FROM
    with pytest.raises(DecodeError):
        _decode("history", deep)


def test_a_big_history_without_msgspec_structures_each_record_as_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the speedups extra, a history past the threshold never holds all its parsed
    records at once: each is structured and dropped as it is parsed, so the peak memory of
    the decode stays near the result's own (it was 6.8 times it, all dicts alive at once).
    A body that is not all good records is decoded and explained as before."""
    import tracemalloc

    monkeypatch.setattr(_convert, "_FAST_BYTES", {})
    records = [HISTORY[0], HISTORY[1]] * 3000
    body = json.dumps(records).encode()
    assert len(body) > THREAD_FROM
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        decoded = _decode("history", body)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded == sort_history(
        list(_decode("history", json.dumps(records[:2]).encode())) * 3000
    )
    assert peak < 3.5 * kept, (peak, kept)
    bad = json.dumps([*records[:5000], {**HISTORY[0], "server": 7}, *records[:1000]]).encode()
    with pytest.raises(DecodeError, match=r"\$\[5000\]\.server"):
        _decode("history", bad)
    cut = body[:-1]
    with pytest.raises(DecodeError, match="not JSON"):
        _decode("history", cut)


def test_big_history_through_msgspec_in_pieces_equals_one_piece() -> None:
    """With msgspec, a big history is decoded 128 KiB at a time: the same records as one call;
    a cut that lands inside a string (a server named '}, {') refuses the body, never misreads it."""
    pytest.importorskip("msgspec")
    from memcachier_async._convert import _FAST_BYTES, _in_chunks
    from memcachier_async._models import HistoryRecord

    fast = _FAST_BYTES[list[HistoryRecord]]
    records = [HISTORY[0], HISTORY[1]] * 3000
    for separators in ((",", ":"), (", ", ": ")):
        body = json.dumps(records, separators=separators, indent=None).encode()
        assert len(body) > THREAD_FROM
        assert _in_chunks(fast, body) == fast(body)
        assert _in_chunks(fast, b" \n" + body + b"\n") == fast(body)
        assert _in_chunks(fast, b"\x0c" + body) is None
    tricky = [{**r, "server": "a}, {b" * 20_000} for r in records[:40]]
    body = json.dumps(tricky).encode()
    assert len(body) > THREAD_FROM
    assert _in_chunks(fast, body) is None
    decoded = _decode("history", body)
    assert {r.server for r in decoded} == {"a}, {b" * 20_000}


def test_a_big_decode_leaves_the_garbage_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding a history past the worker-thread size neither disables, freezes nor
    unfreezes the collector: that state is the application's."""
    import gc

    def refuse(*args: object) -> None:
        raise AssertionError("the library touched the garbage collector's global state")

    for name in ("disable", "freeze", "unfreeze"):
        monkeypatch.setattr(gc, name, refuse)
    body = json.dumps([HISTORY[0], HISTORY[1]] * 3000).encode()
    assert len(body) > THREAD_FROM
    assert len(_decode("history", body)) == 6000
    assert gc.isenabled()


@pytest.mark.parametrize("cache_id", [-1, 2**63, 10**30])
def test_the_constructor_holds_cache_id_to_the_same_range(cache_id: int) -> None:
    """AsyncAnalytics(cache_id=...) takes what a login answer may hold: 0 ≤ id < 2**63."""
    from memcachier_async import AsyncAnalytics

    with pytest.raises(ValueError, match="cache_id"):
        AsyncAnalytics("user", "pw", cache_id=cache_id)
    assert AsyncAnalytics("user", "pw", cache_id=2**63 - 1).cache_id == 2**63 - 1
