"""The exporter: many caches' metrics for Prometheus, from one process or many replicas.

Two ways to run it, on the same routes (an ASGI app served by uvicorn in
this process' asyncio loop, :mod:`.serving`):

- **Poll mode** (``/metrics``): :meth:`Exporter.run` reads every cache of
  the config (or of this replica's shard, :func:`shard_of`) on a fixed
  cadence; a scrape maps the latest results to metric families
  (:mod:`.metrics`) and never waits for the API.
- **Probe mode** (``/probe?cache=NAME``, :mod:`.probe`): Prometheus
  schedules one probe per cache, found through ``/sd``; each probe reads
  that cache's stats on demand. Replicas hold no state, so they scale out
  behind one address while Prometheus shards the caches with ``hashmod``.

Either way: ``/-/healthy``, ``/-/ready``, a landing page at ``/``, 404
elsewhere; ``/metrics`` carries ``memcachier_exporter_build_info``, the
probe counts and prometheus-client's process and platform collectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Literal

import anyio
import anyio.to_thread
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from memcachier_async._client import AsyncAnalytics
from memcachier_async._fanout import fan_out
from memcachier_async._poll import PollResult, watch
from memcachier_async._version import __version__
from memcachier_async.contrib.prometheus import ClientMetrics

from .metrics import (
    METRICS_CONTENT_TYPE,
    ExporterState,
    FailureLog,
    StatsCollector,
    logger,
    render,
)
from .probe import SCRAPE_TIMEOUT_HEADER, ProbeBusy, Prober, probe_families, probe_timeout
from .serving import ServerSettings, serve_asgi

__all__ = ["Exporter", "Mode", "parse_shard", "shard_of"]


class _SelfCollector(Collector):
    """The exporter's own families: build info and probes."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "memcachier_exporter_build_info",
            "Always 1; the exporter's version in a label.",
            labels=["version"],
        )
        info.add_metric([__version__], 1)
        yield info
        prober = self._exporter.prober
        yield GaugeMetricFamily(
            "memcachier_exporter_probes_in_flight",
            "Probes reading a cache now (at most --max-concurrent-probes).",
            value=prober.in_flight,
        )
        yield GaugeMetricFamily(
            "memcachier_exporter_probes_waiting",
            "Probes waiting for a free slot.",
            value=prober.waiting,
        )
        answered = CounterMetricFamily(
            "memcachier_exporter_probes",
            "Probes answered, by result: success, failure (the cache's), busy (no free slot).",
            labels=["result"],
        )
        for result in ("success", "failure", "busy"):
            answered.add_metric([result], prober.results[result])
        yield answered
        yield CounterMetricFamily(
            "memcachier_exporter_probe_api_calls",
            "Stats calls the probes made: fewer than probes when probes of a cache share one.",
            value=prober.api_calls,
        )


# --- sharding --------------------------------------------------------------------


def shard_of(cache: str, shards: int) -> int:
    """The shard (0 to ``shards - 1``) of a cache name: Prometheus' ``hashmod``.

    MD5 of the name's UTF-8 bytes, its last 8 bytes read as a big-endian
    unsigned integer, modulo ``shards``: what a ``hashmod`` relabel rule with
    ``source_labels: [cache]`` computes, so poll-mode shards and Prometheus
    shards split a fleet the same way, on every replica and every restart.
    """
    digest = hashlib.md5(cache.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)``, with ``0 <= I < N``; :class:`ValueError` otherwise."""
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit()):
        raise ValueError(f"expected I/N (for instance 0/2), got {text!r}")
    i, n = int(index), int(count)
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: I must be at least 0 and below N")
    return i, n


# --- polling and serving ---------------------------------------------------------

Mode = Literal["poll", "probe"]

_ROUTES = (
    ("/metrics", "this replica's metrics; in poll mode, every polled cache's"),
    ("/probe?cache={cache}", "one cache's stats, read now (Prometheus' multi-target pattern)"),
    ("/sd", "the configured caches, in Prometheus' HTTP service discovery format"),
    ("/-/healthy", "200 while the process runs"),
    ("/-/ready", "200 once the config is loaded (poll mode: and the first round is done)"),
)


class Exporter:
    """Serves the metrics of many caches: polled on a cadence, or probed on demand.

    ::

        exporter = Exporter([("web", api)], interval=30)
        async with exporter.serve("127.0.0.1", 9151) as url:
            await exporter.run()          # poll mode; in probe mode, just wait

    Polling is :func:`memcachier_async.watch`: rounds on a fixed grid, a
    cache whose previous call is still running is skipped rather than
    called twice. ``timeout`` bounds each cache's stats call (default: the
    interval, at least 10 s), and caps a probe's time. ``shard=(i, n)``
    polls only the caches whose :func:`shard_of` is ``i``; ``/probe`` and
    ``/sd`` serve every cache. ``max_probes`` bounds the probes running at
    once, and probes of one cache share a call for ``probe_cache_ttl``
    seconds (see :mod:`.probe`).

    In poll mode, a background task reads each polled cache's history every
    ``history_interval`` seconds (``None``: never) and serves its capacity
    advice as ``memcachier_capacity_*`` gauges; a scrape never waits for it.
    """

    def __init__(
        self,
        clients: Sequence[tuple[str, AsyncAnalytics]],
        *,
        interval: float = 30.0,
        timeout: float | None = None,
        concurrency: int | None = None,
        mode: Mode = "poll",
        shard: tuple[int, int] | None = None,
        max_probes: int = 64,
        probe_cache_ttl: float = 1.0,
        history_interval: float | None = 600.0,
    ) -> None:
        if not interval > 0:
            raise ValueError("interval must be positive seconds")
        if history_interval is not None and not history_interval > 0:
            raise ValueError("history_interval must be positive seconds, or None")
        self.history_interval = history_interval
        if mode not in ("poll", "probe"):
            raise ValueError(f"mode must be 'poll' or 'probe', not {mode!r}")
        self.mode = mode
        self.shard = shard
        polled = [
            (name, api)
            for name, api in clients
            if mode == "poll" and (shard is None or shard_of(name, shard[1]) == shard[0])
        ]
        self._names = [name for name, _ in polled]
        self._clients = [api for _, api in polled]
        self.caches = tuple(name for name, _ in clients)
        self.interval = interval
        # A short interval must not starve a slow API: at least 10 s per call.
        self.timeout = timeout if timeout is not None else max(interval, 10.0)
        self.concurrency = concurrency
        #: Logs when a cache starts failing and when it recovers (polls and probes).
        self.failures = FailureLog()
        self.prober: Prober = Prober(
            dict(clients),
            max_concurrent=max_probes,
            cache_ttl=probe_cache_ttl,
            failures=self.failures,
        )
        self.state = ExporterState(self._names)
        self.registry = CollectorRegistry(auto_describe=True)
        if mode == "poll":
            self.registry.register(StatsCollector(self.state))
        self.registry.register(_SelfCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        # The exporter's own calls: retries and latency (contrib.prometheus),
        # counted while it polls or serves.
        self.client_metrics = ClientMetrics(self.registry)
        self.rounds = 0
        self._app: Starlette | None = None

    @property
    def polled(self) -> tuple[str, ...]:
        """The caches this replica polls (none in probe mode)."""
        return tuple(self._names)

    @property
    def ready(self) -> bool:
        """Config loaded (it is, once constructed); in poll mode, the first round done too."""
        return self.mode == "probe" or self.rounds > 0

    def _record(self, results: Iterable[PollResult], duration: float) -> None:
        for result in results:
            name = self._names[result.index]
            if result.skipped:
                self.state.record_skipped(name)
            if result.status == "failed":
                assert result.error is not None
                self.state.record_failure(name, result.error)
            elif result.status == "ok":
                assert result.stats is not None
                self.state.record_success(name, result.stats)
            else:
                continue
            sample = self.state.sample(name)
            assert sample is not None
            self.failures.record(name, sample)
        self.state.record_round(duration)
        self.rounds += 1

    async def poll(self) -> None:
        """One round now: every polled cache's stats."""
        await self.run(rounds=1)

    async def advise(self) -> None:
        """Read every polled cache's history now and keep its capacity advice.

        A cache whose history call fails keeps its previous advice (logged
        at debug level: its stats polls report the failure).
        """
        # A history is far larger than stats: at least a minute per call.
        async with fan_out(
            self._clients,
            AsyncAnalytics.capacity,
            timeout=max(self.timeout, 60.0),
            concurrency=self.concurrency,
        ) as results:
            async for result in results:
                name = self._names[result.index]
                if result.value is not None:
                    self.state.record_capacity(name, result.value)
                else:
                    logger.debug("cache %r: no capacity advice: %r", name, result.error)

    async def _advise_every(self, interval: float) -> None:
        while True:
            await self.advise()
            await anyio.sleep(interval)

    async def run(self, *, rounds: int | None = None) -> None:
        """Poll every ``interval`` seconds, ``rounds`` times or until cancelled.

        After the first round, the history of every polled cache is read
        every ``history_interval`` seconds in the background.
        """
        poller = watch(
            self._clients,
            self.interval,
            rounds=rounds,
            timeout=self.timeout,
            concurrency=self.concurrency,
        )
        with self.client_metrics:
            async with anyio.create_task_group() as group:
                async with poller:
                    async for done in poller:
                        self._record(done.results, anyio.current_time() - done.due)
                        if self.rounds == 1 and self.history_interval and self._clients:
                            group.start_soon(self._advise_every, self.history_interval)
                group.cancel_scope.cancel()  # the history task, once polling is done

    # --- routes ------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        """The routes (see :data:`_ROUTES`) as an ASGI app; built once."""
        if self._app is None:
            self._app = _asgi_app(self)
        return self._app

    async def _metrics(self, request: Request) -> Response:
        body = await anyio.to_thread.run_sync(lambda: render(self.registry.collect()))
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    async def _sd(self, request: Request) -> Response:
        groups = [{"targets": [name], "labels": {"cache": name}} for name in self.caches]
        return Response(json.dumps(groups).encode(), media_type="application/json")

    async def _healthy(self, request: Request) -> Response:
        return text(200, "Healthy.")

    async def _ready(self, request: Request) -> Response:
        if self.ready:
            return text(200, "Ready.")
        return text(503, "Not ready: the first poll round is not done.")

    async def _root(self, request: Request) -> Response:
        return HTMLResponse(self._landing())

    async def _probe(self, request: Request) -> Response:
        names = request.query_params.getlist("cache")
        if len(names) != 1 or not names[0]:
            return text(400, "Give one cache: /probe?cache=NAME (the names are listed at /sd).")
        cache = names[0]
        if cache not in self.prober:
            return text(400, f"Unknown cache {cache[:100]!r}: not in the config (see /sd).")
        try:
            timeout = probe_timeout(request.headers.get(SCRAPE_TIMEOUT_HEADER), self.timeout)
        except ValueError as exc:
            return text(400, f"Bad header: {exc}.")
        try:
            result = await self.prober.probe(cache, within=timeout)
        except ProbeBusy as busy:
            return text(503, str(busy))
        return Response(render(probe_families(result)), media_type=METRICS_CONTENT_TYPE)

    def _landing(self) -> str:
        example = self.caches[0] if self.caches else "NAME"
        if self.mode == "poll":
            what = f"poll mode: {len(self._names)} of {len(self.caches)} caches polled every "
            what += f"{self.interval:g} s"
            if self.shard is not None:
                what += f" (shard {self.shard[0]}/{self.shard[1]})"
        else:
            what = f"probe mode: {len(self.caches)} caches, probed on demand"
        items = "\n".join(
            '<li><a href="{href}">{label}</a>: {what}</li>'.format(
                href=html.escape(route.format(cache=urllib.parse.quote(example, safe=""))),
                label=html.escape(route.format(cache=example)),
                what=html.escape(description),
            )
            for route, description in _ROUTES
        )
        return (
            '<!doctype html>\n<html><head><meta charset="utf-8">'
            "<title>memcachier-analytics exporter</title></head>\n<body>\n"
            "<h1>memcachier-analytics exporter</h1>\n"
            f"<p>Version {html.escape(__version__)}; {html.escape(what)}.</p>\n"
            f"<ul>\n{items}\n</ul>\n</body></html>\n"
        )

    @contextlib.asynccontextmanager
    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 9151,
        settings: ServerSettings | None = None,
    ) -> AsyncIterator[str]:
        """Serve the routes with uvicorn (in this asyncio loop) during the block; yields the root.

        Leaving the block stops the server gracefully (see :func:`.serving.serve_asgi`).
        """
        with self.client_metrics:  # probes call the API while serving
            async with serve_asgi(self.app, host, port, settings) as bound:
                shown = f"[{host}]" if ":" in host else host
                scheme = "https" if settings is not None and settings.tls_certfile else "http"
                yield f"{scheme}://{shown}:{bound}/"


# --- the ASGI app --------------------------------------------------------------------


def text(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A plain-text response of one line."""
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status, headers=headers)


def _not_found(request: Request, exc: Exception) -> Response:
    routes = ", ".join(route.format(cache="NAME") for route, _ in _ROUTES)
    return text(404, f"Not found. Routes: /, {routes}.")


def _not_allowed(request: Request, exc: Exception) -> Response:
    allow = exc.headers if isinstance(exc, HTTPException) else None
    return text(405, f"Method not allowed: {request.method[:20]}. Use GET.", headers=allow)


def _internal_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after answering, and uvicorn logs the traceback;
    # the process and the other connections go on.
    return text(500, "Internal error; see the exporter's log.")


class _NoBodies:
    """Answers a request that has a body with 413 and closes its connection, unread.

    No route takes a body; uvicorn would otherwise read and drop one for as
    long as the client sends it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_body(scope["headers"]):
            refusal = text(413, "Request bodies are not accepted.", {"connection": "close"})
            await refusal(scope, receive, send)
            return
        await self._app(scope, receive, send)


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _asgi_app(exporter: Exporter) -> Starlette:
    get = ["GET"]  # Starlette answers HEAD for every GET route
    routes = [
        Route("/", exporter._root, methods=get),
        Route("/metrics", exporter._metrics, methods=get),
        Route("/probe", exporter._probe, methods=get),
        Route("/sd", exporter._sd, methods=get),
        Route("/-/healthy", exporter._healthy, methods=get),
        Route("/-/ready", exporter._ready, methods=get),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_NoBodies)],
        exception_handlers={404: _not_found, 405: _not_allowed, Exception: _internal_error},
    )
    # /metrics/ is not /metrics: a 404, not a redirect.
    app.router.redirect_slashes = False
    return app
