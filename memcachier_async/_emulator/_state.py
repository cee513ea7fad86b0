"""The emulator's data: credentials and caches."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from ._sources import FillTraffic, MemcachedServer, SimulatedServer, StatsSource, Traffic

__all__ = ["CacheOwner", "EmulatedCache", "EmulatedCredential"]


@attrs.define(eq=False)
class EmulatedCredential:
    """A credential set of an emulated cache. The password is kept out of ``repr``."""

    cache_id: int
    id: int
    sasl_username: str
    sasl_password: str = attrs.field(repr=False)
    uuid: str | None = None
    primary: bool = False
    flush_capability: bool = True
    write_capability: bool = True
    api_capability: bool = True

    def to_json(self, *, created: bool = False) -> dict[str, Any]:
        """The API's credential object; a just-created one has its password and a null id."""
        body: dict[str, Any] = {
            "cache_id": self.cache_id,
            "id": None if created else self.id,
            "sasl_username": self.sasl_username,
            "uuid": self.uuid,
            "primary": self.primary,
            "flush_capability": self.flush_capability,
            "write_capability": self.write_capability,
            "api_capability": self.api_capability,
        }
        if created:
            body["sasl_password"] = self.sasl_password
        return body

    def capabilities(self) -> dict[str, bool]:
        return {
            "flush_capability": self.flush_capability,
            "write_capability": self.write_capability,
            "api_capability": self.api_capability,
        }

    def record(self) -> dict[str, Any]:
        """Every field, for the SQLite store."""
        return attrs.asdict(self)


def server_spec(source: StatsSource) -> dict[str, Any]:
    """How to rebuild ``source`` after a restart (for the SQLite store)."""
    if isinstance(source, SimulatedServer):
        return {"kind": "simulated", "name": source.name, "limit_maxbytes": source.limit_maxbytes}
    if isinstance(source, MemcachedServer):
        return {"kind": "memcached", "address": source.name}
    raise TypeError(f"cannot persist a stats source of type {type(source).__name__}")


def source_from_spec(spec: dict[str, Any]) -> StatsSource:
    if spec["kind"] == "simulated":
        return SimulatedServer(spec["name"], limit_maxbytes=spec["limit_maxbytes"])
    return MemcachedServer(spec["address"])


class CacheOwner(Protocol):
    """What an :class:`EmulatedCache` needs from the emulator that owns it.

    The emulator's core implements this (and imports this module); the
    cache only sees the interface, so the two modules do not import each
    other.
    """

    seed: int
    traffic_profile: str
    _lock: threading.RLock

    @staticmethod
    def _source(source: StatsSource | str, index: int) -> StatsSource: ...

    def _save_cache(self, cache: EmulatedCache) -> None: ...

    def _credentials_of(self, cache_id: int) -> list[EmulatedCredential]: ...

    def _credential(self, cache_id: int, username: str | None) -> EmulatedCredential | None: ...

    def _add_credential(
        self,
        cache_id: int,
        *,
        username: str | None,
        password: str | None,
        capabilities: dict[str, bool],
        primary: bool,
    ) -> EmulatedCredential: ...

    def _remove_credential(self, cache_id: int, username: str) -> None: ...


class EmulatedCache:
    """One cache: its servers, credentials and history.

    Create caches with :meth:`Emulator.add_cache`. Changes made here (a
    credential added, the cache deactivated) are what the API then serves.
    """

    def __init__(
        self,
        emulator: CacheOwner,
        *,
        cache_id: int,
        memcachier_id: int,
        servers: Sequence[StatsSource],
        history_size: int,
        active: bool = True,
    ) -> None:
        self._emulator = emulator
        self.cache_id = cache_id
        self.memcachier_id = memcachier_id
        self._servers: tuple[StatsSource, ...] = tuple(servers)
        self._active = active
        # One entry per sampling time: the records of every server then.
        self._history: deque[list[dict[str, Any]]] = deque(maxlen=history_size)
        self._traffic: Traffic | FillTraffic | None = None

    def __repr__(self) -> str:
        return (
            f"<EmulatedCache cache_id={self.cache_id} memcachier_id={self.memcachier_id} "
            f"servers={[s.name for s in self._servers]} active={self._active}>"
        )

    # --- servers ------------------------------------------------------------

    @property
    def servers(self) -> tuple[StatsSource, ...]:
        return self._servers

    def set_servers(self, servers: Sequence[StatsSource | str]) -> None:
        """Move the cache to other servers (a cluster switch); a string is ``host:port``
        of a real memcached."""
        with self._emulator._lock:
            self._servers = tuple(self._emulator._source(s, i) for i, s in enumerate(servers))
            self._traffic = None
            self._emulator._save_cache(self)

    @property
    def active(self) -> bool:
        """``False`` for a deprovisioned cache: its credentials still authenticate,
        but every call answers ``404 No cache found.``"""
        return self._active

    @active.setter
    def active(self, value: bool) -> None:
        with self._emulator._lock:
            self._active = bool(value)
            self._emulator._save_cache(self)

    def drive_traffic(self, ops: int) -> None:
        """Send ``ops`` operations of traffic to the simulated servers: seeded and
        realistic, or new keys only with the emulator's ``traffic_profile="fill"``."""
        with self._emulator._lock:
            if self._traffic is None:
                simulated = [s for s in self._servers if isinstance(s, SimulatedServer)]
                if not simulated:
                    raise ValueError(f"cache {self.cache_id} has no simulated servers")
                if self._emulator.traffic_profile == "fill":
                    self._traffic = FillTraffic(simulated)
                else:
                    self._traffic = Traffic(simulated, seed=self._emulator.seed + self.cache_id)
            traffic = self._traffic
        traffic.run(ops)

    # --- credentials --------------------------------------------------------

    @property
    def credentials(self) -> list[EmulatedCredential]:
        """The cache's credentials, oldest first (a snapshot)."""
        return self._emulator._credentials_of(self.cache_id)

    @property
    def primary(self) -> EmulatedCredential | None:
        return next((c for c in self.credentials if c.primary), None)

    def credential(self, username: str) -> EmulatedCredential:
        """The credential ``username`` of this cache; ``KeyError`` if there is none."""
        found = self._emulator._credential(self.cache_id, username)
        if found is None:
            raise KeyError(username)
        return found

    def add_credential(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        api: bool = True,
        flush: bool = True,
        write: bool = True,
        primary: bool = False,
    ) -> EmulatedCredential:
        """A new credential of this cache; username and password are generated when not given."""
        return self._emulator._add_credential(
            self.cache_id,
            username=username,
            password=password,
            capabilities={
                "api_capability": api,
                "flush_capability": flush,
                "write_capability": write,
            },
            primary=primary,
        )

    def remove_credential(self, username: str) -> None:
        """Delete credential ``username`` (even the primary one)."""
        self._emulator._remove_credential(self.cache_id, username)

    # --- history ------------------------------------------------------------

    def _add_sample(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._history.append(records)

    def history(self) -> list[dict[str, Any]]:
        """The history records, oldest first, as the API sends them."""
        with self._emulator._lock:
            return [record for sample in self._history for record in sample]
