"""What the API returns, as frozen attrs classes.

The classes hold data only. How JSON becomes these objects (digit strings,
millisecond strings, strict booleans) is the converter's business, in
``_convert.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import NewType

import attrs

__all__ = [
    "COUNTERS",
    "GAUGES",
    "Capabilities",
    "Capacity",
    "Credential",
    "EpochMillis",
    "EpochSeconds",
    "HistoryRecord",
    "MemoryUsage",
    "NewCredential",
    "ServerCapacity",
    "ServerMemory",
    "ServerStats",
    "Stats",
    "memory_of",
    "total_of",
]

#: A moment sent as Unix seconds (``1500651085``), decoded to an aware UTC datetime.
EpochSeconds = NewType("EpochSeconds", datetime)
#: A moment sent as milliseconds in a string (``"1490731541096"``).
EpochMillis = NewType("EpochMillis", datetime)
#: An integer sent as a string of digits (``"11"``).
DigitString = NewType("DigitString", int)

_EMPTY: Mapping[str, int] = MappingProxyType({})


def _read_only(value: Mapping[str, int]) -> Mapping[str, int]:
    return value if isinstance(value, MappingProxyType) else MappingProxyType(dict(value))


@attrs.frozen
class ServerStats:
    """The stats of one memcached server, as the API reports them.

    Counters count since the server started (they drop on a restart); the
    gauges ``bytes``, ``curr_items``, ``curr_connections`` and
    ``limit_maxbytes`` are current values. ``time`` is the server's clock.
    Integer fields the SDK does not know yet are kept in ``extra``.
    """

    auth_cmds: int
    auth_errors: int
    bytes: int
    bytes_read: int
    bytes_written: int
    cas_badval: int
    cas_hits: int
    cas_misses: int
    cmd_delete: int
    cmd_flush: int
    cmd_get: int
    cmd_set: int
    cmd_touch: int
    curr_connections: int
    curr_items: int
    decr_hits: int
    decr_misses: int
    delete_hits: int
    delete_misses: int
    evictions: int
    expired: int
    get_hits: int
    get_misses: int
    incr_hits: int
    incr_misses: int
    limit_maxbytes: int
    time: EpochSeconds
    total_connections: int
    total_items: int
    touch_hits: int
    touch_misses: int
    extra: Mapping[str, int] = attrs.field(default=_EMPTY, converter=_read_only)


def _server_view(value: Mapping[str, ServerStats]) -> Mapping[str, ServerStats]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Stats(Mapping[str, ServerStats]):
    """A cache's stats: a read-only mapping of ``"host:port"`` to :class:`ServerStats`.

    A cache is sharded over several servers; the set of keys changes when
    the cache moves to other servers.
    """

    servers: Mapping[str, ServerStats] = attrs.field(converter=_server_view)

    def __getitem__(self, server: str) -> ServerStats:
        return self.servers[server]

    def __iter__(self) -> Iterator[str]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)

    def total(self) -> ServerStats:
        """The cache as one server: counters and gauges summed, ``time`` the latest.

        Raises ``ValueError`` for a cache without servers.
        """
        return total_of(self)

    def memory(self) -> MemoryUsage:
        """Bytes used and allowed, overall and on the fullest server."""
        return memory_of(self)

    def fullest(self) -> ServerMemory | None:
        """The server whose memory is the most used (by ratio), or ``None`` without servers."""
        return self.memory().fullest


@attrs.frozen
class HistoryRecord:
    """One server's stats at one sampling time."""

    memcachier_id: DigitString
    server: str
    stats: ServerStats
    timestamp: EpochMillis


@attrs.frozen
class Capabilities:
    """What a credential may do."""

    flush_capability: bool
    write_capability: bool
    api_capability: bool


@attrs.frozen
class Credential:
    """A credential set (username and password) of a cache.

    ``id`` is ``None`` right after creation. The password is only returned
    once, by :meth:`AsyncAnalytics.create_credential` (see
    :class:`NewCredential`).
    """

    cache_id: int
    id: int | None
    sasl_username: str
    uuid: str | None
    primary: bool
    flush_capability: bool
    write_capability: bool
    api_capability: bool

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            flush_capability=self.flush_capability,
            write_capability=self.write_capability,
            api_capability=self.api_capability,
        )


@attrs.frozen
class NewCredential(Credential):
    """A credential just created, with its password.

    The password is left out of ``repr`` and ``str``; read it from
    ``sasl_password`` and store it somewhere safe: the API never returns it
    again.
    """

    sasl_password: str = attrs.field(repr=False)


# --- one snapshot's arithmetic (gauges and counters: see _insight.py) -------------

#: Fields that are current values, not counts since the server started.
GAUGES: tuple[str, ...] = ("bytes", "curr_connections", "curr_items", "limit_maxbytes")
_NOT_COUNTERS = frozenset({*GAUGES, "time", "extra"})
#: Fields that count since the server started.
COUNTERS: tuple[str, ...] = tuple(
    a.name for a in attrs.fields(ServerStats) if a.name not in _NOT_COUNTERS
)


@attrs.frozen
class ServerMemory:
    """One server's memory: ``used`` of ``limit`` bytes (``usage`` = used / limit)."""

    server: str
    used: int
    limit: int
    usage: float | None


@attrs.frozen
class MemoryUsage:
    """A cache's memory, overall and on its fullest server.

    Shards fill unevenly and evictions start on the fullest one, so
    ``fullest.usage`` can be near 1 while ``usage`` looks comfortable.
    ``fullest`` is ``None`` for a cache without servers.
    """

    used: int
    limit: int
    usage: float | None
    fullest: ServerMemory | None


def total_of(stats: Stats) -> ServerStats:
    """Counters and gauges summed over the servers; ``time`` the latest clock.

    Fields the SDK does not know (``extra``) are left out: their kind is
    unknown, and summing a gauge like ``uptime`` would be meaningless.
    """
    servers = list(stats.values())
    if not servers:
        raise ValueError("a cache without servers has no totals")
    summed = {name: sum(getattr(s, name) for s in servers) for name in (*COUNTERS, *GAUGES)}
    return ServerStats(time=max(s.time for s in servers), **summed)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _server_memory(server: str, stats: ServerStats) -> ServerMemory:
    return ServerMemory(
        server=server,
        used=stats.bytes,
        limit=stats.limit_maxbytes,
        usage=ratio(stats.bytes, stats.limit_maxbytes),
    )


def memory_of(stats: Stats) -> MemoryUsage:
    """Memory used and allowed, overall and on the fullest server."""
    per_server = [_server_memory(name, s) for name, s in stats.items()]
    used = sum(m.used for m in per_server)
    limit = sum(m.limit for m in per_server)
    # Fullest by usage; a server without a limit ranks by bytes alone, below
    # any with one. Ties break on the name, so the answer is stable.
    fullest = max(
        per_server,
        key=lambda m: (m.usage if m.usage is not None else -1.0, m.used, m.server),
        default=None,
    )
    return MemoryUsage(used=used, limit=limit, usage=ratio(used, limit), fullest=fullest)


# --- capacity (computed by ``_capacity.capacity``) ------------------------------------


@attrs.frozen
class ServerCapacity:
    """One server's memory over a history window, and when it runs out.

    ``used_bytes``, ``limit_bytes`` and ``items`` are the server's latest
    ``bytes``, ``limit_maxbytes`` and ``curr_items``. ``fill_rate`` is bytes
    per second, the least-squares slope of ``bytes`` against the sample time
    since the server's last restart. ``seconds_until_full`` is ``0.0`` for a
    full server (``used_bytes >= limit_bytes``, or ``evictions`` rose between
    its last two samples), ``(limit_bytes - used_bytes) / fill_rate`` while
    it fills, else ``None``. ``evictions`` (reset-safe) and ``eviction_rate``
    (per second) cover the window; ``first_eviction`` is the first sample at
    which evictions rose. ``needed_bytes`` is the memory that would also have
    held every item evicted in the window, at the current mean item size:
    ``used_bytes + evictions * (used_bytes // items)``, or ``None`` without
    evictions or items.
    """

    server: str
    used_bytes: int
    limit_bytes: int
    items: int
    fill_rate: float
    seconds_until_full: float | None
    evictions: int
    eviction_rate: float
    first_eviction: datetime | None
    needed_bytes: int | None


def _capacity_view(value: Mapping[str, ServerCapacity]) -> Mapping[str, ServerCapacity]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Capacity:
    """A cache's capacity advice from its history: which server fills up next, and when.

    ``servers`` has one :class:`ServerCapacity` per server of the history;
    ``window`` is the first and last sampling time. ``fullest`` is the
    server with the smallest ``seconds_until_full`` (ties, and servers that
    are not filling, broken by the highest ``used_bytes / limit_bytes``),
    and ``seconds_until_full`` is its. ``evicting`` says whether some server
    evicted items in the window; then ``suggested_limit_bytes`` is the
    plan size that would have held them (a plan's memory is split evenly
    across its servers: the number of servers times the largest
    ``needed_bytes``), else ``None``.
    """

    servers: Mapping[str, ServerCapacity] = attrs.field(converter=_capacity_view)
    window: tuple[datetime, datetime]
    fullest: ServerCapacity | None
    seconds_until_full: float | None
    evicting: bool
    suggested_limit_bytes: int | None
