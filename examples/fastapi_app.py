"""FastAPI and memcachier-async: one client per process, a poller in the background.

Run it (``pip install "memcachier-async" fastapi uvicorn``)::

    MEMCACHIER_USERNAME=... MEMCACHIER_PASSWORD=... uvicorn examples.fastapi_app:app

``DASHBOARD_POLL_INTERVAL`` sets the seconds between polls (default 5; a
dashboard of a real cache is fine with 30 or 60). Until the first interval
is measured, the insight endpoints answer 503 "warming up" with a
``Retry-After`` saying when to ask again.

The pattern:

- one ``AsyncAnalytics`` per process, created in the lifespan and closed
  on shutdown (never one per request: each would open its own connection
  pool and log in again);
- a background task that polls the cache's stats on a fixed cadence with
  ``memcachier_async.watch`` and keeps the latest stats and insight;
- handlers that only read what the poller kept: no API call, nothing that
  blocks, while serving a request. A slow or failing MemCachier API never
  slows these endpoints down;
- where a handler does call the API (``/cache/live``, ``/cache/credentials``),
  it uses ``api.with_options(timeout=2.0)``: a 2 s deadline for that call,
  on the same connection pool, login and retry budget as the poller's 30 s;
- models returned as they are (``-> Stats``, ``-> Insight``,
  ``-> list[Credential]``): FastAPI serialises and documents them.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import anyio
from anyio.abc import TaskStatus
from fastapi import FastAPI, HTTPException, Request

from memcachier_async import (
    AsyncAnalytics,
    Credential,
    Insight,
    MemcachierError,
    PollResult,
    Stats,
    watch,
)

#: The deadline of an API call made while serving a request.
REQUEST_DEADLINE = 2.0
#: The environment variable of the seconds between polls, and its default: short,
#: so that the first interval (and the first rates) come soon after startup.
INTERVAL_VARIABLE = "DASHBOARD_POLL_INTERVAL"
DEFAULT_INTERVAL = 5.0


def interval_from(environ: Mapping[str, str]) -> float:
    """The poll interval the environment asks for; a bad value is refused, naming it."""
    text = environ.get(INTERVAL_VARIABLE)
    if text is None:
        return DEFAULT_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{INTERVAL_VARIABLE} must be a positive number of seconds, not {text!r}")
    return seconds


class CacheMonitor:
    """The latest stats and insight of one cache, refreshed in the background."""

    def __init__(self, api: AsyncAnalytics, interval: float) -> None:
        self.api = api
        self.interval = interval
        self.stats: Stats | None = None
        self.insight: Insight | None = None
        self.error: str | None = None
        self.updated: datetime | None = None
        # When the first snapshot arrived (anyio's clock): the first interval ends
        # one interval later.
        self.first_snapshot: float | None = None
        self.rounds = 0
        self.running = False

    def warming_up(self) -> HTTPException:
        """503 until the first interval is measured, with when to ask again."""
        if self.error is not None:
            return HTTPException(503, detail=self.error)
        waited = 0.0 if self.first_snapshot is None else anyio.current_time() - self.first_snapshot
        left = max(1, math.ceil(self.interval - waited))
        return HTTPException(
            503,
            detail=f"warming up: the first interval of {self.interval:g} s is not over yet",
            headers={"Retry-After": str(left)},
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled; report started once the first answer (or error) is in."""
        self.running = True
        started = False
        try:
            async with watch([self.api], interval=self.interval) as poller:
                async for round_ in poller:
                    result = round_.results[0]
                    self._keep(result)
                    self.rounds += 1
                    # A round can end before a slow call answers ("pending").
                    if not started and result.status != "pending":
                        started = True
                        task_status.started()
        finally:
            self.running = False

    def _keep(self, result: PollResult) -> None:
        if result.status == "failed":
            # Keep serving the last good numbers, and say what went wrong.
            self.error = str(result.error)
        elif result.status == "ok":
            self.error = None
            self.stats = result.stats
            self.updated = datetime.now(timezone.utc)
            if self.first_snapshot is None:
                self.first_snapshot = anyio.current_time()
            if result.insight is not None:
                self.insight = result.insight


def create_app(
    make_client: Callable[[], AsyncAnalytics] = AsyncAnalytics.from_env,
    *,
    interval: float | None = None,
) -> FastAPI:
    """The app; ``make_client`` builds the process's one client (default: from the
    environment), polled every ``interval`` seconds (default: ``DASHBOARD_POLL_INTERVAL``)."""
    if interval is None:
        interval = interval_from(os.environ)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with make_client() as api, anyio.create_task_group() as tasks:
            monitor = CacheMonitor(api, interval)
            await tasks.start(monitor.run)  # serve once the first round is in
            app.state.monitor = monitor
            yield
            tasks.cancel_scope.cancel()  # stop polling; then the client closes

    app = FastAPI(title="Cache dashboard", lifespan=lifespan)

    def monitor_of(request: Request) -> CacheMonitor:
        monitor: CacheMonitor = request.app.state.monitor
        return monitor

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        monitor = monitor_of(request)
        if monitor.error is not None:
            raise HTTPException(503, detail=f"cache stats unavailable: {monitor.error}")
        return {"ok": True, "rounds": monitor.rounds, "updated": monitor.updated}

    @app.get("/cache/stats")
    async def cache_stats(request: Request) -> dict[str, Any]:
        monitor = monitor_of(request)
        if monitor.stats is None:
            raise HTTPException(503, detail=monitor.error or "no stats yet")
        total = monitor.stats.total()
        memory = monitor.stats.memory()
        fullest = memory.fullest
        return {
            "servers": len(monitor.stats),
            "items": total.curr_items,
            "get_hits": total.get_hits,
            "get_misses": total.get_misses,
            "memory_used": memory.used,
            "memory_limit": memory.limit,
            "fullest_server": fullest.server if fullest else None,
            "fullest_usage": fullest.usage if fullest else None,
            "updated": monitor.updated,
        }

    @app.get("/cache/servers")
    async def cache_servers(request: Request) -> Stats:
        """Every server's stats from the latest poll, as the API sends them."""
        monitor = monitor_of(request)
        if monitor.stats is None:
            raise HTTPException(503, detail=monitor.error or "no stats yet")
        return monitor.stats

    @app.get("/cache/insight/full")
    async def cache_insight_full(request: Request) -> Insight:
        """Every derived metric of the latest interval, per server and in total."""
        monitor = monitor_of(request)
        if monitor.insight is None:
            raise monitor.warming_up()
        return monitor.insight

    @app.get("/cache/live")
    async def cache_live(request: Request) -> Stats:
        """The stats now, read while serving: within a 2 s deadline, or 504."""
        api = monitor_of(request).api.with_options(timeout=REQUEST_DEADLINE)
        try:
            return await api.stats()
        except MemcachierError as error:
            raise HTTPException(504, detail=f"cache stats unavailable: {error}") from error

    @app.get("/cache/credentials")
    async def cache_credentials(request: Request) -> list[Credential]:
        """The cache's credentials (no passwords: the API never sends them here)."""
        api = monitor_of(request).api.with_options(timeout=REQUEST_DEADLINE)
        try:
            return await api.list_credentials()
        except MemcachierError as error:
            raise HTTPException(504, detail=f"credentials unavailable: {error}") from error

    @app.get("/cache/insight")
    async def cache_insight(request: Request) -> dict[str, Any]:
        monitor = monitor_of(request)
        if monitor.insight is None:
            raise monitor.warming_up()
        total = monitor.insight.total
        return {
            "seconds": monitor.insight.seconds,
            "request_rate": total.request_rate,
            "hit_rate": total.hit_rate,
            "get_hit_rate": total.get_hit_rate,
            "eviction_rate": total.eviction_rate,
            "memory_used": total.bytes,
            "memory_limit": total.max_bytes,
        }

    return app


app = create_app()
