"""Decode micro-benchmark: JSON bytes → models, no network.

Payloads: stats of 64 servers and a history of 10,000 records. Decoders:

- ``sdk``: ``memcachier_async._convert.decode`` (orjson, then the strict
  cattrs converter to frozen attrs models: ``time`` and ``timestamp`` become
  aware datetimes, ``memcachier_id`` an int, unknown integer fields kept);
- ``msgspec``: ``msgspec.json.Decoder(type=...)`` into ``Struct`` models with
  the same output types (datetimes through a ``dec_hook``);
- ``pydantic``: pydantic v2 ``TypeAdapter.validate_json`` into ``BaseModel``
  classes with the same output types (strict ints, lax datetimes);
- ``orjson``: ``orjson.loads`` alone: the parse without any model.

Each decoder is checked once against the SDK's result (same servers, same
values), then timed in CPU time: best of ``repeat`` rounds, decoders taking
turns in each round.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any, NewType

import msgspec
import orjson
import pydantic

from memcachier_async import HistoryRecord, Stats
from memcachier_async._convert import decode

# --- msgspec models -------------------------------------------------------

MillisTime = NewType("MillisTime", datetime)


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
    time: int
    total_connections: int
    total_items: int
    touch_hits: int
    touch_misses: int


class MHistoryRecord(msgspec.Struct, frozen=True):
    memcachier_id: str
    server: str
    stats: MServerStats
    timestamp: str


def _msgspec_decoders() -> dict[str, Callable[[bytes], Any]]:
    # msgspec has no "milliseconds in a string" or "Unix seconds" datetime;
    # the decoded structs hold the wire values and a post-pass converts them,
    # so the output carries the same datetimes and ints as the SDK's.
    stats_decoder = msgspec.json.Decoder(dict[str, MServerStats])
    history_decoder = msgspec.json.Decoder(list[MHistoryRecord])
    utc = timezone.utc

    def stats(body: bytes) -> Any:
        decoded = stats_decoder.decode(body)
        return {k: (v, datetime.fromtimestamp(v.time, utc)) for k, v in decoded.items()}

    def history(body: bytes) -> Any:
        return [
            (
                r,
                int(r.memcachier_id),
                datetime.fromtimestamp(int(r.timestamp) / 1000, utc),
                datetime.fromtimestamp(r.stats.time, utc),
            )
            for r in history_decoder.decode(body)
        ]

    return {"stats": stats, "history": history}


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
    history = pydantic.TypeAdapter(list[PHistoryRecord])
    return {"stats": stats.validate_json, "history": history.validate_json}


def _sdk_decoders() -> dict[str, Callable[[bytes], Any]]:
    return {
        "stats": lambda body: decode(body, Stats, "stats"),
        "history": lambda body: decode(body, list[HistoryRecord], "history"),
    }


def _orjson_decoders() -> dict[str, Callable[[bytes], Any]]:
    return {"stats": orjson.loads, "history": orjson.loads}


DECODERS: dict[str, Callable[[], dict[str, Callable[[bytes], Any]]]] = {
    "sdk": _sdk_decoders,
    "msgspec": _msgspec_decoders,
    "pydantic": _pydantic_decoders,
    "orjson": _orjson_decoders,
}


def _check(payload: str, name: str, result: Any, reference: Any) -> None:
    """The decoder produced the same data as the SDK (a benchmark of wrong output is void)."""
    if name in ("orjson", "sdk"):
        return
    if payload == "stats":
        assert len(result) == len(reference), name
        for server, stats in reference.items():
            got = result[server]
            got = got[0] if isinstance(got, tuple) else got
            assert got.get_hits == stats.get_hits, (name, server)
        if name == "pydantic":
            assert result[server].time == stats.time, name
    else:
        assert len(result) == len(reference), name
        first = result[0]
        if name == "pydantic":
            assert first.timestamp == reference[0].timestamp, name
            assert first.memcachier_id == reference[0].memcachier_id, name
        else:
            assert first[2] == reference[0].timestamp, name
            assert first[1] == reference[0].memcachier_id, name


def bench(payloads: dict[str, bytes], number: dict[str, int], repeat: int) -> dict[str, Any]:
    """{payload: {"bytes": size, "seconds": {decoder: CPU seconds per decode}}}.

    CPU time (``process_time``), not wall time: other processes on the
    machine then cost the measured one little. Decoders take turns within
    each round, and the best round counts.
    """
    decoders = {name: make() for name, make in DECODERS.items()}
    out: dict[str, Any] = {}
    for payload, body in payloads.items():
        reference = decoders["sdk"][payload](body)
        for name, table in decoders.items():
            _check(payload, name, table[payload](body), reference)
        del reference
        best = dict.fromkeys(decoders, float("inf"))
        for _ in range(repeat):
            for name, table in decoders.items():
                fn = table[payload]
                gc.collect()
                started = time.process_time()
                for _ in range(number[payload]):
                    fn(body)
                took = (time.process_time() - started) / number[payload]
                best[name] = min(best[name], took)
        out[payload] = {"bytes": len(body), "seconds": best}
    return out


def main() -> None:
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _bodies import bodies

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    found, _ = bodies()
    payloads = {"stats": found["stats64"], "history": found["history10k"]}
    print(json.dumps(bench(payloads, {"stats": 200, "history": 3}, args.repeat)))


if __name__ == "__main__":
    main()
