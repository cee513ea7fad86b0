"""Totals, memory and derived metrics ("processed stats") from raw v1 stats.

Pure functions, no I/O. The rules (the v1 API's stats semantics):

- ``bytes``, ``curr_items``, ``curr_connections`` and ``limit_maxbytes`` are
  gauges: current values, summed across servers. ``time`` is each server's
  own clock. Every other field is a counter, monotonic until the server
  restarts or its stats are reset.
- Per server, a counter's delta is ``current - previous``, or ``current``
  when it dropped (a reset: it counts from zero again). Rates divide by that
  server's own Δtime.
- A server seen for the first time is only a baseline; a server that
  vanished is dropped; a server whose clock did not advance has no interval
  (typically the same sample served twice) and is left out like a baseline.
- A server whose clock went backwards (an NTP step), or, when the wall time
  between the snapshots is known, moved by far more or far less than it,
  has an interval its counters do not cover: it is left out like a
  baseline, named in ``clock_steps``, and the next interval starts from
  its current sample. No rate divides counters by a clock that stepped.
- For the whole cache, rates are the sum of the servers' rates; a hit rate
  divides summed hits by summed lookups, and a fraction divides the cache's
  rates. Averaging per-server ratios would weigh an idle shard like a busy
  one.

Undefined values are ``None``: no lookups means no hit rate, not 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType

import attrs

from ._models import (
    COUNTERS,
    GAUGES,
    HistoryRecord,
    MemoryUsage,
    ServerMemory,
    ServerStats,
    Stats,
    memory_of,
    ratio,
    total_of,
)

__all__ = [
    "CLOCK_TOLERANCE",
    "COUNTERS",
    "GAUGES",
    "PROCESSED_NAMES",
    "Baseline",
    "Insight",
    "MemoryUsage",
    "ProcessedStats",
    "ServerMemory",
    "history_series",
    "insight",
    "memory_of",
    "next_baseline",
    "total_of",
]

# memcached counts CAS commands in cmd_set, so CAS is not added again here;
# auth is connection set-up, not a request for data.
_REQUESTS = (
    "cmd_get",
    "cmd_set",
    "cmd_delete",
    "cmd_touch",
    "cmd_flush",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
)

# The commands of each operation, for its rate and its fraction of requests.
_OPERATIONS: dict[str, tuple[str, ...]] = {
    "cas": ("cas_hits", "cas_misses", "cas_badval"),
    "decr": ("decr_hits", "decr_misses"),
    "delete": ("cmd_delete",),
    "flush": ("cmd_flush",),
    "get": ("cmd_get",),
    "incr": ("incr_hits", "incr_misses"),
    "set": ("cmd_set",),
    "touch": ("cmd_touch",),
}

# Rates: metric → counters summed, per second.
_RATES: dict[str, tuple[str, ...]] = {
    "auth_cmds_rate": ("auth_cmds",),
    "auth_errors_rate": ("auth_errors",),
    "bytes_read_rate": ("bytes_read",),
    "bytes_write_rate": ("bytes_written",),
    "cas_badval_rate": ("cas_badval",),
    "connection_rate": ("total_connections",),
    "eviction_rate": ("evictions",),
    "get_expired_rate": ("expired",),
    "request_rate": _REQUESTS,
    **{f"{op}_rate": counters for op, counters in _OPERATIONS.items()},
}

_HIT_OPS = ("cas", "decr", "delete", "get", "incr", "touch")
# Hit rates: metric → (hit counters, miss counters). A CAS with a stale
# token (cas_badval) found its key but is neither a hit nor a miss.
_HIT_RATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    **{f"{op}_hit_rate": ((f"{op}_hits",), (f"{op}_misses",)) for op in _HIT_OPS},
    "hit_rate": (
        tuple(f"{op}_hits" for op in _HIT_OPS),
        tuple(f"{op}_misses" for op in _HIT_OPS),
    ),
}

# Fractions: metric → the operation's rate, over ``request_rate``.
_FRACTIONS: dict[str, str] = {f"{op}_fraction": f"{op}_rate" for op in _OPERATIONS}

# Gauges: metric → field, summed over the current servers.
_GAUGE_METRICS: dict[str, str] = {
    "bytes": "bytes",
    "connections": "curr_connections",
    "items": "curr_items",
    "max_bytes": "limit_maxbytes",
}

_OPTIONAL = attrs.field(default=None, kw_only=True)


@attrs.frozen
class ProcessedStats:
    """The derived metrics of one server, or of a whole cache, over an interval.

    The names are those the newer MemCachier API computes on its side.
    ``*_rate`` fields without "hit" are per second; ``*_hit_rate`` are hits
    over hits and misses of that operation (``hit_rate``: of all of them);
    ``*_fraction`` are that operation's share of all requests (gets, sets
    including CAS, deletes, touches, flushes, increments and decrements).
    ``bytes``, ``items``, ``connections`` and ``max_bytes`` are the current
    gauges. A value is ``None`` where it is undefined: no interval to divide
    by, or no lookups to compute a hit rate from.
    """

    auth_cmds_rate: float | None = _OPTIONAL
    auth_errors_rate: float | None = _OPTIONAL
    bytes: float | None = _OPTIONAL
    bytes_read_rate: float | None = _OPTIONAL
    bytes_write_rate: float | None = _OPTIONAL
    cas_badval_rate: float | None = _OPTIONAL
    cas_fraction: float | None = _OPTIONAL
    cas_hit_rate: float | None = _OPTIONAL
    cas_rate: float | None = _OPTIONAL
    connection_rate: float | None = _OPTIONAL
    connections: float | None = _OPTIONAL
    decr_fraction: float | None = _OPTIONAL
    decr_hit_rate: float | None = _OPTIONAL
    decr_rate: float | None = _OPTIONAL
    delete_fraction: float | None = _OPTIONAL
    delete_hit_rate: float | None = _OPTIONAL
    delete_rate: float | None = _OPTIONAL
    eviction_rate: float | None = _OPTIONAL
    flush_fraction: float | None = _OPTIONAL
    flush_rate: float | None = _OPTIONAL
    get_expired_rate: float | None = _OPTIONAL
    get_fraction: float | None = _OPTIONAL
    get_hit_rate: float | None = _OPTIONAL
    get_rate: float | None = _OPTIONAL
    hit_rate: float | None = _OPTIONAL
    incr_fraction: float | None = _OPTIONAL
    incr_hit_rate: float | None = _OPTIONAL
    incr_rate: float | None = _OPTIONAL
    items: float | None = _OPTIONAL
    max_bytes: float | None = _OPTIONAL
    request_rate: float | None = _OPTIONAL
    set_fraction: float | None = _OPTIONAL
    set_rate: float | None = _OPTIONAL
    touch_fraction: float | None = _OPTIONAL
    touch_hit_rate: float | None = _OPTIONAL
    touch_rate: float | None = _OPTIONAL

    def __str__(self) -> str:
        """The headline figures, ``n/a`` where one is not known yet: printable as is."""
        return (
            f"{_figure(self.request_rate, '.1f')} requests/s, "
            f"hit rate {_figure(self.hit_rate, '.1%')}, "
            f"{_figure(self.eviction_rate, '.1f')} evictions/s, "
            f"{_figure(self.items, ',.0f')} items, {_figure(self.bytes, ',.0f')} bytes"
        )


#: What ``str()`` of a :class:`ProcessedStats` or an :class:`Insight` shows for
#: a value that is not known yet (``None``): no interval, or no lookups.
_UNKNOWN = "n/a"


def _figure(value: float | None, spec: str) -> str:
    return _UNKNOWN if value is None else format(value, spec)


#: The 36 processed-stats names, in alphabetical order.
PROCESSED_NAMES: tuple[str, ...] = tuple(a.name for a in attrs.fields(ProcessedStats))


def _per_server(value: Mapping[str, ProcessedStats]) -> Mapping[str, ProcessedStats]:
    return MappingProxyType(dict(value))


def _resets(value: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Insight:
    """What a cache did between two snapshots, per server and as a whole.

    ``total`` is the whole cache; ``servers`` has one entry per server of
    the current snapshot (a new or stalled server has its gauges only).
    ``start`` and ``end`` bound the interval: for :func:`insight`, the
    earliest previous and the latest current server clock of the servers
    counted; for :func:`history_series`, the two sampling times.
    ``resets`` names, per server, the counters that dropped.
    ``clock_steps`` names the servers whose clock stepped (backwards, or
    away from the wall time between the snapshots): they start a new
    baseline, like a new server.
    """

    total: ProcessedStats
    servers: Mapping[str, ProcessedStats] = attrs.field(converter=_per_server)
    start: datetime | None
    end: datetime | None
    new_servers: tuple[str, ...] = ()
    vanished_servers: tuple[str, ...] = ()
    stalled_servers: tuple[str, ...] = ()
    resets: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_resets)
    clock_steps: tuple[str, ...] = ()

    @property
    def seconds(self) -> float | None:
        """The length of the interval, when there is one."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()

    def __str__(self) -> str:
        """The cache's headline figures over the interval, or why there is none yet.

        ``print(change)`` never fails: an unknown rate shows as ``n/a``, and
        with no interval at all (every server new, or its clock not moved
        since the previous snapshot: the servers count whole seconds) it says so.
        """
        seconds = self.seconds
        if seconds is None or seconds <= 0:
            waiting = len(self.new_servers) + len(self.stalled_servers) + len(self.clock_steps)
            return f"no interval yet ({waiting} of {len(self.servers)} servers): {self.total}"
        return f"over {seconds:.0f} s: {self.total}"


# --- two snapshots -----------------------------------------------------------


@attrs.frozen
class _Interval:
    """One server's counter deltas over ``seconds`` of its own clock."""

    deltas: Mapping[str, int]
    seconds: float


def _delta(previous: int, current: int) -> int:
    # A counter that dropped restarted from zero: all of it is new.
    return current - previous if current >= previous else current


def _interval(previous: ServerStats, current: ServerStats) -> tuple[_Interval, tuple[str, ...]]:
    deltas: dict[str, int] = {}
    resets: list[str] = []
    for name in COUNTERS:
        before, now = getattr(previous, name), getattr(current, name)
        if now < before:
            resets.append(name)
        deltas[name] = _delta(before, now)
    seconds = (current.time - previous.time).total_seconds()
    return _Interval(deltas, seconds), tuple(resets)


def _sum(intervals: Sequence[_Interval], counters: tuple[str, ...]) -> int:
    return sum(i.deltas[c] for i in intervals for c in counters)


def _processed(intervals: Sequence[_Interval], gauges: Iterable[ServerStats]) -> ProcessedStats:
    """The 36 metrics from the intervals of the servers counted and the current gauges."""
    values: dict[str, float | None] = {}
    gauge_list = list(gauges)
    for metric, field in _GAUGE_METRICS.items():
        values[metric] = float(sum(getattr(s, field) for s in gauge_list))
    if intervals:
        for metric, counters in _RATES.items():
            # Each server's rate uses its own clock; the cache's is their sum.
            values[metric] = sum(sum(i.deltas[c] for c in counters) / i.seconds for i in intervals)
        for metric, (hits, misses) in _HIT_RATES.items():
            hit_count = _sum(intervals, hits)
            values[metric] = ratio(hit_count, hit_count + _sum(intervals, misses))
        # A fraction is a share of the traffic per second: with servers on
        # intervals of different lengths, a ratio of counts would weigh the
        # longer interval more.
        requests = values["request_rate"] or 0.0
        for metric, rate in _FRACTIONS.items():
            values[metric] = ratio(values[rate] or 0.0, requests)
    return ProcessedStats(**values)


#: How far a server's clock may move away from the wall time between two
#: snapshots before it counts as a clock step: this many seconds (clocks
#: tick in whole seconds, and a call takes time), or a tenth of the interval.
CLOCK_TOLERANCE = 5.0


def _stepped(seconds: float, elapsed: float | None, tolerance: float) -> bool:
    """Whether a clock that moved ``seconds`` over ``elapsed`` wall seconds stepped."""
    if seconds < 0:
        return True
    if elapsed is None:
        return False
    return abs(seconds - elapsed) > max(tolerance, 0.1 * elapsed)


def _elapsed_of(elapsed: float | Mapping[str, float] | None, name: str) -> float | None:
    if elapsed is None or isinstance(elapsed, (int, float)):
        return elapsed
    return elapsed.get(name)


def _compare(
    previous: Mapping[str, ServerStats],
    current: Mapping[str, ServerStats],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    elapsed: float | Mapping[str, float] | None = None,
    tolerance: float = CLOCK_TOLERANCE,
) -> Insight:
    intervals: dict[str, _Interval] = {}
    resets: dict[str, tuple[str, ...]] = {}
    new: list[str] = []
    stalled: list[str] = []
    steps: list[str] = []
    servers: dict[str, ProcessedStats] = {}
    for name, now in current.items():
        before = previous.get(name)
        if before is None:
            new.append(name)
            servers[name] = _processed((), (now,))
            continue
        interval, dropped = _interval(before, now)
        if interval.seconds == 0:
            stalled.append(name)
            servers[name] = _processed((), (now,))
            continue
        if _stepped(interval.seconds, _elapsed_of(elapsed, name), tolerance):
            steps.append(name)
            servers[name] = _processed((), (now,))
            continue
        intervals[name] = interval
        if dropped:
            resets[name] = dropped
        servers[name] = _processed((interval,), (now,))
    counted = list(intervals)
    if start is None and counted:
        start = min(previous[name].time for name in counted)
    if end is None and counted:
        end = max(current[name].time for name in counted)
    return Insight(
        total=_processed(list(intervals.values()), current.values()),
        servers=servers,
        start=start,
        end=end,
        new_servers=tuple(new),
        vanished_servers=tuple(name for name in previous if name not in current),
        stalled_servers=tuple(stalled),
        resets=resets,
        clock_steps=tuple(steps),
    )


def insight(
    previous: Stats,
    current: Stats,
    *,
    elapsed: float | Mapping[str, float] | None = None,
    tolerance: float = CLOCK_TOLERANCE,
) -> Insight:
    """What the cache did between two stats snapshots (``previous`` first).

    Every server's rates use its own clock. A server only in ``current`` is
    a baseline (its gauges count, its counters do not); a server only in
    ``previous`` is dropped; a counter that dropped was reset and counts
    from zero.

    A server whose clock went backwards is a baseline too, named in
    ``clock_steps``. Give ``elapsed``, the wall-clock seconds between the
    two snapshots (one number, or one per server), and a server whose clock
    moved more than ``tolerance`` seconds (or a tenth of ``elapsed``) away
    from it is treated the same way: its counters do not cover its clock's
    interval. :func:`watch` does this for you.
    """
    return _compare(previous, current, elapsed=elapsed, tolerance=tolerance)


def next_baseline(previous: Stats | None, current: Stats) -> Stats:
    """The snapshot to compare the next one with, after ``current``.

    Usually ``current`` itself; but a server whose clock did not advance
    (the same sample again) keeps its older sample, so the next interval
    spans the time since that server last moved instead of being lost. A
    server whose clock went backwards starts over from its current sample.
    """
    if previous is None:
        return current
    kept = {
        name: (previous[name] if name in previous and now.time == previous[name].time else now)
        for name, now in current.items()
    }
    if all(kept[name] is current[name] for name in kept):
        return current
    return Stats(kept)


@attrs.define
class Baseline:
    """One cache's baseline between polls, with the wall time of each server's sample.

    :meth:`advance` gives the :class:`Insight` from the baseline to a new
    snapshot, telling :func:`insight` the wall time between them, per
    server, so a clock that stepped either way is caught; then it moves the
    baseline on (:func:`next_baseline`). ``started`` and ``finished`` bound
    the call that read the snapshot, on any monotonic clock; the call's
    length widens the tolerance, since the server read its clock somewhere
    in between.
    """

    stats: Stats | None = None
    # Per server of ``stats``: (middle, half-length) of the call that read it.
    _walls: dict[str, tuple[float, float]] = attrs.field(factory=dict)

    def advance(self, fresh: Stats, started: float, finished: float) -> Insight | None:
        middle, half = (started + finished) / 2, max(0.0, finished - started) / 2
        found: Insight | None = None
        if self.stats is not None:
            walls = self._walls
            elapsed = {name: middle - walls[name][0] for name in fresh if name in walls}
            slack = half + max((walls[name][1] for name in elapsed), default=0.0)
            found = insight(self.stats, fresh, elapsed=elapsed, tolerance=CLOCK_TOLERANCE + slack)
        baseline = next_baseline(self.stats, fresh)
        self._walls = {
            name: (middle, half) if sample is fresh[name] else self._walls[name]
            for name, sample in baseline.items()
        }
        self.stats = baseline
        return found

    def reset(self) -> None:
        """Forget the baseline: the next snapshot is a baseline only."""
        self.stats = None
        self._walls = {}


# --- history -------------------------------------------------------------------


@attrs.define
class _Round:
    first: datetime
    last: datetime
    servers: dict[str, ServerStats]
    stamps: dict[str, datetime] = attrs.field(factory=dict)


def _sampling_rounds(records: Iterable[HistoryRecord], tolerance: timedelta) -> list[_Round]:
    """Records grouped by sampling time: one round holds each server at most once."""
    rounds: list[_Round] = []
    for record in sorted(records, key=lambda r: r.timestamp):
        stamp: datetime = record.timestamp
        latest = rounds[-1] if rounds else None
        if latest is None or record.server in latest.servers or stamp - latest.first > tolerance:
            latest = _Round(stamp, stamp, {})
            rounds.append(latest)
        # A round's time is its latest record's: the sampling is complete then.
        latest.last = stamp
        latest.servers[record.server] = record.stats
        latest.stamps[record.server] = stamp
    return rounds


def history_series(records: Iterable[HistoryRecord], *, tolerance: float = 1.0) -> list[Insight]:
    """An :class:`Insight` per sampling interval of a cache's history, oldest first.

    Records of one sampling time (within ``tolerance`` seconds of each
    other, one per server) form one point. Each server is compared with its
    own previous record, wherever that was, and its rates use its own clock.
    The first sampling time is only a baseline, so ``n`` sampling times give
    ``n - 1`` points; ``start`` and ``end`` of each are sampling times, ready
    to chart ``[(i.end, i.total.hit_rate) for i in history_series(h)]``.
    """
    last: dict[str, ServerStats] = {}
    # When each server's record in ``last`` was sampled: the wall time its
    # clock is checked against.
    sampled_at: dict[str, datetime] = {}
    previous_time: datetime | None = None
    series: list[Insight] = []
    for sampled in _sampling_rounds(records, timedelta(seconds=tolerance)):
        servers = sampled.servers
        baseline = {name: last[name] for name in servers if name in last}
        if baseline:
            elapsed = {
                name: (sampled.stamps[name] - sampled_at[name]).total_seconds() for name in baseline
            }
            series.append(
                _compare(
                    baseline,
                    servers,
                    start=previous_time,
                    end=sampled.last,
                    elapsed=elapsed,
                    tolerance=CLOCK_TOLERANCE + tolerance,
                )
            )
        last.update(servers)
        sampled_at.update(sampled.stamps)
        previous_time = sampled.last
    return series
