"""What the API returns, as frozen attrs classes.

The classes hold data only. How JSON becomes these objects (digit strings,
millisecond strings, strict booleans) is the converter's business, in
``_convert.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, NewType

import attrs

if TYPE_CHECKING:
    from ._insight import MemoryUsage, ServerMemory

__all__ = [
    "Capabilities",
    "Credential",
    "EpochMillis",
    "EpochSeconds",
    "HistoryRecord",
    "NewCredential",
    "ServerStats",
    "Stats",
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

    # The arithmetic lives in ``_insight``; imported on call because it
    # builds on these classes.

    def total(self) -> ServerStats:
        """The cache as one server: counters and gauges summed, ``time`` the latest.

        Raises ``ValueError`` for a cache without servers.
        """
        from ._insight import total_of

        return total_of(self)

    def memory(self) -> MemoryUsage:
        """Bytes used and allowed, overall and on the fullest server."""
        from ._insight import memory_of

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
