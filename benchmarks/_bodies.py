"""Response bodies the origin serves and the decode benchmark parses.

When the emulator (``memcachier_async.testing``) is importable, the bodies
are recorded from it (in process, no sockets), so they have exactly the
shape the SDK is tested against. Otherwise a seeded generator writes bodies
of the same shape (the emulator's 31 stats fields per server, realistic
magnitudes, history records interleaved per server).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from memcachier_async.testing import STATS_FIELDS

_NOW = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed, so bodies are the same every run


def _server_stats(rng: random.Random, when: int) -> dict[str, int]:
    gets = rng.randrange(10**6, 10**9)
    hits = rng.randrange(gets // 2, gets)
    sets = rng.randrange(10**5, 10**8)
    stats = {name: rng.randrange(0, 10**6) for name in STATS_FIELDS}
    stats.update(
        cmd_get=gets,
        get_hits=hits,
        get_misses=gets - hits,
        cmd_set=sets,
        bytes=rng.randrange(10**6, 10**8),
        bytes_read=rng.randrange(10**8, 10**11),
        bytes_written=rng.randrange(10**8, 10**12),
        limit_maxbytes=100 * 2**20,
        curr_connections=rng.randrange(1, 200),
        time=when,
    )
    return stats


def _server_name(i: int) -> str:
    return f"mc{i // 4 + 1}-{i % 4}.c{i % 7 + 1}.ec2.memcachier.com:11211"


def generated_stats(servers: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    return {_server_name(i): _server_stats(rng, _NOW) for i in range(servers)}


def generated_history(records: int, servers: int = 4, seed: int = 2) -> list[dict[str, Any]]:
    """``records`` records: one per server per sampling time, a minute apart."""
    rng = random.Random(seed)
    out = []
    for n in range(records):
        when = _NOW - (records // servers - n // servers) * 60
        out.append(
            {
                "memcachier_id": "1561",
                "server": _server_name(n % servers).partition(":")[0],
                "stats": _server_stats(rng, when),
                "timestamp": str(when * 1000 + rng.randrange(0, 1000)),
            }
        )
    return out


def generated_credentials(count: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "cache_id": 1561,
            "id": 40 + i,
            "sasl_username": f"A1B2C{i}",
            "uuid": None,
            "primary": i == 0,
            "flush_capability": i % 2 == 0,
            "write_capability": True,
            "api_capability": i < 2,
        }
        for i in range(count)
    ]


def _from_emulator() -> dict[str, bytes] | None:
    """Bodies recorded from the emulator, or ``None`` when it is not available."""
    try:
        from memcachier_async.testing import Emulator
    except ImportError:
        return None
    import asyncio

    return asyncio.run(_record(Emulator))


async def _record(emulator_class: Any) -> dict[str, bytes]:
    import httpx

    out: dict[str, bytes] = {}
    # (servers, history samples, operations between samples): 250 samples ×
    # 4 servers = 1,000 records. The traffic makes the counters move.
    for servers, samples, ops, names in (
        (4, 250, 400, ("login", "stats4", "history1k", "credentials")),
        (4, 2500, 100, ("history10k",)),
        (64, 1, 200_000, ("stats64",)),
    ):
        emulator = emulator_class(servers=servers, history_size=samples, history_interval=60.0)
        emulator.backfill(samples, ops_per_sample=ops)
        for i in range(4):  # a few more credentials, as a real cache has
            emulator.cache.add_credential(api=i % 2 == 0, flush=i % 3 == 0)
        async with httpx.AsyncClient(
            transport=emulator.transport(),
            base_url="https://analytics.memcachier.com/api/v1",
            auth=(emulator.username, emulator.password),
        ) as client:
            cache_id = emulator.cache.cache_id
            paths = {
                "login": "/login",
                "stats4": f"/{cache_id}/stats",
                "stats64": f"/{cache_id}/stats",
                "history1k": f"/{cache_id}/history",
                "history10k": f"/{cache_id}/history",
                "credentials": f"/{cache_id}/credentials",
            }
            for name in names:
                response = await client.get(paths[name])
                response.raise_for_status()
                out[name] = response.content
        emulator.close()
    return out


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


NAMES = ("login", "stats4", "stats64", "history1k", "history10k", "credentials")
#: Set by run.py for its child processes: a folder of bodies recorded once.
SHARED_DIR = "MEMCACHIER_BENCH_BODIES"


def save(found: dict[str, bytes], source: str, folder: str) -> None:
    for name in NAMES:
        with open(os.path.join(folder, name + ".json"), "wb") as f:
            f.write(found[name])
    with open(os.path.join(folder, "source.txt"), "w") as f:
        f.write(source)


def _load(folder: str) -> tuple[dict[str, bytes], str]:
    found = {}
    for name in NAMES:
        with open(os.path.join(folder, name + ".json"), "rb") as f:
            found[name] = f.read()
    with open(os.path.join(folder, "source.txt")) as f:
        return found, f.read()


def bodies() -> tuple[dict[str, bytes], str]:
    """(name → body, where they come from) for every body the benchmarks use."""
    shared = os.environ.get(SHARED_DIR)
    if shared:
        return _load(shared)
    recorded = _from_emulator()
    if recorded is not None:
        return recorded, "recorded from the emulator (memcachier_async.testing.Emulator)"
    return {
        "login": dumps({"cache_id": 1561}),
        "stats4": dumps(generated_stats(4)),
        "stats64": dumps(generated_stats(64)),
        "history1k": dumps(generated_history(1_000)),
        "history10k": dumps(generated_history(10_000)),
        "credentials": dumps(generated_credentials()),
    }, "generated (benchmarks/_bodies.py)"
