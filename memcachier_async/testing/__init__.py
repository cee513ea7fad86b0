"""A local emulator of the MemCachier Analytics API, for tests and demos.

The testing layer: it may import the SDK, and the SDK never imports it.

::

    from memcachier_async.testing import Emulator

    emulator = Emulator()                      # one cache, three simulated servers
    async with emulator.client() as api:       # in process, no sockets
        stats = await api.stats()

    async with emulator.serve() as base_url:   # over TCP on loopback (uvicorn)
        ...

    with mock_api() as emulator:               # every client of the app, emulated
        ...
    with instant_retries():                    # every retry waits zero
        ...

``emulator.requests`` logs each request answered (method, path, status, time).

Serving over TCP and reading real memcached servers need the ``emulator``
extra (``pip install 'memcachier-async[emulator]'``); the in-process
transport needs only the SDK's own dependencies.

Where the API reference is silent, the emulator chooses (and its tests pin):

- an unknown or wrong credential gets ``401`` ``Invalid username or password.``,
  checked before routing (a path the API does not have then gets ``404``);
- a cache id in the path that is not the credential's gets ``403``;
- a deactivated cache (``cache.active = False``) gets ``404 No cache found.``
  on every call;
- update, promote or delete of a username the cache does not have gets
  ``404`` ``No credential found.``;
- deleting the primary credential gets ``403`` (promote another one first);
- an update body must be a JSON object of booleans; an omitted capability is
  set to false (as the newer revision of the API does); anything else gets
  ``400``;
- managing credentials needs only the API capability.
"""

from memcachier_async._emulator._core import Emulator, RequestRecord
from memcachier_async._emulator._faults import FAULT_KINDS, Fault, FaultPlan, Faults
from memcachier_async._emulator._sources import (
    STATS_FIELDS,
    MemcachedServer,
    ServerUnavailable,
    SimulatedServer,
    StatsSource,
    Traffic,
)
from memcachier_async._emulator._state import EmulatedCache, EmulatedCredential
from memcachier_async.testing._switches import MockAPI, instant_retries, mock_api

__all__ = [
    "FAULT_KINDS",
    "STATS_FIELDS",
    "EmulatedCache",
    "EmulatedCredential",
    "Emulator",
    "Fault",
    "FaultPlan",
    "Faults",
    "MemcachedServer",
    "MockAPI",
    "RequestRecord",
    "ServerUnavailable",
    "SimulatedServer",
    "StatsSource",
    "Traffic",
    "instant_retries",
    "mock_api",
]

# Tracebacks name the public path (memcachier_async.testing.ServerUnavailable).
ServerUnavailable.__module__ = __name__
