"""Measures one hostile body against the size limit, in a process of its own.

    python tests/_limits_probe.py CASE BACKEND LOOP LIMIT_MIB DEADLINE

CASE is ``gzip-bomb``, ``deflate-bomb`` or ``endless``; BACKEND ``httpx``
or ``aiohttp``; LOOP ``asyncio`` or ``trio``. Prints one JSON object: the
exception raised, the call's time, the longest event-loop stall (a ticker
task that asks to wake every 5 ms: the longest gap in wall time, and the
CPU time the loop's thread spent in that gap, which a busy machine's
scheduler cannot inflate) and the peak RSS growth (the peak resident size
of the process after the call, ``VmHWM``, reset just before it, minus the
resident size just before: an upper bound of what the call added). Not
``getrusage``: its peak survives ``exec`` and would be the parent's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import anyio
from _limits_server import LoopbackServer, bomb, endless

from memcachier_async import AsyncAnalytics, RetryPolicy

_TICK = 0.005


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise LookupError(field)


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)
    except OSError:
        pass  # then VmHWM is the process's whole peak: still an upper bound


def current_rss() -> int:
    return _status("VmRSS")


def peak_rss() -> int:
    return _status("VmHWM")


async def probe(
    case: str, backend: str, limit: int, deadline: float, url: str
) -> dict[str, object]:
    longest = longest_cpu = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest, longest_cpu
        last, last_cpu = time.perf_counter(), time.thread_time()
        while not done:
            await anyio.sleep(_TICK)
            now, now_cpu = time.perf_counter(), time.thread_time()
            longest = max(longest, now - last - _TICK)
            longest_cpu = max(longest_cpu, now_cpu - last_cpu)
            last, last_cpu = now, now_cpu

    api = AsyncAnalytics(
        "user",
        "password-1234",
        cache_id=1,
        base_url=url,
        http_backend=backend,  # type: ignore[arg-type]
        retry=RetryPolicy(deadline=deadline),
        max_response_size=limit,
    )
    error = "none"
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.05)
        reset_peak()
        before = current_rss()
        started = time.perf_counter()
        try:
            await api.stats()
        except Exception as exc:
            error = type(exc).__name__
        elapsed = time.perf_counter() - started
        peak = peak_rss()
        await anyio.sleep(0.02)
        done = True
    await api.aclose()
    return {
        "case": case,
        "backend": backend,
        "error": error,
        "elapsed": elapsed,
        "deadline": deadline,
        "stall": longest,
        "stall_cpu": longest_cpu,
        "rss_growth": peak - before,
        "limit": limit,
    }


def main() -> None:
    case, backend, loop, limit_mib, deadline = sys.argv[1:6]
    behaviour = {
        "gzip-bomb": bomb("gzip", mib=1000),
        "deflate-bomb": bomb("deflate", mib=1000),
        "endless": endless(),
    }[case]
    with LoopbackServer(behaviour) as server:
        limit = int(float(limit_mib) * 2**20)
        result = anyio.run(probe, case, backend, limit, float(deadline), server.url(), backend=loop)
        result["loop"] = loop
        result["sent"] = sum(server.sent)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
