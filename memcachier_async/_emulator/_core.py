"""``Emulator``: the state of emulated caches and the handling of every call."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import attrs

from . import _http as h
from ._faults import NO_FAULT, Fault, FaultPlan
from ._sources import (
    TRAFFIC_PROFILES,
    MemcachedServer,
    SimulatedServer,
    StatsSource,
    parse_address,
)
from ._state import EmulatedCache, EmulatedCredential, server_spec, source_from_spec
from ._store import Store

if TYPE_CHECKING:
    import httpx

    from memcachier_async._client import AsyncAnalytics

__all__ = ["Emulator", "RequestRecord"]

T = TypeVar("T")

logger = logging.getLogger("memcachier_async.testing")

_FIRST_CACHE_ID = 1561
_FIRST_MEMCACHIER_ID = 11
_FIRST_CREDENTIAL_ID = 40

_PROXY_STATUS = {"bad_gateway": 502, "unavailable": 503, "gateway_timeout": 504}
# The request log keeps this many of the latest requests: a long-running
# emulator (the CLI's) must not grow without bound.
_REQUEST_LOG_SIZE = 10_000


@attrs.frozen
class RequestRecord:
    """One request the emulator answered: ``status`` is ``None`` when the
    connection was dropped instead; ``time`` is Unix seconds (``time.time()``)
    when the answer was ready; ``endpoint`` is ``None`` for a path the API
    does not have."""

    method: str
    path: str
    status: int | None
    time: float
    endpoint: str | None


class Emulator:
    """A local MemCachier Analytics API: caches, credentials, stats and history.

    ``Emulator()`` holds one cache (id 1561) on three simulated servers,
    with one primary credential that has every capability
    (:attr:`username`, :attr:`password`). ``servers`` is a count of
    simulated servers, or a sequence of stats sources, where a
    ``"host:port"`` string is a real memcached server; ``servers=None``
    starts with no cache (add them with :meth:`add_cache`).

    Serve it in process with :meth:`transport` (no sockets) or over TCP with
    :meth:`serve`. History is sampled every ``history_interval`` seconds
    (keeping ``history_size`` samples) while the emulator runs: inside
    ``with emulator:``, ``async with emulator:`` or :meth:`serve`; or call
    :meth:`sample`. ``traffic`` is a rate (operations per second) of
    simulated traffic driven while it runs; ``traffic_profile`` is what it
    does: ``"mixed"`` (gets, sets, deletes and touches of popular keys) or
    ``"fill"`` (sets of new keys only, so memory grows steadily until the
    servers evict). ``faults`` is a
    :class:`FaultPlan`. ``database`` is an SQLite file that keeps caches and
    credentials across restarts; when it already holds caches, they replace
    the default cache.
    """

    def __init__(
        self,
        *,
        servers: int | Sequence[StatsSource | str] | None = 3,
        cache_id: int | None = None,
        memcachier_id: int | None = None,
        username: str | None = None,
        password: str | None = None,
        faults: FaultPlan | None = None,
        history_interval: float = 60.0,
        history_size: int = 1440,
        history_ports: bool = True,
        traffic: float = 0.0,
        traffic_profile: str = "mixed",
        seed: int = 0,
        database: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        json_errors: bool = False,
    ) -> None:
        if history_interval <= 0:
            raise ValueError("history_interval must be positive")
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        if traffic < 0:
            raise ValueError("traffic must not be negative")
        if traffic_profile not in TRAFFIC_PROFILES:
            raise ValueError(
                f"traffic_profile must be one of {', '.join(TRAFFIC_PROFILES)}, "
                f"not {traffic_profile!r}"
            )
        self.faults = faults
        self.history_interval = history_interval
        self.history_size = history_size
        self.history_ports = history_ports
        self.traffic = traffic
        self.traffic_profile = traffic_profile
        self.seed = seed
        self.json_errors = json_errors
        self._clock = clock
        self._lock = threading.RLock()
        self._caches: dict[int, EmulatedCache] = {}
        self._by_username: dict[str, EmulatedCredential] = {}
        self._next_credential_id = _FIRST_CREDENTIAL_ID
        self._ticker: _Ticker | None = None
        self._last_sample: float | None = None  # clock time of the latest sample
        #: Calls received, by endpoint name (``"stats"``), faults included.
        self.calls: Counter[str] = Counter()
        #: The latest requests answered, oldest first (see :class:`RequestRecord`).
        self.requests: deque[RequestRecord] = deque(maxlen=_REQUEST_LOG_SIZE)
        self._store = Store(database) if database is not None else None
        if self._store is not None and self._load():
            return
        if servers is not None:
            cache = self.add_cache(servers, cache_id=cache_id, memcachier_id=memcachier_id)
            cache.add_credential(username, password, primary=True)

    def __repr__(self) -> str:
        return f"<Emulator caches={sorted(self._caches)} faults={self.faults!r}>"

    # --- caches and credentials ---------------------------------------------

    @property
    def caches(self) -> list[EmulatedCache]:
        with self._lock:
            return [self._caches[k] for k in sorted(self._caches)]

    @property
    def cache(self) -> EmulatedCache:
        """The first cache (the default one)."""
        caches = self.caches
        if not caches:
            raise LookupError("the emulator has no cache")
        return caches[0]

    @property
    def credential(self) -> EmulatedCredential:
        """The primary credential of the first cache."""
        primary = self.cache.primary
        if primary is None:
            raise LookupError(f"cache {self.cache.cache_id} has no primary credential")
        return primary

    @property
    def username(self) -> str:
        return self.credential.sasl_username

    @property
    def password(self) -> str:
        return self.credential.sasl_password

    def add_cache(
        self,
        servers: int | Sequence[StatsSource | str] = 3,
        *,
        cache_id: int | None = None,
        memcachier_id: int | None = None,
    ) -> EmulatedCache:
        """A new cache (without credentials: add them with ``add_credential``)."""
        with self._lock:
            if cache_id is None:
                cache_id = max(self._caches, default=_FIRST_CACHE_ID - 1) + 1
            if cache_id in self._caches:
                raise ValueError(f"cache {cache_id} exists")
            if memcachier_id is None:
                memcachier_id = _FIRST_MEMCACHIER_ID + len(self._caches)
            if isinstance(servers, int):
                sources: list[StatsSource] = [
                    SimulatedServer(f"mc{i + 1}.c{cache_id}.memcachier.test:11211")
                    for i in range(servers)
                ]
            else:
                sources = [self._source(s, i) for i, s in enumerate(servers)]
            cache = EmulatedCache(
                self,
                cache_id=cache_id,
                memcachier_id=memcachier_id,
                servers=sources,
                history_size=self.history_size,
            )
            self._caches[cache_id] = cache
            self._save_cache(cache)
            return cache

    @staticmethod
    def _source(source: StatsSource | str, index: int) -> StatsSource:
        if isinstance(source, str):
            parse_address(source)
            return MemcachedServer(source)
        if not isinstance(source, StatsSource):
            raise TypeError(f"server {index}: expected a stats source or 'host:port'")
        return source

    def _credentials_of(self, cache_id: int) -> list[EmulatedCredential]:
        with self._lock:
            return sorted(
                (c for c in self._by_username.values() if c.cache_id == cache_id),
                key=lambda c: c.id,
            )

    def _credential(self, cache_id: int, username: str | None) -> EmulatedCredential | None:
        found = self._by_username.get(username) if username is not None else None
        return found if found is not None and found.cache_id == cache_id else None

    def _add_credential(
        self,
        cache_id: int,
        *,
        username: str | None,
        password: str | None,
        capabilities: dict[str, bool],
        primary: bool,
    ) -> EmulatedCredential:
        with self._lock:
            if username is None:
                username = self._new_username()
            elif username in self._by_username:
                raise ValueError(f"a credential named {username!r} exists")
            credential = EmulatedCredential(
                cache_id=cache_id,
                id=self._next_credential_id,
                sasl_username=username,
                sasl_password=password if password is not None else secrets.token_hex(16),
                flush_capability=capabilities["flush_capability"],
                write_capability=capabilities["write_capability"],
                api_capability=capabilities["api_capability"],
            )
            self._next_credential_id += 1
            self._by_username[username] = credential
            self._save_credential(credential)
            if primary:
                self._promote(credential)
            return credential

    def _new_username(self) -> str:
        while True:
            name = secrets.token_hex(3).upper()
            if name not in self._by_username:
                return name

    def _remove_credential(self, cache_id: int, username: str) -> None:
        with self._lock:
            if self._credential(cache_id, username) is None:
                raise KeyError(username)
            del self._by_username[username]
            if self._store is not None:
                self._store.delete_credential(username)

    def _promote(self, credential: EmulatedCredential) -> None:
        for other in self._credentials_of(credential.cache_id):
            if other.primary and other is not credential:
                other.primary = False
                self._save_credential(other)
        credential.primary = True
        self._save_credential(credential)

    # --- persistence --------------------------------------------------------

    def _save_cache(self, cache: EmulatedCache) -> None:
        if self._store is not None:
            self._store.save_cache(
                cache.cache_id,
                cache.memcachier_id,
                cache.active,
                [server_spec(s) for s in cache.servers],
            )

    def _save_credential(self, credential: EmulatedCredential) -> None:
        if self._store is not None:
            self._store.save_credential(credential.record())

    def _load(self) -> bool:
        assert self._store is not None
        rows = self._store.caches()
        if not rows:
            return False
        for row in rows:
            self._caches[row["cache_id"]] = EmulatedCache(
                self,
                cache_id=row["cache_id"],
                memcachier_id=row["memcachier_id"],
                servers=[source_from_spec(spec) for spec in row["servers"]],
                history_size=self.history_size,
                active=row["active"],
            )
        for record in self._store.credentials():
            credential = EmulatedCredential(**record)
            self._by_username[credential.sasl_username] = credential
            self._next_credential_id = max(self._next_credential_id, credential.id + 1)
        return True

    # --- traffic and history ------------------------------------------------

    def drive_traffic(self, ops: int) -> None:
        """Send ``ops`` operations of simulated traffic to every cache with simulated servers."""
        for cache in self.caches:
            if any(isinstance(s, SimulatedServer) for s in cache.servers):
                cache.drive_traffic(ops)

    def sample(self, now: float | None = None) -> None:
        """Record one history sample of every server of every active cache.

        A server that does not answer is left out of that sample. This reads
        real memcached servers synchronously.
        """
        now = self._clock() if now is None else now
        self._last_sample = max(self._last_sample or now, now)
        stamp = str(int(now * 1000))
        for cache in self.caches:
            if not cache.active:
                continue
            records = []
            for server in cache.servers:
                try:
                    stats = server.stats(now)
                except Exception as exc:  # a server that fails is missing from the sample
                    logger.debug("history: %s did not answer: %r", server.name, exc)
                    continue
                records.append(
                    {
                        "memcachier_id": str(cache.memcachier_id),
                        "server": server.name
                        if self.history_ports
                        else parse_address(server.name)[0],
                        "stats": stats,
                        "timestamp": stamp,
                    }
                )
            with self._lock:
                cache._add_sample(records)

    def backfill(self, samples: int, *, ops_per_sample: int = 1000) -> None:
        """Fill the history with ``samples`` past samples, ``history_interval`` apart.

        Simulated traffic is driven between samples, so the history moves;
        the last sample is taken now.
        """
        end = self._clock()
        for i in range(samples):
            self.drive_traffic(ops_per_sample)
            self.sample(end - (samples - 1 - i) * self.history_interval)

    # --- running ------------------------------------------------------------

    def start(self) -> Emulator:
        """Start sampling history (and driving ``traffic``) in a background thread."""
        with self._lock:
            if self._ticker is None:
                self._ticker = _Ticker(self)
                self._ticker.start()
        return self

    def stop(self) -> None:
        """Stop the background thread started by :meth:`start`."""
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.halt()

    @property
    def running(self) -> bool:
        return self._ticker is not None

    def close(self) -> None:
        """Stop, and close connections to real memcached servers."""
        self.stop()
        for cache in self.caches:
            for server in cache.servers:
                if isinstance(server, MemcachedServer):
                    server.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Emulator:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.close)

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that answers in process, for any host: no sockets."""
        from ._transport import EmulatorTransport

        return EmulatorTransport(self)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> AbstractAsyncContextManager[str]:
        """Serve over TCP with uvicorn: ``async with emulator.serve() as base_url:``.

        ``port=0`` picks a free port. The base URL ends in ``/api/v1``. The
        server runs in its own thread (so it works under trio too), and
        history is sampled while it runs.
        """
        from ._server import serve

        return serve(self, host, port)

    def client(self, credential: EmulatedCredential | None = None, **kwargs: Any) -> AsyncAnalytics:
        """An :class:`AsyncAnalytics` on the in-process transport, logged in as
        ``credential`` (default: the first cache's primary)."""
        from memcachier_async._client import AsyncAnalytics

        credential = credential or self.credential
        kwargs.setdefault("transport", self.transport())
        return AsyncAnalytics(credential.sasl_username, credential.sasl_password, **kwargs)

    # --- answering a request -----------------------------------------------

    async def handle(
        self, method: str, raw_path: str, authorization: str | None, body: bytes
    ) -> h.Reply | h.Drop:
        """The answer to one request (or a :class:`Drop` of the connection)."""
        route = h.route(method, raw_path)
        reply = await self._answer(route, authorization, body)
        record = RequestRecord(
            method=method,
            path=raw_path.partition("?")[0],
            status=reply.status if isinstance(reply, h.Reply) else None,
            time=time.time(),
            endpoint=None if isinstance(route, h.Reply) else route.endpoint,
        )
        with self._lock:
            self.requests.append(record)
        return reply

    async def _answer(
        self, route: h.Route | h.Reply, authorization: str | None, body: bytes
    ) -> h.Reply | h.Drop:
        if isinstance(route, h.Reply):
            # Auth comes first on every request, even one to no endpoint.
            with self._lock:
                known = self._authenticate(authorization) is not None
            return route if known else self._unauthorized()
        with self._lock:
            self.calls[route.endpoint] += 1
        plan = self.faults
        fault = plan.decide(route.endpoint) if plan is not None else NO_FAULT
        if fault.delay:
            await anyio.sleep(fault.delay)
        early = self._early(fault, route.endpoint, plan)
        if early is not None:
            return early
        reply = await self._perform(route, authorization, body, fault)
        if fault.kind == "act_then_drop":
            return h.Drop(reset=False)
        if fault.kind == "malformed" and reply.status == 200:
            return h.malformed(fault.pick)
        return reply

    def _early(
        self, fault: Fault, endpoint: str, plan: FaultPlan | None
    ) -> h.Reply | h.Drop | None:
        """The answer of a fault that strikes before the call is carried out."""
        kind = fault.kind
        if kind == "reset":
            return h.Drop(reset=True)
        if kind == "server_error" or (kind == "partial" and endpoint not in ("stats", "flush")):
            return self._error(500, h.SERVER_ERROR)
        if kind == "rate_limit" and plan is not None:
            return h.rate_limited(plan.retry_after)
        if kind in _PROXY_STATUS:
            return h.html_error(_PROXY_STATUS[kind])
        return None

    def _error(self, status: int, text: str) -> h.Reply:
        return h.text_reply(status, text, as_json=self.json_errors)

    def _unauthorized(self) -> h.Reply:
        reply = self._error(401, h.UNAUTHORIZED)
        return _with_headers(reply, (("WWW-Authenticate", 'Basic realm="api"'),))

    def _authenticate(self, authorization: str | None) -> EmulatedCredential | None:
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        found = self._by_username.get(username) if sep else None
        if found is None:
            # Compare anyway, so an unknown name takes as long as a wrong password.
            hmac.compare_digest(password.encode(), b"-" * 32)
            return None
        if not hmac.compare_digest(password.encode(), found.sasl_password.encode()):
            return None
        return found

    def _authorize(
        self, route: h.Route, authorization: str | None
    ) -> tuple[EmulatedCredential, EmulatedCache] | h.Reply:
        with self._lock:
            credential = self._authenticate(authorization)
            if credential is None:
                return self._unauthorized()
            if not credential.api_capability:
                return self._error(403, h.NOT_AUTHORIZED)
            cache = self._caches.get(credential.cache_id)
            if route.endpoint != "login" and route.cache_id != credential.cache_id:
                # Another cache's id (existing or not): not this credential's business.
                return self._error(403, h.NOT_AUTHORIZED)
            if cache is None or not cache.active:
                return self._error(404, h.NO_CACHE)
            if route.endpoint == "flush" and not credential.flush_capability:
                return self._error(403, h.NOT_AUTHORIZED)
            return credential, cache

    async def _perform(
        self, route: h.Route, authorization: str | None, body: bytes, fault: Fault
    ) -> h.Reply:
        allowed = self._authorize(route, authorization)
        if isinstance(allowed, h.Reply):
            return allowed
        _, cache = allowed
        handler = _HANDLERS[route.endpoint]
        return await handler(self, cache, route, body, fault)

    async def _login(self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault) -> h.Reply:
        return h.json_reply({"cache_id": cache.cache_id})

    async def _stats(self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault) -> h.Reply:
        servers = cache.servers
        skipped = _partial_victim(servers, f)
        now = self._clock()
        results = await _each([s for s in servers if s is not skipped], lambda s: s.stats(now))
        failed = [s.name for s in servers if s is skipped or isinstance(results[s.name], Exception)]
        if failed:
            return self._error(500, f"{h.SERVER_ERROR}: {','.join(failed)}")
        return h.json_reply({s.name: results[s.name] for s in servers})

    async def _history(
        self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault
    ) -> h.Reply:
        return h.json_reply(cache.history())

    async def _flush(self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault) -> h.Reply:
        servers = cache.servers
        skipped = _partial_victim(servers, f)
        results = await _each([s for s in servers if s is not skipped], lambda s: s.flush())
        failed = [s.name for s in servers if s is skipped or isinstance(results[s.name], Exception)]
        if failed:
            return self._error(500, f"{h.SERVER_ERROR}: {','.join(failed)}")
        return h.EMPTY_REPLY

    async def _list(self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault) -> h.Reply:
        return h.json_reply([c.to_json() for c in cache.credentials])

    async def _create(self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault) -> h.Reply:
        credential = cache.add_credential()
        return h.json_reply(credential.to_json(created=True))

    async def _update(self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault) -> h.Reply:
        wanted = _capabilities(body)
        if wanted is None:
            return self._error(400, h.BAD_CAPABILITIES)
        with self._lock:
            credential = self._credential(cache.cache_id, route.username)
            if credential is None:
                return self._error(404, h.NO_CREDENTIAL)
            for name, value in wanted.items():
                setattr(credential, name, value)
            self._save_credential(credential)
            return h.json_reply(credential.capabilities())

    async def _promote_call(
        self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault
    ) -> h.Reply:
        with self._lock:
            credential = self._credential(cache.cache_id, route.username)
            if credential is None:
                return self._error(404, h.NO_CREDENTIAL)
            self._promote(credential)
            return h.json_reply(credential.to_json())

    async def _delete(self, cache: EmulatedCache, route: h.Route, body: bytes, f: Fault) -> h.Reply:
        with self._lock:
            credential = self._credential(cache.cache_id, route.username)
            if credential is None:
                return self._error(404, h.NO_CREDENTIAL)
            if credential.primary:
                # A cache keeps its primary credential: promote another one first.
                return self._error(403, h.NOT_AUTHORIZED)
            self._remove_credential(cache.cache_id, credential.sasl_username)
            return h.EMPTY_REPLY


_Handler = Callable[[Emulator, EmulatedCache, h.Route, bytes, Fault], Awaitable[h.Reply]]

_HANDLERS: dict[str, _Handler] = {
    "login": Emulator._login,
    "stats": Emulator._stats,
    "history": Emulator._history,
    "flush": Emulator._flush,
    "list_credentials": Emulator._list,
    "create_credential": Emulator._create,
    "update_credential": Emulator._update,
    "promote_credential": Emulator._promote_call,
    "delete_credential": Emulator._delete,
}


def _with_headers(reply: h.Reply, headers: tuple[tuple[str, str], ...]) -> h.Reply:
    return h.Reply(reply.status, reply.body, reply.content_type, reply.headers + headers)


def _partial_victim(servers: Sequence[StatsSource], fault: Fault) -> StatsSource | None:
    """The server a ``partial`` fault says did not answer."""
    if fault.kind != "partial" or not servers:
        return None
    return servers[int(fault.pick * len(servers))]


_CAPABILITY_NAMES = ("flush_capability", "write_capability", "api_capability")


def _capabilities(body: bytes) -> dict[str, bool] | None:
    """The capabilities an update sets, or ``None`` for a body the service refuses.

    As in the newer revision of the API, an omitted capability is set to
    false. Values must be JSON booleans (the reference's ``"false"`` is refused).
    """
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) - set(_CAPABILITY_NAMES):
        return None
    if any(not isinstance(v, bool) for v in data.values()):
        return None
    return {name: data.get(name, False) for name in _CAPABILITY_NAMES}


async def _each(
    servers: Sequence[StatsSource], call: Callable[[StatsSource], T]
) -> dict[str, T | Exception]:
    """``call`` on every server at once; a server's failure is its result."""
    results: dict[str, T | Exception] = {}

    async def one(server: StatsSource) -> None:
        try:
            if server.blocking:
                results[server.name] = await anyio.to_thread.run_sync(call, server)
            else:
                results[server.name] = call(server)
        except Exception as exc:  # any failure means "this server did not answer"
            results[server.name] = exc

    async with anyio.create_task_group() as group:
        for server in servers:
            group.start_soon(one, server)
    return results


class _Ticker(threading.Thread):
    """Samples history every ``history_interval`` and drives background traffic."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(name="memcachier-emulator-ticker", daemon=True)
        self._emulator = emulator
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        emulator = self._emulator
        interval = emulator.history_interval
        step = min(interval, 0.25)
        last = time.monotonic()
        # Continue the history's rhythm: a sample taken (or backfilled) less
        # than an interval ago is not repeated at once.
        previous = emulator._last_sample
        since = interval if previous is None else emulator._clock() - previous
        next_sample = last + min(interval, max(0.0, interval - since))
        owed = 0.0  # operations of traffic due but not yet sent
        while not self._halt.is_set():
            now = time.monotonic()
            try:
                owed += emulator.traffic * (now - last)
                if owed >= 1:
                    emulator.drive_traffic(int(owed))
                    owed -= int(owed)
                if now >= next_sample:
                    emulator.sample()
                    next_sample += interval * max(1, int((now - next_sample) // interval) + 1)
            except Exception:  # keep sampling; a broken sample must not kill the thread
                logger.exception("emulator background tick failed")
            last = now
            self._halt.wait(max(0.0, min(step, next_sample - time.monotonic())))
