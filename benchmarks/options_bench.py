"""What ``with_options()`` and the instrumentation hooks cost, side by side.

Each round measures every variant once, interleaved, so machine load hits
them alike; the report gives each ratio's median and its spread (min–max)
over the rounds. No network: calls go to an in-process transport returning
a canned three-server stats body, so what is measured is the SDK's own work.

- ``create``: making a view with ``api.with_options(timeout=2)`` against
  making a new ``AsyncAnalytics`` (what an app would do without views).
- ``call``: one ``stats()`` through a view (``timeout=2``; and with a
  header too) against the same call on the client itself.
- ``hooks``: one ``stats()`` with no hook, with one no-op ``on_request``
  hook, and with ``contrib.prometheus.ClientMetrics`` installed.

Run: ``python benchmarks/options_bench.py [--rounds 7] [--calls 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from memcachier_async import AsyncAnalytics, RetryPolicy, add_hooks, remove_hooks
from memcachier_async.testing import STATS_FIELDS

BODY = json.dumps(
    {
        f"mc{i}.example.com:11211": {
            field: 1_700_000_000 if field == "time" else 1000 + i for field in STATS_FIELDS
        }
        for i in range(3)
    }
).encode()


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=BODY, headers={"Content-Type": "application/json"})


def client() -> AsyncAnalytics:
    return AsyncAnalytics(
        "bench", "pw", cache_id=1, transport=httpx.MockTransport(_answer), retry=RetryPolicy()
    )


def per_op(n: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / n


async def per_call(n: int, call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n


class Variants:
    """Every variant, each a coroutine function measuring one batch (seconds per operation)."""

    def __init__(self, calls: int, creations: int) -> None:
        self.calls = calls
        self.creations = creations
        self.api = client()
        self.view = self.api.with_options(timeout=2.0)
        self.tagged = self.api.with_options(timeout=2.0, headers={"X-Request-Id": "bench"})
        self.seen: list[object] = []
        self.metrics: Any = None
        try:
            from prometheus_client import CollectorRegistry

            from memcachier_async.contrib.prometheus import ClientMetrics
        except ImportError:  # the prometheus extra is not installed
            pass
        else:
            self.metrics = ClientMetrics(CollectorRegistry())

    def names(self) -> list[str]:
        names = ["create_view", "create_client", "call_client", "call_view", "call_tagged"]
        names.append("hooks_none")
        names.append("hooks_one")
        if self.metrics is not None:
            names.append("hooks_prometheus")
        return names

    async def run(self, name: str) -> float:
        api = self.api
        if name == "create_view":
            return per_op(self.creations, self._make_views)
        if name == "create_client":
            return per_op(self.creations, self._make_clients)
        if name == "call_view":
            return await per_call(self.calls, self.view.stats)
        if name == "call_tagged":
            return await per_call(self.calls, self.tagged.stats)
        if name == "hooks_one":
            add_hooks(on_request=self.seen.append)
            try:
                return await per_call(self.calls, api.stats)
            finally:
                remove_hooks(on_request=self.seen.append)
                self.seen.clear()
        if name == "hooks_prometheus":
            with self.metrics:
                return await per_call(self.calls, api.stats)
        return await per_call(self.calls, api.stats)  # call_client, hooks_none

    def _make_views(self) -> None:
        for _ in range(self.creations):
            self.api.with_options(timeout=2.0)

    def _make_clients(self) -> None:
        for _ in range(self.creations):
            AsyncAnalytics("bench", "pw", cache_id=1, transport=httpx.MockTransport(_answer))


RATIOS = {
    "with_options() / new AsyncAnalytics": ("create_view", "create_client"),
    "stats() via view(timeout) / via client": ("call_view", "call_client"),
    "stats() via view(timeout, headers) / client": ("call_tagged", "call_client"),
    "stats() one no-op hook / no hook": ("hooks_one", "hooks_none"),
    "stats() ClientMetrics / no hook": ("hooks_prometheus", "hooks_none"),
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--creations", type=int, default=500)
    args = parser.parse_args()
    variants = Variants(args.calls, args.creations)
    names = variants.names()
    await variants.api.stats()  # warm: login skipped (cache_id), caches filled
    rounds: list[dict[str, float]] = []
    for number in range(args.rounds):
        # Small batches, every variant in each round, the order rotated from
        # round to round: load changes hit all variants alike.
        order = names[number % len(names) :] + names[: number % len(names)]
        rounds.append({name: await variants.run(name) for name in order})
    await variants.api.aclose()
    print(
        f"# {args.rounds} rounds; per round and variant {args.calls} calls "
        f"or {args.creations} creations"
    )
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name in names:
        values = [r[name] * 1e6 for r in rounds]
        print(
            f"{name:18} median {statistics.median(values):9.2f} µs  "
            f"(best {min(values):.2f}, worst {max(values):.2f})"
        )
    for label, (top, bottom) in RATIOS.items():
        if top not in names:
            continue
        ratios = sorted(r[top] / r[bottom] for r in rounds)
        quartiles = statistics.quantiles(ratios, n=4)
        best = min(r[top] for r in rounds) / min(r[bottom] for r in rounds)
        print(
            f"{label:40} ×{statistics.median(ratios):.3f}  "
            f"(quartiles {quartiles[0]:.3f}–{quartiles[2]:.3f}; best/best ×{best:.3f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
