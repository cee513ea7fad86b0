"""Fan-out and memory workers, one per process; each prints one JSON line.

- ``fanout-sdk``: ``fan_out`` over ``caches`` credential sets (cache ids
  given, so no login), ``AsyncAnalytics.stats`` each, at ``concurrency``.
- ``fanout-sdk-aiohttp``: the same with ``http_backend="aiohttp"``.
- ``fanout-aiohttp``: the same calls with raw aiohttp: one session with a
  pool of ``concurrency`` connections, ``asyncio.gather`` of every call, a
  semaphore of ``concurrency``, ``orjson.loads`` of each body.
- ``rss``: ``watch`` over ``caches`` caches for ``rounds`` rounds; after each
  round the process's peak RSS (``ru_maxrss``), current RSS and the number
  of objects the garbage collector tracks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import resource
import time
from typing import Any

USER, PASSWORD = "BENCH_USER", "bench-password"


async def fanout_sdk(
    base: str, caches: int, concurrency: int, backend: str = "httpx"
) -> dict[str, Any]:
    from memcachier_async import AsyncAnalytics, CacheCredentials, fan_out

    targets = [CacheCredentials(f"user{i}", PASSWORD, cache_id=i + 1) for i in range(caches)]
    ok = errors = 0
    async with fan_out(
        targets,
        AsyncAnalytics.stats,
        concurrency=concurrency,
        base_url=base,
        http_backend="aiohttp" if backend == "aiohttp" else "httpx",
    ) as results:
        async for result in results:
            if result.ok:
                ok += 1
            else:
                errors += 1
    return {"ok": ok, "errors": errors}


async def fanout_aiohttp(base: str, caches: int, concurrency: int) -> dict[str, Any]:
    import aiohttp
    import orjson

    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
    gate = asyncio.Semaphore(concurrency)
    ok = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(cache_id: int) -> None:
            nonlocal ok, errors
            async with gate:
                try:
                    async with session.get(f"{base}/{cache_id}/stats", headers=headers) as r:
                        body = await r.read()
                        if r.status != 200:
                            raise RuntimeError(r.status)
                        orjson.loads(body)
                except Exception:
                    errors += 1
                else:
                    ok += 1

        await asyncio.gather(*(one(i + 1) for i in range(caches)))
    return {"ok": ok, "errors": errors}


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


async def rss(
    base: str, caches: int, concurrency: int, interval: float, rounds_wanted: int
) -> dict[str, Any]:
    from memcachier_async import CacheCredentials, watch

    targets = [CacheCredentials(f"user{i}", PASSWORD, cache_id=i + 1) for i in range(caches)]
    rounds: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with watch(
        targets, interval=interval, rounds=rounds_wanted, concurrency=concurrency, base_url=base
    ) as poller:
        async for poll_round in poller:
            counts = {s: poll_round.count(s) for s in ("ok", "failed", "pending")}
            # An application handles a round and lets it go: so does this loop,
            # or the previous round's results would stay alive into the next.
            del poll_round
            gc.collect()
            rounds.append(
                {
                    **counts,
                    "seconds": time.perf_counter() - started,
                    "peak_rss": _peak_rss(),
                    "rss": _rss_now(),
                    "objects": len(gc.get_objects()),
                }
            )
    return {"rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", choices=["fanout-sdk", "fanout-sdk-aiohttp", "fanout-aiohttp", "rss"]
    )
    parser.add_argument("base_url")
    parser.add_argument("--caches", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--interval", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--profile", default=None, help="write cProfile stats of the run here")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    # Imported before the clock starts: the work is measured, not the imports.
    if args.mode == "fanout-aiohttp":
        import aiohttp  # noqa: F401
        import orjson  # noqa: F401
    else:
        import memcachier_async
        import memcachier_async._transports.aiohttp  # noqa: F401
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if args.mode == "rss":
        result = asyncio.run(
            rss(args.base_url, args.caches, args.concurrency, args.interval, args.rounds)
        )
    else:
        if args.mode == "fanout-aiohttp":
            work = fanout_aiohttp(args.base_url, args.caches, args.concurrency)
        else:
            backend = "aiohttp" if args.mode == "fanout-sdk-aiohttp" else "httpx"
            work = fanout_sdk(args.base_url, args.caches, args.concurrency, backend)
        result = asyncio.run(work)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    result.update(
        mode=args.mode,
        caches=args.caches,
        concurrency=args.concurrency,
        wall=time.perf_counter() - wall0,
        cpu=time.process_time() - cpu0,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
