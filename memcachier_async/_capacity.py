"""Capacity advice from a cache's history: which server fills up next, when, and what size
would have stopped its evictions.

Pure functions, no I/O. Built on the rules of ``_insight``: a counter's delta
is reset-safe (a drop means it counts from zero), and an interval in which a
server's own clock moved away from the sampling times (a clock step) is not
counted; a sample whose clock did not move is the same sample served again.

Per server, over the window:

- The fill rate is the least-squares slope of ``bytes`` against the sample
  time, since the server's last restart: a sample at which counters dropped
  and ``bytes`` fell to near zero (at most :data:`RESTART_FRACTION` of the
  previous sample's) starts a new segment, and only the last one is fitted.
  A clock step splits the segment into pieces fitted with one common slope
  and an intercept each, so the jump itself never tilts the line.
- A server is full when ``bytes >= limit_maxbytes``, or when ``evictions``
  rose between its last two samples: memcached evicts only when its memory
  is full, whatever ``bytes`` says.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timezone

import attrs

from ._insight import CLOCK_TOLERANCE, _delta, _interval, _stepped
from ._models import COUNTERS, GAUGES, Capacity, HistoryRecord, ServerCapacity, ServerStats

__all__ = ["RESTART_FRACTION", "capacity"]

#: A sample whose counters dropped starts a new segment (a restart) when its
#: ``bytes`` is at most this fraction of the previous sample's: near zero,
#: as a restarted memcached starts empty. A stats reset drops the counters
#: and keeps the memory; a flush frees memory and keeps the counters.
RESTART_FRACTION = 0.1

# How far a server's clock may move away from the sampling times before the
# interval counts as a clock step: as history_series() with its default
# grouping tolerance of one second.
_TOLERANCE = CLOCK_TOLERANCE + 1.0

_Sample = tuple[datetime, ServerStats]


def _order(sample: _Sample) -> tuple[object, ...]:
    """A total order of one server's samples, so records in any order give one answer."""
    moment, stats = sample
    return (moment, stats.time, *(getattr(stats, name) for name in (*GAUGES, *COUNTERS)))


def _samples_by_server(history: Sequence[HistoryRecord]) -> dict[str, list[_Sample]]:
    """Each server's samples, oldest first; a sample served again (same clock) once."""
    found: dict[str, list[_Sample]] = {}
    for record in history:
        found.setdefault(record.server, []).append((record.timestamp, record.stats))
    by_server: dict[str, list[_Sample]] = {}
    for server in sorted(found):
        kept: list[_Sample] = []
        for sample in sorted(found[server], key=_order):
            if kept and (sample[1].time == kept[-1][1].time or sample[0] == kept[-1][0]):
                # The server's clock did not move (the same sample served
                # again), or two records of one sampling time: one counts.
                continue
            kept.append(sample)
        by_server[server] = kept
    return by_server


def _restarted(previous: ServerStats, current: ServerStats, resets: tuple[str, ...]) -> bool:
    return bool(resets) and current.bytes <= RESTART_FRACTION * previous.bytes


def _slope(pieces: Sequence[Sequence[tuple[float, int]]]) -> float:
    """The least-squares slope of ``y`` on ``x``, common to every piece (each its own intercept)."""
    covariance = variance = 0.0
    for piece in pieces:
        if len(piece) < 2:
            continue
        # Measured from the piece's first byte count, in integers: exact, so an
        # offset common to every sample cannot leak into the slope by rounding.
        first = piece[0][1]
        ys = [float(y - first) for _, y in piece]
        mean_x = sum(x for x, _ in piece) / len(piece)
        mean_y = sum(ys) / len(piece)
        covariance += sum((x - mean_x) * (y - mean_y) for (x, _), y in zip(piece, ys, strict=True))
        variance += sum((x - mean_x) ** 2 for x, _ in piece)
    return covariance / variance if variance else 0.0


@attrs.define
class _Walk:
    """What one pass over a server's samples finds."""

    pieces: list[list[tuple[float, int]]] = attrs.field(factory=list)
    evictions: int = 0
    seconds: float = 0.0
    first_eviction: datetime | None = None
    rose_last: bool = False


def _walk(samples: Sequence[_Sample]) -> _Walk:
    origin = samples[0][0]
    walk = _Walk()
    walk.pieces.append([(0.0, samples[0][1].bytes)])
    for (before, previous), (moment, current) in itertools.pairwise(samples):
        interval, resets = _interval(previous, current)
        x = (moment - origin).total_seconds()
        point = (x, current.bytes)
        elapsed = (moment - before).total_seconds()
        rose = _delta(previous.evictions, current.evictions) > 0
        walk.rose_last = rose
        stepped = _stepped(interval.seconds, elapsed, _TOLERANCE)
        if _restarted(previous, current, resets):
            walk.pieces = [[point]]  # the fit starts again after a restart
        elif stepped:
            walk.pieces.append([point])
        else:
            walk.pieces[-1].append(point)
        if stepped:
            continue  # its counters do not cover its clock's interval, as in insight()
        walk.seconds += interval.seconds
        walk.evictions += interval.deltas["evictions"]
        if rose and walk.first_eviction is None:
            walk.first_eviction = moment
    return walk


def _server_capacity(server: str, samples: Sequence[_Sample]) -> ServerCapacity:
    latest = samples[-1][1]
    used, limit, items = latest.bytes, latest.limit_maxbytes, latest.curr_items
    walk = _walk(samples)
    fill_rate = _slope(walk.pieces)
    until_full: float | None
    if used >= limit or walk.rose_last:
        until_full = 0.0
    elif fill_rate > 0:
        until_full = (limit - used) / fill_rate
    else:
        until_full = None
    needed = used + walk.evictions * (used // items) if walk.evictions and items else None
    return ServerCapacity(
        server=server,
        used_bytes=used,
        limit_bytes=limit,
        items=items,
        fill_rate=fill_rate,
        seconds_until_full=until_full,
        evictions=walk.evictions,
        eviction_rate=walk.evictions / walk.seconds if walk.seconds else 0.0,
        first_eviction=walk.first_eviction,
        needed_bytes=needed,
    )


def _urgency(server: ServerCapacity) -> tuple[object, ...]:
    """Sorts the server that fills first first: then the fullest by ratio, then by name."""
    until = server.seconds_until_full
    usage = server.used_bytes / server.limit_bytes if server.limit_bytes else -1.0
    return (until is None, until if until is not None else 0.0, -usage, server.server)


def capacity(history: Sequence[HistoryRecord], *, now: datetime | None = None) -> Capacity:
    """Capacity advice from a cache's history records (:meth:`AsyncAnalytics.history`).

    Records may come in any order; each server is read from its own
    records. ``now`` (an aware datetime, default the current time) is the
    window of an empty history, which gives a :class:`Capacity` without
    servers. See :class:`ServerCapacity` and :class:`Capacity` for what each
    number means, and the insight page of the docs for a worked example.
    """
    if now is not None and (not isinstance(now, datetime) or now.utcoffset() is None):
        raise ValueError("now must be an aware datetime (datetime.now(timezone.utc))")
    by_server = _samples_by_server(history)
    servers = {name: _server_capacity(name, samples) for name, samples in by_server.items()}
    if by_server:
        moments = [moment for samples in by_server.values() for moment, _ in samples]
        window = (min(moments), max(moments))
    else:
        moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        window = (moment, moment)
    fullest = min(servers.values(), key=_urgency, default=None)
    needed = [s.needed_bytes for s in servers.values() if s.needed_bytes is not None]
    return Capacity(
        servers=servers,
        window=window,
        fullest=fullest,
        seconds_until_full=fullest.seconds_until_full if fullest is not None else None,
        evicting=any(s.evictions > 0 for s in servers.values()),
        suggested_limit_bytes=len(servers) * max(needed) if needed else None,
    )
