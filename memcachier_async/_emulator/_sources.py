"""Where a server's stats come from: a simulated memcached, or a real one.

A stats source is one memcached server of a cache. The emulator asks it for
its ``stats`` (the 31 fields the API sends) and to ``flush``. A source that
cannot answer raises :class:`ServerUnavailable` (or any ``OSError``); the
emulator then names it in a ``500 Server error: host:port`` answer, as the
service does.
"""

from __future__ import annotations

import random
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "STATS_FIELDS",
    "TRAFFIC_PROFILES",
    "FillTraffic",
    "MemcachedServer",
    "ServerUnavailable",
    "SimulatedServer",
    "StatsSource",
    "Traffic",
    "parse_address",
]

#: The fields of every stats object the API sends, in the reference's order.
STATS_FIELDS: tuple[str, ...] = (
    "auth_cmds",
    "auth_errors",
    "bytes",
    "bytes_read",
    "bytes_written",
    "cas_badval",
    "cas_hits",
    "cas_misses",
    "cmd_delete",
    "cmd_flush",
    "cmd_get",
    "cmd_set",
    "cmd_touch",
    "curr_connections",
    "curr_items",
    "decr_hits",
    "decr_misses",
    "delete_hits",
    "delete_misses",
    "evictions",
    "expired",
    "get_hits",
    "get_misses",
    "incr_hits",
    "incr_misses",
    "limit_maxbytes",
    "time",
    "total_connections",
    "total_items",
    "touch_hits",
    "touch_misses",
)

_MIB = 1024 * 1024
# memcached's per-item header (flags, CAS, LRU links) is about this size.
_ITEM_OVERHEAD = 50


class ServerUnavailable(ConnectionError):
    """A server of the cache did not answer."""


@runtime_checkable
class StatsSource(Protocol):
    """One memcached server of an emulated cache.

    ``blocking`` says whether :meth:`stats` and :meth:`flush` do I/O; the
    emulator then runs them in a worker thread.
    """

    @property
    def name(self) -> str:
        """``host:port``, the key of this server in a stats answer."""
        ...

    @property
    def blocking(self) -> bool: ...

    def stats(self, now: float) -> dict[str, int]:
        """The 31 stats fields; ``now`` is the emulator's clock in Unix seconds."""
        ...

    def flush(self) -> None:
        """Invalidate every item (memcached's ``flush_all``)."""
        ...


def parse_address(address: str) -> tuple[str, int]:
    """``("host", port)`` from ``host:port`` or ``[v6]:port``."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


class SimulatedServer:
    """An in-process model of one memcached server.

    It keeps keys (with their sizes, not values) in LRU order within
    ``limit_maxbytes``, evicting the least recently used when a set does not
    fit, and counts every operation the way memcached does
    (``cmd_get = get_hits + get_misses``, ...). A flush is lazy, as in
    memcached: flushed items still count in ``bytes`` and ``curr_items``
    until they are next touched or evicted.

    Set ``up = False`` to make the server stop answering (the emulator then
    answers ``500 Server error: <name>`` for stats and flush).
    """

    blocking = False

    def __init__(
        self,
        name: str,
        *,
        limit_maxbytes: int = 64 * _MIB,
        connections: int = 10,
    ) -> None:
        parse_address(name)
        if limit_maxbytes <= 0:
            raise ValueError("limit_maxbytes must be positive")
        self._name = name
        self.limit_maxbytes = limit_maxbytes
        self.up = True
        self._lock = threading.Lock()
        # key -> (item size in bytes, flush generation it was stored in)
        self._items: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._generation = 0
        self._bytes = 0
        self._counts: dict[str, int] = dict.fromkeys(STATS_FIELDS, 0)
        self._counts["curr_connections"] = connections
        self._counts["total_connections"] = connections
        self._counts["auth_cmds"] = connections

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"SimulatedServer({self._name!r}, limit_maxbytes={self.limit_maxbytes})"

    # --- operations ---------------------------------------------------------

    def set(self, key: str, size: int) -> bool:
        """Store ``key`` with a value of ``size`` bytes; ``False`` if it can never fit."""
        item = len(key) + size + _ITEM_OVERHEAD
        with self._lock:
            self._counts["cmd_set"] += 1
            self._counts["bytes_read"] += len(key) + size + 30
            self._counts["bytes_written"] += 8  # "STORED\r\n"
            if item > self.limit_maxbytes:
                return False
            self._drop(key)
            while self._items and self._bytes + item > self.limit_maxbytes:
                _, (old, _) = self._items.popitem(last=False)
                self._bytes -= old
                self._counts["evictions"] += 1
            self._items[key] = (item, self._generation)
            self._bytes += item
            self._counts["total_items"] += 1
            return True

    def get(self, key: str) -> bool:
        """Look ``key`` up; ``True`` on a hit."""
        with self._lock:
            self._counts["cmd_get"] += 1
            self._counts["bytes_read"] += len(key) + 6
            hit = self._live(key)
            if hit:
                self._items.move_to_end(key)
                self._counts["get_hits"] += 1
                self._counts["bytes_written"] += self._items[key][0]
            else:
                self._counts["get_misses"] += 1
                self._counts["bytes_written"] += 5  # "END\r\n"
            return hit

    def delete(self, key: str) -> bool:
        """Delete ``key``; ``True`` if it was there."""
        with self._lock:
            self._counts["cmd_delete"] += 1
            self._counts["bytes_read"] += len(key) + 9
            hit = self._live(key)
            if hit:
                self._drop(key)
            self._counts["delete_hits" if hit else "delete_misses"] += 1
            self._counts["bytes_written"] += 9
            return hit

    def touch(self, key: str) -> bool:
        """Refresh ``key``'s expiry; ``True`` if it was there."""
        with self._lock:
            self._counts["cmd_touch"] += 1
            self._counts["bytes_read"] += len(key) + 12
            hit = self._live(key)
            if hit:
                self._items.move_to_end(key)
            self._counts["touch_hits" if hit else "touch_misses"] += 1
            self._counts["bytes_written"] += 9
            return hit

    def flush(self) -> None:
        """Invalidate every item now; memory is reclaimed lazily."""
        with self._lock:
            self._check_up()
            self._generation += 1
            self._counts["cmd_flush"] += 1

    def stats(self, now: float) -> dict[str, int]:
        """The 31 stats fields at ``now``."""
        with self._lock:
            self._check_up()
            stats = dict(self._counts)
            stats["bytes"] = self._bytes
            stats["curr_items"] = len(self._items)
            stats["limit_maxbytes"] = self.limit_maxbytes
            stats["time"] = int(now)
            return stats

    # --- internals (called with the lock held) ------------------------------

    def _check_up(self) -> None:
        if not self.up:
            raise ServerUnavailable(self._name)

    def _live(self, key: str) -> bool:
        entry = self._items.get(key)
        if entry is None:
            return False
        if entry[1] != self._generation:
            # Flushed earlier: memcached reclaims it now that it is touched.
            self._drop(key)
            return False
        return True

    def _drop(self, key: str) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self._bytes -= entry[0]


#: The default mix of operations driven by :class:`Traffic`.
DEFAULT_MIX: Mapping[str, float] = {"get": 0.70, "set": 0.18, "delete": 0.04, "touch": 0.08}


class Traffic:
    """Seeded, realistic traffic over simulated servers.

    Keys are spread over the servers by hash, as a memcached client does.
    Popularity is skewed (a few hot keys, a long tail), a get that misses is
    usually followed by a set (cache-aside), and values are large enough that
    a small ``limit_maxbytes`` fills and evicts. The same seed gives the same
    operations.
    """

    def __init__(
        self,
        servers: Sequence[SimulatedServer],
        *,
        seed: int = 0,
        keys: int = 5000,
        value_size: tuple[int, int] = (200, 4000),
        mix: Mapping[str, float] = DEFAULT_MIX,
        refill: float = 0.9,
    ) -> None:
        if not servers:
            raise ValueError("traffic needs at least one simulated server")
        unknown = set(mix) - set(DEFAULT_MIX)
        if unknown:
            raise ValueError(f"unknown operations in mix: {sorted(unknown)}")
        self._servers = list(servers)
        self._rng = random.Random(seed)
        self._keys = keys
        self._sizes = value_size
        self._ops = list(mix)
        self._weights = [mix[op] for op in self._ops]
        self._refill = refill

    def _server(self, key: str) -> SimulatedServer:
        return self._servers[zlib.crc32(key.encode()) % len(self._servers)]

    def _key(self) -> str:
        # Squaring a uniform draw skews towards low numbers: hot keys.
        return f"key:{int(self._keys * self._rng.random() ** 2)}"

    def run(self, ops: int) -> None:
        """Send ``ops`` operations (plus the sets that refill misses)."""
        low, high = self._sizes
        chosen = self._rng.choices(self._ops, self._weights, k=ops)
        for op in chosen:
            key = self._key()
            server = self._server(key)
            if op == "get":
                if not server.get(key) and self._rng.random() < self._refill:
                    server.set(key, self._rng.randint(low, high))
            elif op == "set":
                server.set(key, self._rng.randint(low, high))
            elif op == "delete":
                server.delete(key)
            else:
                server.touch(key)


class FillTraffic:
    """Traffic that only stores new keys: memory grows at a steady rate until it evicts.

    Each operation sets a key never used before, with a value of
    ``value_size`` bytes, on the server its hash picks. Nothing is read or
    deleted, so every server's ``bytes`` climbs by about ``ops / servers ×
    (value_size + key and item overhead)`` per call of :meth:`run`, until
    its memory is full; from then on every set evicts the oldest keys.
    """

    def __init__(self, servers: Sequence[SimulatedServer], *, value_size: int = 1000) -> None:
        if not servers:
            raise ValueError("traffic needs at least one simulated server")
        if value_size < 0:
            raise ValueError("value_size must not be negative")
        self._servers = list(servers)
        self._size = value_size
        self._next = 0

    def run(self, ops: int) -> None:
        """Store ``ops`` new keys."""
        for _ in range(ops):
            key = f"fill:{self._next}"
            self._next += 1
            self._servers[zlib.crc32(key.encode()) % len(self._servers)].set(key, self._size)


#: The traffic profiles an emulator can drive: realistic reads and writes, or a steady fill.
TRAFFIC_PROFILES: tuple[str, ...] = ("mixed", "fill")


def _require_pymemcache() -> Any:
    try:
        from pymemcache.client.base import PooledClient
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "real memcached servers need pymemcache: "
            "python -m pip install 'memcachier-async[emulator]'"
        ) from exc
    return PooledClient


class MemcachedServer:
    """A real memcached server, read with its ``stats`` command.

    memcached has no ``cmd_delete`` or ``expired``; the emulator sends
    ``delete_hits + delete_misses`` and ``expired_unfetched`` in their place.
    ``flush`` runs ``flush_all``. Uses pymemcache (the ``emulator`` extra).
    """

    blocking = True

    def __init__(self, address: str, *, timeout: float = 2.0) -> None:
        self._address = parse_address(address)
        self._name = address.strip()
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"MemcachedServer({self._name!r})"

    def _pool(self) -> Any:
        with self._lock:
            if self._client is None:
                pooled_client = _require_pymemcache()
                self._client = pooled_client(
                    self._address,
                    connect_timeout=self._timeout,
                    timeout=self._timeout,
                    max_pool_size=8,
                )
            return self._client

    def stats(self, now: float) -> dict[str, int]:
        raw = {
            (k.decode() if isinstance(k, bytes) else k): v for k, v in self._pool().stats().items()
        }
        return memcached_stats(raw)

    def flush(self) -> None:
        if not self._pool().flush_all(noreply=False):
            raise ServerUnavailable(self._name)

    def close(self) -> None:
        """Close the pooled connections."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def memcached_stats(raw: Mapping[str, Any]) -> dict[str, int]:
    """The API's 31 fields from memcached's ``stats`` output."""

    def num(name: str) -> int:
        value = raw.get(name, 0)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    stats = {name: num(name) for name in STATS_FIELDS}
    stats["cmd_delete"] = num("delete_hits") + num("delete_misses")
    stats["expired"] = num("expired_unfetched")
    return stats
