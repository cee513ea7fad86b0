"""What the exporter serves: each cache's stats as Prometheus metric families.

The poller writes the latest result of each cache into an
:class:`ExporterState`; a :class:`StatsCollector` turns that state into
metric families whenever Prometheus scrapes ``/metrics``. A probe turns one
:class:`CacheSample` into the same families (:func:`sample_families`).
Nothing is computed on the scrape path but the mapping below.

Metric names follow the memcached_exporter, so dashboards and alerts made
for it work per server (labels ``cache`` and ``server``; ``memcached_up``
for the memcached mixin's ``MemcachedDown``). The exporter's own health is
under ``memcachier_``. Counters are exported as the servers report them: a
restarted server's counter drops, which Prometheus' ``rate()`` reads as a
reset, never as a negative rate. Nothing is summed across servers here (a
vanished server would make a sum drop, which would look like a reset); sum
in PromQL instead.

Needs the ``prometheus`` extra (prometheus-client).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from memcachier_async._errors import (
    APIError,
    AuthenticationError,
    DecodeError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)
from memcachier_async._models import Capacity, ServerStats, Stats

from .common import describe_error

__all__ = [
    "METRICS_CONTENT_TYPE",
    "CacheSample",
    "ExporterState",
    "FailureLog",
    "Families",
    "StateView",
    "StatsCollector",
    "capacity_families",
    "describe_failure",
    "error_kind",
    "render",
    "sample_families",
]

logger = logging.getLogger("memcachier_async.exporter")

#: The text exposition format prometheus-client's generate_latest writes.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SERVER_LABELS = ("cache", "server")

# memcached_commands_total{command, status}: (command, status) → the fields
# summed. Sets are special-cased below (memcached counts CAS in cmd_set).
_COMMANDS: tuple[tuple[str, str, str], ...] = (
    *(
        (op, status, f"{op}_{field}")
        for op in ("get", "delete", "incr", "decr", "cas", "touch")
        for status, field in (("hit", "hits"), ("miss", "misses"))
    ),
    ("cas", "badval", "cas_badval"),
    ("flush", "hit", "cmd_flush"),
)

# (metric name, help, field) for the one-field families, as memcached_exporter names them.
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("memcached_current_bytes", "Current number of bytes used to store items.", "bytes"),
    ("memcached_limit_bytes", "Number of bytes this server is allowed to use.", "limit_maxbytes"),
    ("memcached_current_items", "Current number of items stored.", "curr_items"),
    ("memcached_current_connections", "Current number of open connections.", "curr_connections"),
)
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("memcached_items", "Items stored since the server started.", "total_items"),
    ("memcached_items_evicted", "Valid items removed to free memory.", "evictions"),
    ("memcached_connections", "Connections opened since the server started.", "total_connections"),
    ("memcached_read_bytes", "Bytes read by this server from the network.", "bytes_read"),
    ("memcached_written_bytes", "Bytes sent by this server to the network.", "bytes_written"),
    # Not in memcached_exporter's set, so under our own prefix.
    ("memcachier_items_expired", "Items that expired (MemCachier's expired).", "expired"),
    ("memcachier_auth_commands", "SASL authentication commands.", "auth_cmds"),
    ("memcachier_auth_errors", "Failed SASL authentications.", "auth_errors"),
)


def error_kind(error: BaseException) -> str:
    """A short label for what went wrong in a poll (``memcachier_poll_errors_total{kind}``)."""
    kinds: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        ((AuthenticationError, PermissionDeniedError), "auth"),
        (NotFoundError, "not_found"),
        (RateLimitError, "rate_limit"),
        (ServerError, "server"),
        (APIError, "api"),
        (TransportError, "transport"),
        (DecodeError, "decode"),
        (TimeoutError, "timeout"),
    )
    for classes, kind in kinds:
        if isinstance(error, classes):
            return kind
    return "other"


# A label value and a log line, not a report: long enough to say why.
_MAX_MESSAGE = 200


def describe_failure(error: BaseException) -> str:
    """``Class: one-line message`` of a failed call, at most 200 characters.

    The SDK's errors never carry credentials (tests/test_secrets.py), so the
    message can be logged and served as is.
    """
    text = f"{type(error).__name__}: {describe_error(error)}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


@attrs.frozen
class CacheSample:
    """A cache after its latest poll: its stats, or what failed.

    ``stats`` is ``None`` when the latest poll failed: the exporter then
    serves ``memcachier_up 0`` and no server metrics for the cache, rather
    than stale values. ``unavailable`` names the servers the API said did
    not answer (``500 Server error: host:port``); ``message`` says what
    failed (:func:`describe_failure`). ``duration`` is how long the stats
    call took, where it is known (probes).
    """

    stats: Stats | None
    finished: float
    error: str | None = None
    unavailable: tuple[str, ...] = ()
    message: str | None = None
    duration: float | None = None

    @property
    def up(self) -> bool:
        return self.stats is not None

    @classmethod
    def ok(cls, stats: Stats, duration: float | None = None) -> CacheSample:
        return cls(stats=stats, finished=time.time(), duration=duration)

    @classmethod
    def failed(cls, error: BaseException, duration: float | None = None) -> CacheSample:
        return cls(
            stats=None,
            finished=time.time(),
            error=error_kind(error),
            unavailable=error.servers if isinstance(error, ServerError) else (),
            message=describe_failure(error),
            duration=duration,
        )


class FailureLog:
    """One WARNING when a cache starts failing, one INFO when it recovers, nothing between.

    A fleet's log then says which caches fail and why (the first error's
    class and message) without a line per scrape; the metrics
    (``memcachier_last_error_info``) carry the latest error meanwhile.
    """

    def __init__(self) -> None:
        self._failing: set[str] = set()

    @property
    def failing(self) -> frozenset[str]:
        return frozenset(self._failing)

    def record(self, cache: str, sample: CacheSample) -> None:
        if sample.up:
            if cache in self._failing:
                self._failing.discard(cache)
                logger.info("cache %r recovered: its stats are read again", cache)
        elif cache not in self._failing:
            self._failing.add(cache)
            logger.warning(
                "cache %r is failing: %s (logged again only once it recovers)",
                cache,
                sample.message,
            )


class ExporterState:
    """The latest sample of each cache, plus poll and error counts.

    Written by the poller, read by scrapes in another thread; each update
    replaces whole values under a lock, so a scrape sees every cache
    either before or after a poll, never half-way.
    """

    def __init__(self, caches: Iterable[str]) -> None:
        self._caches = tuple(caches)
        self._lock = threading.Lock()
        self._samples: dict[str, CacheSample] = {}
        self._last_success: dict[str, float] = {}
        self._polls: Counter[str] = Counter()
        self._skipped: Counter[str] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._round_duration: float | None = None
        self._capacity: dict[str, Capacity] = {}

    @property
    def caches(self) -> tuple[str, ...]:
        return self._caches

    def record_success(self, cache: str, stats: Stats) -> None:
        sample = CacheSample.ok(stats)
        with self._lock:
            self._samples[cache] = sample
            self._last_success[cache] = sample.finished
            self._polls[cache] += 1

    def record_failure(self, cache: str, error: BaseException) -> None:
        sample = CacheSample.failed(error)
        assert sample.error is not None
        with self._lock:
            self._samples[cache] = sample
            self._polls[cache] += 1
            self._errors[(cache, sample.error)] += 1

    def record_capacity(self, cache: str, advice: Capacity) -> None:
        """The cache's latest capacity advice (from its history, read in the background)."""
        with self._lock:
            self._capacity[cache] = advice

    def record_skipped(self, cache: str) -> None:
        """A round found the cache's previous call still running, and did not call again."""
        with self._lock:
            self._skipped[cache] += 1

    def record_round(self, duration: float) -> None:
        """How long the latest round over every cache took."""
        with self._lock:
            self._round_duration = duration

    def sample(self, cache: str) -> CacheSample | None:
        with self._lock:
            return self._samples.get(cache)

    def view(self) -> StateView:
        """A consistent copy of everything, for one scrape."""
        with self._lock:
            return StateView(
                caches=self._caches,
                samples=dict(self._samples),
                last_success=dict(self._last_success),
                polls=dict(self._polls),
                skipped=dict(self._skipped),
                errors=dict(self._errors),
                round_duration=self._round_duration,
                capacity=dict(self._capacity),
            )


@attrs.frozen
class StateView:
    """What a scrape reads: one consistent copy of an :class:`ExporterState`."""

    caches: tuple[str, ...]
    samples: Mapping[str, CacheSample]
    last_success: Mapping[str, float]
    polls: Mapping[str, int]
    skipped: Mapping[str, int]
    errors: Mapping[tuple[str, str], int]
    round_duration: float | None
    capacity: Mapping[str, Capacity] = attrs.field(factory=dict)


def _sets(stats: ServerStats) -> int:
    # memcached counts CAS commands in cmd_set too; memcached_exporter's
    # set/hit is the plain sets. Never below zero, whatever a server sends.
    return max(0, stats.cmd_set - stats.cas_hits - stats.cas_misses - stats.cas_badval)


def _server_families(samples: Mapping[str, CacheSample]) -> Iterator[Metric]:
    up = [(cache, sample.stats) for cache, sample in samples.items() if sample.stats is not None]
    commands = CounterMetricFamily(
        "memcached_commands",
        "Requests by command (get, set, ...) and status (hit, miss, badval).",
        labels=(*_SERVER_LABELS, "command", "status"),
    )
    gauges = {
        name: GaugeMetricFamily(name, text, labels=_SERVER_LABELS) for name, text, _ in _GAUGES
    }
    counters = {
        name: CounterMetricFamily(name, text, labels=_SERVER_LABELS) for name, text, _ in _COUNTERS
    }
    clock = GaugeMetricFamily(
        "memcached_time_seconds", "The server's clock, in Unix seconds.", labels=_SERVER_LABELS
    )
    for cache, stats in up:
        for server, s in stats.items():
            labels = [cache, server]
            for command, status, field in _COMMANDS:
                commands.add_metric([*labels, command, status], getattr(s, field))
            commands.add_metric([*labels, "set", "hit"], _sets(s))
            for name, _, field in _GAUGES:
                gauges[name].add_metric(labels, getattr(s, field))
            for name, _, field in _COUNTERS:
                counters[name].add_metric(labels, getattr(s, field))
            clock.add_metric(labels, s.time.timestamp())
    yield commands
    yield from gauges.values()
    yield from counters.values()
    yield clock


def sample_families(caches: Sequence[str], samples: Mapping[str, CacheSample]) -> Iterator[Metric]:
    """The families of each cache's latest sample: up, servers, and every server's stats.

    Shared by ``/metrics`` (poll mode: every cache polled) and ``/probe``
    (one cache). A cache without a sample yet is down until it answers.
    """
    up = GaugeMetricFamily(
        "memcachier_up",
        "1 if the latest poll (or this probe) read the cache's stats.",
        labels=["cache"],
    )
    servers = GaugeMetricFamily(
        "memcachier_servers", "Servers in the cache's latest stats.", labels=["cache"]
    )
    unavailable = GaugeMetricFamily(
        "memcachier_server_unavailable",
        "1 for each server the API reported as not answering in the latest poll.",
        labels=list(_SERVER_LABELS),
    )
    server_up = GaugeMetricFamily(
        "memcached_up",
        "1 for each server in the cache's latest stats, 0 for each the API named as not answering.",
        labels=list(_SERVER_LABELS),
    )
    last_error = GaugeMetricFamily(
        "memcachier_last_error_info",
        "1 while the cache's latest poll or probe failed; the error's class and one-line "
        "message in the error label.",
        labels=["cache", "error"],
    )
    duration = GaugeMetricFamily(
        "memcachier_scrape_duration_seconds",
        "How long the cache's latest stats call took (probes).",
        labels=["cache"],
    )
    for cache in caches:
        sample = samples.get(cache)
        up.add_metric([cache], 1 if sample is not None and sample.up else 0)
        if sample is None:
            continue
        if sample.message is not None:
            last_error.add_metric([cache, sample.message], 1)
        if sample.duration is not None:
            duration.add_metric([cache], sample.duration)
        if sample.stats is not None:
            servers.add_metric([cache], len(sample.stats))
            for server in sample.stats:
                server_up.add_metric([cache, server], 1)
        for server in sample.unavailable:
            unavailable.add_metric([cache, server], 1)
            server_up.add_metric([cache, server], 0)
    yield from (up, servers, unavailable, server_up, last_error, duration)
    yield from _server_families(samples)


def capacity_families(advice: Mapping[str, Capacity]) -> Iterator[Metric]:
    """Each cache's latest capacity advice (``memcachier_async.capacity``) as gauges.

    The time until full is the fullest server's, and absent while no server
    fills (0 when one is full); the fill rate is the sum of the servers'
    (the cache's bytes per second); the suggested limit is absent without
    evictions in the history window.
    """
    until = GaugeMetricFamily(
        "memcachier_capacity_seconds_until_full",
        "Seconds until the cache's fullest server is full at its fill rate over the history "
        "(0: full or evicting); absent while no server fills.",
        labels=["cache"],
    )
    fill = GaugeMetricFamily(
        "memcachier_capacity_fill_rate_bytes_per_second",
        "The cache's memory growth over its history: the sum of its servers' least-squares "
        "slopes of bytes, per second.",
        labels=["cache"],
    )
    suggested = GaugeMetricFamily(
        "memcachier_capacity_suggested_limit_bytes",
        "A plan size that would have held every item evicted in the history window; absent "
        "without evictions.",
        labels=["cache"],
    )
    for cache, found in sorted(advice.items()):
        if found.seconds_until_full is not None:
            until.add_metric([cache], found.seconds_until_full)
        if found.servers:
            fill.add_metric([cache], sum(s.fill_rate for s in found.servers.values()))
        if found.suggested_limit_bytes is not None:
            suggested.add_metric([cache], found.suggested_limit_bytes)
    yield from (until, fill, suggested)


def _poll_families(view: StateView) -> Iterator[Metric]:
    """What only poll mode has: round duration, poll counts and errors, last success."""
    duration = GaugeMetricFamily(
        "memcachier_last_poll_duration_seconds",
        "How long the latest poll of every cache took (one round).",
    )
    if view.round_duration is not None:
        duration.add_metric([], view.round_duration)
    success = GaugeMetricFamily(
        "memcachier_last_success_timestamp_seconds",
        "When the cache's stats were last read successfully (Unix seconds).",
        labels=["cache"],
    )
    poll_count = CounterMetricFamily(
        "memcachier_polls", "Polls of the cache's stats that finished.", labels=["cache"]
    )
    skipped = CounterMetricFamily(
        "memcachier_skipped_polls",
        "Rounds that did not call the cache: its previous call was still running.",
        labels=["cache"],
    )
    error_count = CounterMetricFamily(
        "memcachier_poll_errors",
        "Failed polls, by kind (auth, server, transport, timeout, ...).",
        labels=["cache", "kind"],
    )
    for cache in view.caches:
        poll_count.add_metric([cache], view.polls.get(cache, 0))
        skipped.add_metric([cache], view.skipped.get(cache, 0))
        if cache in view.last_success:
            success.add_metric([cache], view.last_success[cache])
    for (cache, kind), count in sorted(view.errors.items()):
        error_count.add_metric([cache, kind], count)
    yield from (duration, success, poll_count, skipped, error_count)


class StatsCollector(Collector):
    """Metric families from an :class:`ExporterState`, built at each scrape."""

    def __init__(self, state: ExporterState) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        view = self._state.view()
        yield from sample_families(view.caches, view.samples)
        yield from _poll_families(view)
        yield from capacity_families(view.capacity)


class Families(Collector):
    """Families already built, for :func:`generate_latest` (one probe's answer)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


# --- the text exposition format --------------------------------------------------

_TEXT_TYPES = {"counter": "counter", "gauge": "gauge", "unknown": "untyped"}


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def render(families: Iterable[Metric]) -> bytes:
    """``families`` in Prometheus' text format (0.0.4): what ``generate_latest`` writes, faster.

    prometheus-client checks and escapes every metric and label name on
    every sample; ours are valid by construction, so only label values
    (cache and server names, from the config and the API) are escaped here.
    A family of another type (a histogram, ...) or with samples of other
    names is left to ``generate_latest``. Byte-for-byte the same output
    (tests/test_exporter.py compares them).
    """
    out: list[str] = []
    append = out.append
    for family in families:
        kind = _TEXT_TYPES.get(family.type)
        name = f"{family.name}_total" if family.type == "counter" else family.name
        if kind is None or any(sample.name != name for sample in family.samples):
            append(generate_latest(Families([family])).decode())
            continue
        help_text = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        for sample in family.samples:
            value = floatToGoString(sample.value)  # type: ignore[no-untyped-call]
            stamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
            if sample.labels:
                labels = ",".join(
                    f'{key}="{_escape_value(text)}"' for key, text in sorted(sample.labels.items())
                )
                append(f"{name}{{{labels}}} {value}{stamp}\n")
            else:
                append(f"{name} {value}{stamp}\n")
    return "".join(out).encode()
