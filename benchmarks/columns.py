"""One client column, measured in its own process; prints one JSON result line.

Columns (what each one does per call):

- ``floor``: aiohttp ``ClientSession.get`` + ``orjson.loads`` of the body —
  the least a Python client can do; no models, no checks beyond the status.
- ``httpx``: what a user writes without the SDK: one default
  ``httpx.AsyncClient``, ``get(url, auth=(user, password))``,
  ``raise_for_status()``, ``response.json()``.
- ``httpx-limits``: the same loop with ``httpx.Limits`` raised to the
  concurrency (``max_connections`` and ``max_keepalive_connections``), as a
  user who read httpx's docs on pools would write it.
- ``sdk``: ``AsyncAnalytics`` with its default transport, ``await api.stats()``
  (typed models, strict validation).
- ``sdk-aiohttp``: the same with ``http_backend="aiohttp"``.

``concurrency`` tasks call in a loop. After ``warmup`` seconds (connections
open, caches warm) the window of ``duration`` seconds is measured: process
CPU time (``time.process_time``), calls finished, and the latency of each
call that started and ended inside the window. ``--pool N`` gives every
column a pool of N connections (the latency-bound regime needs one per call
in flight); otherwise each keeps its own default (100 connections, except
``httpx-limits``, whose pool is the concurrency).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

USER, PASSWORD = "BENCH_USER", "bench-password"
CACHE_ID = 1561

Call = Callable[[], Awaitable[Any]]
Maker = Callable[[str, str, int | None, int], Awaitable[tuple[Call, Any]]]


async def _floor(
    base: str, endpoint: str, pool: int | None, concurrency: int
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import aiohttp
    import orjson

    connector = aiohttp.TCPConnector(limit=pool) if pool else None
    session = aiohttp.ClientSession(connector=connector)
    url = f"{base}/{CACHE_ID}/{endpoint}"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth = f"Basic {token}"
    headers = {"Authorization": auth, "Accept": "application/json"}

    async def call() -> Any:
        async with session.get(url, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            return orjson.loads(body)

    return call, session.close


def _httpx(raise_limits: bool) -> Maker:
    async def make(
        base: str, endpoint: str, pool: int | None, concurrency: int
    ) -> tuple[Call, Callable[[], Awaitable[None]]]:
        import httpx

        size = pool or (concurrency if raise_limits else None)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        client = httpx.AsyncClient(limits=limits) if size else httpx.AsyncClient()
        url = f"{base}/{CACHE_ID}/{endpoint}"

        async def call() -> Any:
            response = await client.get(url, auth=(USER, PASSWORD))
            response.raise_for_status()
            return response.json()

        return call, client.aclose

    return make


async def _httpx_on_aiohttp(
    base: str, endpoint: str, pool: int | None, concurrency: int
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """A hand-rolled httpx.AsyncClient over the SDK's aiohttp transport (the
    aiohttp engine): get, raise_for_status, json()."""
    import httpx

    from memcachier_async._transports.aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=pool or 100)
    client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits))
    url = f"{base}/{CACHE_ID}/{endpoint}"

    async def call() -> Any:
        response = await client.get(url, auth=(USER, PASSWORD))
        response.raise_for_status()
        return response.json()

    return call, client.aclose


def _sdk(backend: str | None, one_pool: bool = False) -> Maker:
    async def make(
        base: str, endpoint: str, pool: int | None, concurrency: int
    ) -> tuple[Call, Callable[[], Awaitable[None]]]:
        import httpx

        from memcachier_async import AsyncAnalytics

        extra: dict[str, Any] = {} if backend is None else {"http_backend": backend}
        if pool:
            extra["limits"] = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        if one_pool:
            # httpx's own transport as the whole engine: one httpcore pool.
            extra["transport"] = httpx.AsyncHTTPTransport(
                limits=extra.pop("limits", httpx.Limits(max_connections=100))
            )
        api = AsyncAnalytics(USER, PASSWORD, cache_id=CACHE_ID, base_url=base, **extra)
        call = {
            "stats": api.stats,
            "history": api.history,
            "credentials": api.list_credentials,
        }[endpoint]
        return call, api.aclose

    return make


COLUMNS: dict[str, Maker] = {
    "floor": _floor,
    "httpx-aiohttp": _httpx_on_aiohttp,
    "httpx": _httpx(raise_limits=False),
    "httpx-limits": _httpx(raise_limits=True),
    "sdk": _sdk(None),
    "sdk-one-pool": _sdk(None, one_pool=True),
    "sdk-aiohttp": _sdk("aiohttp"),
    # Under httpx2.alias_httpx(), made before anything imports httpx (see main).
    "httpx2": _httpx(raise_limits=False),
    "sdk-httpx2": _sdk(None),
    "sdk-httpx2-one-pool": _sdk(None, one_pool=True),
}
ALIASED = {"httpx2", "sdk-httpx2", "sdk-httpx2-one-pool"}


async def measure(
    column: str,
    base: str,
    endpoint: str,
    concurrency: int,
    warmup: float,
    duration: float,
    profile: str | None = None,
    pool: int | None = None,
) -> dict[str, Any]:
    call, close = await COLUMNS[column](base, endpoint, pool, concurrency)
    stop = False
    errors = 0
    finished = 0
    spans: list[tuple[float, float]] = []
    perf = time.perf_counter

    async def worker() -> None:
        nonlocal errors, finished
        while not stop:
            started = perf()
            try:
                await call()
            except Exception:
                errors += 1
            else:
                finished += 1
            spans.append((started, perf()))

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    gc.collect()
    spans.clear()
    calls0, errors0 = finished, errors
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, wall0 = time.process_time(), perf()
    await asyncio.sleep(duration)
    cpu1, wall1 = time.process_time(), perf()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    calls1, errors1 = finished, errors
    stop = True
    await asyncio.gather(*tasks)
    await close()
    latencies = sorted(end - start for start, end in spans if start >= wall0 and end <= wall1)
    calls = calls1 - calls0
    return {
        "column": column,
        "endpoint": endpoint,
        "concurrency": concurrency,
        "calls": calls,
        "errors": errors1 - errors0,
        "wall": wall1 - wall0,
        # No call finished in the window: no CPU per call to speak of.
        "cpu_us_per_call": (cpu1 - cpu0) / calls * 1e6 if calls else float("nan"),
        "calls_per_s": calls / (wall1 - wall0),
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "p50_ms": _quantile(latencies, 0.50) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("column", choices=sorted(COLUMNS))
    parser.add_argument("base_url")
    parser.add_argument("--endpoint", default="stats")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--profile", default=None, help="write cProfile stats of the window here")
    parser.add_argument("--pool", type=int, default=None, help="connections (default: each's own)")
    args = parser.parse_args()
    if args.column in ALIASED:
        import httpx2

        httpx2.alias_httpx()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    result = asyncio.run(
        measure(
            args.column,
            args.base_url,
            args.endpoint,
            args.concurrency,
            args.warmup,
            args.duration,
            args.profile,
            args.pool,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
