"""Decode micro-benchmark: JSON bytes → models, no network.

Payloads: stats of 64 servers and a history of 10,000 records. Every
decoder produces the same thing: typed objects with aware UTC datetimes for
``time`` and ``timestamp`` and an int ``memcachier_id``, and a history in
time order (``AsyncAnalytics.history()`` sorts what it decodes, so every
history column sorts too). Decoders:

- ``sdk``: the SDK's own endpoint decoder (``_protocol.STATS.decode`` /
  ``HISTORY.decode``: ``_convert.decode`` then the sort), frozen attrs
  models; with msgspec installed (the ``speedups`` extra) it takes the
  msgspec path of ``_fast_json.py``;
- ``sdk-cattrs``: the same without msgspec: ``orjson.loads`` and the cattrs
  converter's hand-written hooks (what users without the extra get);
- ``msgspec``: ``msgspec.json.Decoder(type=..., strict=False)`` into
  ``Struct`` models: msgspec's own lax decoding turns Unix seconds into
  datetimes and ``"11"`` into 11. msgspec has no millisecond unit, so the
  history ``timestamp`` (milliseconds in a string) is decoded as an int and
  converted in Python, once per distinct value as the SDK does;
- ``pydantic``: pydantic v2 ``TypeAdapter.validate_json`` into ``BaseModel``
  classes (strict ints, lax datetimes, which read large numbers as
  milliseconds);
- ``orjson``: ``orjson.loads`` alone: the parse without any model.

Garbage collection: the SDK pauses the collector itself while decoding a
body past 256 KiB. So that no column is measured under other conditions
than another, every round measures every decoder twice: with the collector
on (the SDK's own pause switched off) and with it paused for everybody.

Rounds interleave the decoders (the order rotates); each round gives each
decoder's CPU time per decode (``time.process_time``), and each ratio is
computed within a round, then summarised over rounds (median, min, max).
"""

from __future__ import annotations

import argparse
import gc
import json
import operator
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

import msgspec
import orjson
import pydantic

from memcachier_async import HistoryRecord, Stats, _convert
from memcachier_async._protocol import HISTORY, STATS

BY_TIMESTAMP = operator.attrgetter("timestamp")

# --- msgspec models -------------------------------------------------------


class MServerStats(msgspec.Struct, frozen=True):
    auth_cmds: int
    auth_errors: int
    bytes: int
    bytes_read: int
    bytes_written: int
    cas_badval: int
    cas_hits: int
    cas_misses: int
    cmd_delete: int
    cmd_flush: int
    cmd_get: int
    cmd_set: int
    cmd_touch: int
    curr_connections: int
    curr_items: int
    decr_hits: int
    decr_misses: int
    delete_hits: int
    delete_misses: int
    evictions: int
    expired: int
    get_hits: int
    get_misses: int
    incr_hits: int
    incr_misses: int
    limit_maxbytes: int
    time: datetime  # lax: Unix seconds → aware UTC datetime, by msgspec
    total_connections: int
    total_items: int
    touch_hits: int
    touch_misses: int


class MHistoryRecord(msgspec.Struct):
    memcachier_id: int  # lax: "11" → 11, by msgspec
    server: str
    stats: MServerStats
    # Milliseconds in a string: read as an int by msgspec (lax), then made a
    # datetime below; msgspec has no millisecond unit.
    timestamp: int


def _msgspec_decoders() -> dict[str, Callable[[bytes], Any]]:
    stats_decoder = msgspec.json.Decoder(dict[str, MServerStats], strict=False)
    history_decoder = msgspec.json.Decoder(list[MHistoryRecord], strict=False)
    utc = timezone.utc

    def history(body: bytes) -> Any:
        records = history_decoder.decode(body)
        seen: dict[int, datetime] = {}
        for r in records:
            when = seen.get(r.timestamp)
            if when is None:
                when = seen[r.timestamp] = datetime.fromtimestamp(r.timestamp / 1000, utc)
            r.timestamp = when
        records.sort(key=BY_TIMESTAMP)
        return records

    return {"stats": stats_decoder.decode, "history": history}


# --- pydantic models ------------------------------------------------------

StrictInt = Annotated[int, pydantic.Strict()]


class PServerStats(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="allow")

    auth_cmds: StrictInt
    auth_errors: StrictInt
    bytes: StrictInt
    bytes_read: StrictInt
    bytes_written: StrictInt
    cas_badval: StrictInt
    cas_hits: StrictInt
    cas_misses: StrictInt
    cmd_delete: StrictInt
    cmd_flush: StrictInt
    cmd_get: StrictInt
    cmd_set: StrictInt
    cmd_touch: StrictInt
    curr_connections: StrictInt
    curr_items: StrictInt
    decr_hits: StrictInt
    decr_misses: StrictInt
    delete_hits: StrictInt
    delete_misses: StrictInt
    evictions: StrictInt
    expired: StrictInt
    get_hits: StrictInt
    get_misses: StrictInt
    incr_hits: StrictInt
    incr_misses: StrictInt
    limit_maxbytes: StrictInt
    time: datetime  # lax: Unix seconds → aware UTC datetime
    total_connections: StrictInt
    total_items: StrictInt
    touch_hits: StrictInt
    touch_misses: StrictInt


class PHistoryRecord(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    memcachier_id: int  # lax: "11" → 11
    server: str
    stats: PServerStats
    timestamp: datetime  # lax: "1490731541096" (milliseconds) → datetime


def _pydantic_decoders() -> dict[str, Callable[[bytes], Any]]:
    stats = pydantic.TypeAdapter(dict[str, PServerStats])
    records = pydantic.TypeAdapter(list[PHistoryRecord])

    def history(body: bytes) -> Any:
        out = records.validate_json(body)
        out.sort(key=BY_TIMESTAMP)
        return out

    return {"stats": stats.validate_json, "history": history}


def _sdk_decoders() -> dict[str, Callable[[bytes], Any]]:
    # What AsyncAnalytics.stats() / history() do with a body: decode, then sort.
    return {
        "stats": lambda body: STATS.decode(body, "stats"),
        "history": lambda body: HISTORY.decode(body, "history"),
    }


def _sdk_cattrs_decoders() -> dict[str, Callable[[bytes], Any]]:
    # The same without msgspec: orjson, then the converter's fast hooks.
    def stats(body: bytes) -> Any:
        return _convert.structure(_convert._loads(body), Stats, "stats")

    def history(body: bytes) -> Any:
        records = _convert.structure(_convert._loads(body), list[HistoryRecord], "history")
        return _convert.sort_history(records)

    return {"stats": stats, "history": history}


def _orjson_decoders() -> dict[str, Callable[[bytes], Any]]:
    return {"stats": orjson.loads, "history": orjson.loads}


DECODERS: dict[str, Callable[[], dict[str, Callable[[bytes], Any]]]] = {
    "sdk": _sdk_decoders,
    "sdk-cattrs": _sdk_cattrs_decoders,
    "msgspec": _msgspec_decoders,
    "pydantic": _pydantic_decoders,
    "orjson": _orjson_decoders,
}
GC_MODES = ("gc-on", "gc-paused")


def _check(payload: str, name: str, result: Any, reference: Any) -> None:
    """Every decoder produced the SDK's data (a benchmark of wrong output is void)."""
    if name == "orjson":
        return
    assert len(result) == len(reference), name
    if payload == "stats":
        for server, want in reference.items():
            got = result[server]
            for field in ("get_hits", "limit_maxbytes", "time"):
                assert getattr(got, field) == getattr(want, field), (name, server, field)
            assert type(got.time) is datetime, name
            assert got.time.tzinfo is not None, name
        return
    for got, want in zip(result, reference, strict=True):
        assert got.timestamp == want.timestamp, name
        assert got.server == want.server, name
    first = result[0]
    assert first.memcachier_id == reference[0].memcachier_id, name
    assert type(first.memcachier_id) is int, name
    assert type(first.timestamp) is datetime, name
    assert first.stats.time == reference[0].stats.time, name


def _timed(fn: Callable[[bytes], Any], body: bytes, number: int, paused: bool) -> float:
    """CPU seconds per decode of ``body``, the collector on or paused."""
    gc.collect()
    if paused:
        gc.disable()
    try:
        started = time.process_time()
        for _ in range(number):
            fn(body)
        return (time.process_time() - started) / number
    finally:
        gc.enable()


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench(payloads: dict[str, bytes], number: dict[str, int], repeat: int) -> dict[str, Any]:
    """Per payload and GC mode: each decoder's CPU seconds per decode in every round.

    ``{payload: {"bytes": n, "rounds": {mode: {decoder: [seconds, ...]}},
    "seconds": {mode: {decoder: median}}, "ratios": {mode: {decoder:
    {"median", "min", "max"}}}}}``; a ratio is the SDK's time over the
    decoder's, within one round.
    """
    decoders = {name: make() for name, make in DECODERS.items()}
    names = list(decoders)
    out: dict[str, Any] = {}
    # The SDK's own pause is off for the "gc-on" mode: every decoder runs
    # with the collector on there, and with it paused in "gc-paused".
    pause_from = _convert._PAUSE_GC_FROM
    _convert._PAUSE_GC_FROM = 2**62
    try:
        for payload, body in payloads.items():
            reference = decoders["sdk"][payload](body)
            for name, table in decoders.items():
                _check(payload, name, table[payload](body), reference)
            del reference
            rounds: dict[str, dict[str, list[float]]] = {
                mode: {name: [] for name in names} for mode in GC_MODES
            }
            for round_number in range(repeat):
                k = round_number % len(names)
                for name in names[k:] + names[:k]:
                    fn = decoders[name][payload]
                    for mode in GC_MODES:
                        took = _timed(fn, body, number[payload], mode == "gc-paused")
                        rounds[mode][name].append(took)
            out[payload] = {
                "bytes": len(body),
                "rounds": rounds,
                "seconds": {
                    mode: {n: statistics.median(v) for n, v in by.items()}
                    for mode, by in rounds.items()
                },
                "ratios": {
                    mode: {
                        n: _summary([a / b for a, b in zip(by["sdk"], by[n], strict=True)])
                        for n in names
                        if n != "sdk"
                    }
                    for mode, by in rounds.items()
                },
            }
    finally:
        _convert._PAUSE_GC_FROM = pause_from
    return out


def profile(payload: str, body: bytes, number: int) -> dict[str, Any]:
    """cProfile of the SDK decoding ``body`` (collector on): see ``_profile.summary``."""
    import cProfile
    import pstats

    from _profile import summary

    fn = _sdk_decoders()[payload]
    fn(body)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(number):
        fn(body)
    profiler.disable()
    return summary(pstats.Stats(profiler))


def main() -> None:
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _bodies import bodies

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument(
        "--profile", action="store_true", help="also a cProfile of the SDK on each payload"
    )
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    found, _ = bodies()
    payloads = {"stats": found["stats64"], "history": found["history10k"]}
    # Enough work per measurement (~0.2 s) that a busy machine blurs it less.
    number = {"stats": 1000, "history": 3}
    result = bench(payloads, number, args.repeat)
    if args.profile:
        for payload, body in payloads.items():
            result[payload]["profile"] = profile(payload, body, number[payload])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
