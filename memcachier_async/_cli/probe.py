"""``/probe?cache=NAME``: one cache's stats read on demand, for Prometheus' multi-target pattern.

Prometheus schedules the probes (one target per cache, spread over the
scrape interval, sharded over Prometheus servers with ``hashmod``); an
exporter replica holds no state between them, so any replica can answer
any probe and replicas scale out behind one address.

- A probe's time is Prometheus' ``X-Prometheus-Scrape-Timeout-Seconds``
  less a margin (10 %, at most 0.5 s) so the answer arrives before
  Prometheus gives up; never more than the exporter's ``--timeout``.
- Probes of one cache share one call: concurrent ones wait for the call in
  flight, and an answer is reused for ``cache_ttl`` s (``--probe-cache-ttl``,
  default 1 s), so an HA pair of Prometheus servers costs one call.
- At most ``max_concurrent`` probes run at once. One more waits for a
  free slot, first come first served, but only within its own time: a
  probe that cannot start before its deadline gets :class:`ProbeBusy`
  (served as 503), so an overloaded replica says so instead of piling up
  work Prometheus has already given up on.
- Each cache has one client for the process' lifetime (its cache id
  looked up once), and every client shares one connection pool: probes
  never open a pool or log in of their own.
- A failed probe (the API refused, timed out, named servers that did not
  answer) is that cache's result, ``memcachier_probe_success 0``; it never
  affects another probe.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Mapping

import anyio
import attrs
from prometheus_client.core import GaugeMetricFamily, Metric

from memcachier_async._client import AsyncAnalytics
from memcachier_async._errors import MemcachierError

from .metrics import CacheSample, FailureLog, sample_families

__all__ = [
    "SCRAPE_TIMEOUT_HEADER",
    "ProbeBusy",
    "ProbeResult",
    "Prober",
    "probe_families",
    "probe_timeout",
]

logger = logging.getLogger("memcachier_async.exporter")

SCRAPE_TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"
# What a probe leaves Prometheus: a tenth of its timeout, at most half a second.
_MARGIN_SHARE = 0.1
_MAX_MARGIN = 0.5


def probe_timeout(header: str | None, cap: float) -> float:
    """Seconds a probe may take, from Prometheus' scrape-timeout header (``None``: absent).

    The header less 10 % (at most 0.5 s), never more than ``cap``. Raises
    :class:`ValueError` when the header is not a positive, finite number.
    """
    if header is None:
        return cap
    try:
        seconds = float(header)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{SCRAPE_TIMEOUT_HEADER} must be a positive number of seconds")
    return min(cap, seconds - min(_MAX_MARGIN, seconds * _MARGIN_SHARE))


class ProbeBusy(Exception):
    """Every probe slot stayed taken for the whole of a probe's time."""

    def __init__(self, slots: int, waited: float) -> None:
        super().__init__(
            f"Busy: {slots} probes in flight (--max-concurrent-probes) and none "
            f"finished within this probe's {waited:.1f} s."
        )


@attrs.frozen
class ProbeResult:
    cache: str
    sample: CacheSample
    duration: float

    @property
    def success(self) -> bool:
        return self.sample.up


@attrs.define
class _Call:
    """One API call that every concurrent probe of its cache waits for."""

    done: anyio.Event = attrs.Factory(anyio.Event)
    #: The call's outcome; ``None`` if it never ran (no slot) or was cancelled.
    sample: CacheSample | None = None


class Prober:
    """Reads one cache's stats per call of :meth:`probe`, at most ``max_concurrent`` at once.

    Probes of the same cache share: while one calls the API, the others
    wait for its answer, and an answer is reused for ``cache_ttl`` seconds
    (0: only concurrent probes share). Two Prometheus servers of an HA pair
    probing on the same interval so cost one call per cache per interval.
    """

    def __init__(
        self,
        clients: Mapping[str, AsyncAnalytics],
        *,
        max_concurrent: int = 64,
        cache_ttl: float = 1.0,
        failures: FailureLog | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if not (math.isfinite(cache_ttl) and cache_ttl >= 0):
            raise ValueError(f"cache_ttl must be 0 or more seconds, got {cache_ttl!r}")
        self._clients = dict(clients)
        self.max_concurrent = max_concurrent
        self.cache_ttl = cache_ttl
        #: Logs when a cache starts failing and when it recovers.
        self.failures = failures if failures is not None else FailureLog()
        # Created in the event loop, on first use (anyio < 4.5 needs one).
        self._limiter: anyio.CapacityLimiter | None = None
        self._calls: dict[str, _Call] = {}
        # cache → (until when it may be reused, on anyio's clock; the sample)
        self._recent: dict[str, tuple[float, CacheSample]] = {}
        #: Probes answered, by result: success, failure, busy.
        self.results: Counter[str] = Counter()
        #: Stats calls the probes made (fewer than probes when they share).
        self.api_calls = 0

    def __contains__(self, cache: object) -> bool:
        return cache in self._clients

    @property
    def caches(self) -> tuple[str, ...]:
        return tuple(self._clients)

    @property
    def in_flight(self) -> int:
        return 0 if self._limiter is None else int(self._limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        return 0 if self._limiter is None else self._limiter.statistics().tasks_waiting

    async def probe(self, cache: str, *, within: float) -> ProbeResult:
        """The cache's stats now, within ``within`` seconds (waiting for a slot included).

        A call of the same cache in flight is waited for rather than made
        again; an answer younger than ``cache_ttl`` is reused. Raises
        :class:`ProbeBusy` when no slot frees in time, and :class:`KeyError`
        for a cache that is not configured.
        """
        api = self._clients[cache]
        started = anyio.current_time()
        deadline = started + within
        try:
            sample = await self._shared(cache, api, deadline)
        except ProbeBusy:
            self.results["busy"] += 1
            raise
        self.results["success" if sample.up else "failure"] += 1
        return ProbeResult(cache, sample, anyio.current_time() - started)

    async def _shared(self, cache: str, api: AsyncAnalytics, deadline: float) -> CacheSample:
        while True:
            recent = self._recent.get(cache)
            if recent is not None and anyio.current_time() < recent[0]:
                return recent[1]
            call = self._calls.get(cache)
            if call is None:
                return await self._lead(cache, api, deadline)
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await call.done.wait()
            if not call.done.is_set():
                return CacheSample.failed(
                    TimeoutError(f"no stats within the probe's time ({cache!r})")
                )
            if call.sample is not None:
                return call.sample
            # The probe that called got no answer (no slot, or cancelled): call now.

    async def _lead(self, cache: str, api: AsyncAnalytics, deadline: float) -> CacheSample:
        call = self._calls[cache] = _Call()
        try:
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(self.max_concurrent)
            limiter = self._limiter
            waited_from = anyio.current_time()
            acquired = False
            with anyio.move_on_after(max(0.0, deadline - waited_from)):
                await limiter.acquire()
                acquired = True
            if not acquired:
                raise ProbeBusy(self.max_concurrent, anyio.current_time() - waited_from)
            try:
                self.api_calls += 1
                sample = await self._read(cache, api, deadline)
            finally:
                limiter.release()
            call.sample = sample
            self.failures.record(cache, sample)
            if self.cache_ttl > 0:
                self._recent[cache] = (anyio.current_time() + self.cache_ttl, sample)
            return sample
        finally:
            del self._calls[cache]
            call.done.set()

    @staticmethod
    async def _read(cache: str, api: AsyncAnalytics, deadline: float) -> CacheSample:
        error: Exception
        started = anyio.current_time()
        with anyio.move_on_after(max(0.0, deadline - started)):
            try:
                stats = await api.stats()
                return CacheSample.ok(stats, anyio.current_time() - started)
            except MemcachierError as exc:
                error = exc
            except Exception as exc:  # a bug here must stay this cache's result
                logger.warning("probe of %r failed unexpectedly", cache, exc_info=True)
                error = exc
            return CacheSample.failed(error, anyio.current_time() - started)
        return _too_late(cache, anyio.current_time() - started)


def _too_late(cache: str, duration: float | None = None) -> CacheSample:
    error = TimeoutError(f"no stats within the probe's time ({cache!r})")
    return CacheSample.failed(error, duration)


def probe_families(result: ProbeResult) -> Iterator[Metric]:
    """What ``/probe`` serves: the probe's outcome, then the cache's own families."""
    yield GaugeMetricFamily(
        "memcachier_probe_success",
        "1 if this probe read the cache's stats, else 0.",
        value=1 if result.success else 0,
    )
    yield GaugeMetricFamily(
        "memcachier_probe_duration_seconds",
        "How long this probe took, waiting for a free slot included.",
        value=result.duration,
    )
    yield from sample_families((result.cache,), {result.cache: result.sample})
