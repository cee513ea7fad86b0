"""One call against many caches at once: :func:`fan_out`.

The pieces shared with the poller live here too: turning targets into
clients (credential sets share one pooled ``httpx.AsyncClient``), and
:class:`_Session`, which owns the task group and that client for as long as
results are being read.

Why a session object and not an async generator: the calls run in a task
group while the caller is between two results, and an async generator that
holds a task group open across ``yield`` breaks cancellation on trio and on
asyncio (a cancelled scope would hit the caller's code, and an abandoned
generator is closed later from another task). ``async with`` gives the task
group a scope the caller sees; plain ``async for`` also works, closing
everything after the last result.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._client import (
    DEFAULT_BASE_URL,
    DEFAULT_LIMITS,
    AsyncAnalytics,
    check_base_url,
    client_on_stack,
)
from ._errors import MemcachierError, ServerError
from ._stack import Stack, StackKeywords, StackOptions, build_stack, stack_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "CacheCredentials",
    "CacheResult",
    "CacheTimeout",
    "FanOut",
    "Target",
    "fan_out",
]

T = TypeVar("T")
_Self = TypeVar("_Self", bound="_Session")


def _check_name(instance: CacheCredentials, attribute: attrs.Attribute[str], value: object) -> None:
    # An empty name is only the default of an empty username, which is refused
    # when the cache's client is made: that cache's result, not the fan-out's.
    if not isinstance(value, str) or not (value or not instance.username):
        raise ValueError(f"{attribute.name} must be a non-empty str")


@attrs.frozen
class CacheCredentials:
    """A credential set of one cache, as a fan-out or poll target.

    The password never appears in ``repr``. Give ``cache_id`` to skip the
    login call. ``name`` is what results call the cache
    (:attr:`CacheResult.name`, :attr:`PollResult.name`); it defaults to the
    username.
    """

    username: str
    password: str = attrs.field(repr=False)
    cache_id: int | None = None
    name: str = attrs.field(
        default=attrs.Factory(lambda self: self.username, takes_self=True),
        kw_only=True,
        validator=_check_name,
    )


def _name_of(target: AsyncAnalytics | CacheCredentials) -> str:
    """A target's name: a credential set's ``name``, a client's username."""
    return target.name if isinstance(target, CacheCredentials) else target.username


#: What :func:`fan_out` and :func:`watch` accept for one cache: a client, or
#: a credential set (``CacheCredentials`` or a ``(username, password)`` pair).
Target: TypeAlias = AsyncAnalytics | CacheCredentials | tuple[str, str]
_Resolved: TypeAlias = AsyncAnalytics | CacheCredentials


class CacheTimeout(MemcachierError, TimeoutError):
    """A cache did not answer in time: the call timed out, or the deadline
    passed before it could start (``started`` is then false)."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


@attrs.frozen
class CacheResult(Generic[T]):
    """The outcome of a call for one cache: a ``value`` or an ``error``.

    ``target`` is the client or the :class:`CacheCredentials` (a
    ``(username, password)`` pair given as a target comes back as one), and
    ``name`` its name; ``index`` is its position in the targets; ``elapsed``
    is seconds from the start of the call.
    """

    target: AsyncAnalytics | CacheCredentials
    index: int
    value: T | None = None
    error: Exception | None = None
    elapsed: float = 0.0

    @property
    def name(self) -> str:
        """The cache's name: its :class:`CacheCredentials` ``name`` (by default the
        username), or a client target's username."""
        return _name_of(self.target)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def missing_servers(self) -> tuple[str, ...]:
        """The ``host:port`` of the servers that did not answer ("Server error: a:1,b:2")."""
        return self.error.servers if isinstance(self.error, ServerError) else ()

    def unwrap(self) -> T:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def _as_target(target: Target) -> AsyncAnalytics | CacheCredentials:
    if isinstance(target, (AsyncAnalytics, CacheCredentials)):
        return target
    if isinstance(target, tuple) and len(target) == 2:
        return CacheCredentials(*target)
    # The type only: the value may hold a password.
    raise TypeError(
        "a target is an AsyncAnalytics, a CacheCredentials or a (username, password) "
        f"pair, not {type(target).__name__}"
    )


def _check_concurrency(concurrency: int | None) -> int:
    if concurrency is None:
        return DEFAULT_LIMITS.max_connections or 100
    if type(concurrency) is not int or concurrency < 1:
        raise ValueError("concurrency must be a positive int")
    return concurrency


def _check_seconds(name: str, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive seconds, or None")
    return value


class _Clients:
    """The client of each target, built when first needed.

    Credential sets share one ``httpx.AsyncClient``: the one given, or one
    made here from ``options`` (pool of ``pool_size`` connections unless
    ``options.limits`` says otherwise) and closed by :meth:`aclose`. The
    options were checked when made, so a bad one was refused before this.
    """

    def __init__(
        self,
        targets: Sequence[AsyncAnalytics | CacheCredentials],
        options: StackOptions,
        *,
        pool_size: int,
        base_url: str,
    ) -> None:
        self._targets = targets
        self._options = options
        # Checked now, as the constructor checks it: a bad one is the caller's
        # error, not every cache's.
        self._base_url = check_base_url(base_url)
        self._pool_size = pool_size
        self._stack: Stack | None = None
        self._built: dict[int, AsyncAnalytics] = {}

    def _shared(self) -> Stack:
        if self._stack is None:
            self._stack = build_stack(
                self._options, base_url=self._base_url, pool_size=self._pool_size
            )
        return self._stack

    def get(self, index: int, *, keep: bool = True) -> AsyncAnalytics:
        """The client of target ``index``; raises what the constructor raises.

        ``keep`` keeps a client built from a credential set for the next call
        (and the cache id it logged in for); a one-off call does not need it.
        """
        target = self._targets[index]
        if isinstance(target, AsyncAnalytics):
            return target
        client = self._built.get(index)
        if client is None:
            client = client_on_stack(
                self._shared(),
                target.username,
                target.password,
                cache_id=target.cache_id,
                base_url=self._base_url,
            )
            if keep:
                self._built[index] = client
        return client

    async def aclose(self) -> None:
        self._built.clear()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            with anyio.CancelScope(shield=True):
                await stack.aclose()


class _Session:
    """Owns a task group (and the shared HTTP client) while results are read.

    Subclasses start their work in :meth:`_begin`. Use as ``async with``;
    plain iteration enters on the first result and leaves after the last
    (or when the iteration is cancelled while waiting for a result).
    """

    def __init__(self, clients: _Clients) -> None:
        self._clients = clients
        self._tg: anyio.abc.TaskGroup | None = None
        self._state = "new"
        self._implicit = False

    async def _begin(self, tg: anyio.abc.TaskGroup) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        """Release what :meth:`_begin` made, once the tasks have stopped."""

    async def _enter(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"{type(self).__name__} can only be iterated once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg, self._state = tg, "running"
        try:
            await self._begin(tg)
        except BaseException:
            await self._leave(*sys.exc_info())
            raise

    async def _leave(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> bool:
        if self._state != "running" or self._tg is None:
            return False
        tg, self._tg, self._state = self._tg, None, "closed"
        # Whatever is still running is no longer wanted.
        tg.cancel_scope.cancel()
        try:
            return bool(await tg.__aexit__(exc_type, exc, tb))
        finally:
            self._end()
            await self._clients.aclose()

    async def __aenter__(self: _Self) -> _Self:
        await self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return await self._leave(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Stop: cancel the calls still running and close the shared client."""
        await self._leave()

    async def _start_implicitly(self) -> None:
        if self._state == "new":
            self._implicit = True
            await self._enter()

    async def _fail_implicitly(self) -> None:
        # Iterating without ``async with``: nobody else will clean up.
        if self._implicit:
            await self._leave(*sys.exc_info())


class FanOut(_Session, Generic[T]):
    """The results of :func:`fan_out`, in the order the calls complete."""

    def __init__(
        self,
        targets: Iterable[Target],
        call: Callable[[AsyncAnalytics], Awaitable[T]],
        *,
        concurrency: int | None = None,
        deadline: float | None = None,
        timeout: float | None = None,
        base_url: str = DEFAULT_BASE_URL,
        **keywords: Unpack[StackKeywords],
    ) -> None:
        options = stack_options("fan_out", keywords)
        self._targets = [_as_target(t) for t in targets]
        self._call = call
        self._limit = _check_concurrency(concurrency)
        self._deadline = _check_seconds("deadline", deadline)
        self._timeout = _check_seconds("timeout", timeout)
        super().__init__(_Clients(self._targets, options, pool_size=self._limit, base_url=base_url))
        self._next = 0  # the index of the next target to start
        self._running = 0
        self._remaining = len(self._targets)
        self._deadline_at = math.inf
        self._send: MemoryObjectSendStream[CacheResult[T]] | None = None
        self._receive: MemoryObjectReceiveStream[CacheResult[T]] | None = None

    def __repr__(self) -> str:
        return (
            f"<FanOut targets={len(self._targets)} concurrency={self._limit} "
            f"deadline={self._deadline!r} state={self._state}>"
        )

    @property
    def in_flight(self) -> int:
        """Calls running now (never more than ``concurrency``)."""
        return self._running

    async def _begin(self, tg: anyio.abc.TaskGroup) -> None:
        if self._deadline is not None:
            self._deadline_at = anyio.current_time() + self._deadline
        # Unbounded: a finished call never waits for the reader.
        self._send, self._receive = anyio.create_memory_object_stream[CacheResult[T]](math.inf)
        # ``concurrency`` workers, each starting the next target when its
        # call ends: never more calls at once, and no task (nor limiter
        # round trip) per target.
        for _ in range(min(self._limit, len(self._targets))):
            tg.start_soon(self._work)

    def _end(self) -> None:
        for stream in (self._send, self._receive):
            if stream is not None:
                stream.close()

    def _emit(self, result: CacheResult[T]) -> None:
        assert self._send is not None
        self._send.send_nowait(result)

    async def _work(self) -> None:
        targets = self._targets
        while self._next < len(targets):
            index = self._next
            self._next += 1
            await self._run(index, targets[index])

    def _give_up(self, first: int) -> None:
        self._next = len(self._targets)  # nothing else starts
        for index in range(first, len(self._targets)):
            error = CacheTimeout(
                f"not started: the fan-out deadline ({self._deadline} s) passed", started=False
            )
            self._emit(CacheResult(self._targets[index], index, error=error))

    async def _run(self, index: int, target: AsyncAnalytics | CacheCredentials) -> None:
        started = anyio.current_time()
        deadline = self._deadline_at
        if started >= deadline:
            self._give_up(index)
            return
        if self._timeout is not None:
            deadline = min(deadline, started + self._timeout)
        value: T | None = None
        error: Exception | None = None
        self._running += 1
        try:
            client = self._clients.get(index, keep=False)
            if deadline == math.inf:
                # Nothing to time out: no cancel scope to pay for.
                value = await self._call(client)
            else:
                with anyio.CancelScope(deadline=deadline) as scope:
                    value = await self._call(client)
                if scope.cancelled_caught:
                    error = CacheTimeout(_timeout_message(deadline - started), started=True)
        except Exception as exc:  # one cache's failure is its result, never the others'
            error = exc
        finally:
            self._running -= 1
        elapsed = anyio.current_time() - started
        self._emit(CacheResult(target, index, value, error, elapsed))

    def __aiter__(self) -> FanOut[T]:
        return self

    async def __anext__(self) -> CacheResult[T]:
        await self._start_implicitly()
        if self._remaining == 0 or self._state != "running":
            await self._fail_implicitly()
            raise StopAsyncIteration
        assert self._receive is not None
        try:
            result = await self._receive.receive()
        except BaseException:
            await self._fail_implicitly()
            raise
        self._remaining -= 1
        return result


def _timeout_message(seconds: float) -> str:
    return f"no answer within {seconds:.3g} s"


def fan_out(
    targets: Iterable[Target],
    call: Callable[[AsyncAnalytics], Awaitable[T]],
    *,
    concurrency: int | None = None,
    deadline: float | None = None,
    timeout: float | None = None,
    base_url: str = DEFAULT_BASE_URL,
    **keywords: Unpack[StackKeywords],
) -> FanOut[T]:
    """Run ``call`` for every target; yield a :class:`CacheResult` as each completes.

    ::

        async with fan_out(targets, AsyncAnalytics.stats, deadline=10) as results:
            async for result in results:
                ...

    ``targets`` are :class:`AsyncAnalytics` clients or credential sets
    (:class:`CacheCredentials`, or ``(username, password)`` pairs); the
    clients for credential sets share one pooled ``httpx.AsyncClient``:
    ``http_client`` if given (never closed here), else one made here with a
    pool of ``concurrency`` connections and closed at the end.
    ``http_client``, ``transport``, ``retry`` and ``http_backend`` mean what
    they mean for :class:`AsyncAnalytics` and are refused the same way
    (``retry`` with ``http_client`` is a ``ValueError``: wrap that client's
    transport in :class:`RetryTransport` instead; ``http_backend="aiohttp"``
    runs on asyncio only); so do ``verify``, ``cert`` and ``proxy``, which
    configure the shared client's own transport, and ``headers`` (sent with
    every request of every cache) and ``max_response_size`` (the bound of
    each call's body: a larger one is that cache's
    :class:`ResponseTooLargeError`). All of them apply to the clients made
    for credential sets; an :class:`AsyncAnalytics` target keeps its own.
    A bad value is refused here, as the constructor refuses it.

    - At most ``concurrency`` calls run at once (default: the pool size of
      :data:`DEFAULT_LIMITS`, 100). With your own ``http_client``, keep it at
      or below that client's pool size.
    - A failing cache yields a result with ``error`` (its
      ``missing_servers`` for "Server error: host:port"); it never cancels
      or delays the others. Every target yields exactly one result.
    - ``deadline`` (seconds) bounds the whole fan-out: calls still running
      then, and targets not started yet, yield :class:`CacheTimeout`.
      ``timeout`` (seconds) bounds each call, so a few hanging caches do
      not hold slots the others need.
    - Leaving ``async with`` (or :meth:`FanOut.aclose`) cancels the calls
      still running and closes the shared client. Iterating without
      ``async with`` cleans up after the last result; to stop early, use
      ``async with`` (or ``contextlib.aclosing``).
    """
    return FanOut(
        targets,
        call,
        concurrency=concurrency,
        deadline=deadline,
        timeout=timeout,
        base_url=base_url,
        **keywords,
    )
