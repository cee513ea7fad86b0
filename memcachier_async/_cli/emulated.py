"""``--emulator``: any command against caches emulated in this process.

Two caches with simulated traffic and an hour of history, so every
command has something to show without an account. The servers are small
and of unequal sizes, so memory fills unevenly and evictions happen.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from memcachier_async._client import AsyncAnalytics
from memcachier_async._transports.retry import RetryPolicy
from memcachier_async.testing import Emulator, SimulatedServer

from .common import ConfigError, NamedClient

__all__ = ["DEMO_CACHES", "DEMO_USERNAMES", "build_emulator", "emulated_clients", "selected_names"]

_KIB = 1024
#: name → memory limit of each server, in KiB.
DEMO_CACHES: dict[str, tuple[int, ...]] = {
    "web": (2048, 3072, 6144),
    "sessions": (1536, 2048),
}
#: name → usernames of its credentials (the first is the primary), fixed so
#: that examples can name them.
DEMO_USERNAMES: dict[str, tuple[str, ...]] = {
    "web": ("4A1B2C", "5D6E7F"),
    "sessions": ("8A9B0C",),
}
# Operations per second of background traffic, per cache.
_TRAFFIC = 1000.0
# History: one sample a minute over the last hour.
_HISTORY_SAMPLES = 60
_OPS_PER_SAMPLE = 300


def build_emulator(*, traffic: float = _TRAFFIC) -> Emulator:
    """The emulator ``--emulator`` uses: :data:`DEMO_CACHES`, with history filled."""
    emulator = Emulator(servers=None, traffic=traffic, history_interval=60.0, seed=7)
    for name, limits in DEMO_CACHES.items():
        servers = [
            SimulatedServer(f"mc{number}.{name}.memcachier.test:11211", limit_maxbytes=limit * _KIB)
            for number, limit in enumerate(limits, start=1)
        ]
        cache = emulator.add_cache(servers)
        primary, *others = DEMO_USERNAMES[name]
        cache.add_credential(primary, primary=True)
        for username in others:
            # An application's credential: it may read and write, not flush.
            cache.add_credential(username, flush=False)
    emulator.backfill(_HISTORY_SAMPLES, ops_per_sample=_OPS_PER_SAMPLE)
    return emulator


def selected_names(names: Sequence[str], *, multi: bool) -> list[str]:
    """The emulated caches chosen by ``--cache`` (the first only, unless ``multi``)."""
    known = list(DEMO_CACHES)
    unknown = [n for n in names if n not in DEMO_CACHES]
    if unknown:
        raise ConfigError(
            f"the emulator has no cache named {', '.join(map(repr, unknown))}; "
            f"it has {', '.join(known)}"
        )
    if names:
        return list(dict.fromkeys(names))
    return known if multi else known[:1]


@contextlib.asynccontextmanager
async def emulated_clients(
    names: Sequence[str], *, multi: bool, retry: RetryPolicy | None = None
) -> AsyncIterator[list[NamedClient]]:
    """Clients of the emulated caches (the first only, unless ``multi``), in process."""
    selected = selected_names(names, multi=multi)
    emulator = build_emulator()
    by_name = dict(zip(DEMO_CACHES, emulator.caches, strict=True))
    async with emulator:
        transport = emulator.transport()
        clients = []
        for name in selected:
            credential = by_name[name].primary
            assert credential is not None
            api = AsyncAnalytics(
                credential.sasl_username,
                credential.sasl_password,
                transport=transport,
                retry=retry,
            )
            clients.append(NamedClient(name, api))
        try:
            yield clients
        finally:
            for client in clients:
                await client.api.aclose()
