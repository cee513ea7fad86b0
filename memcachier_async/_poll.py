"""Poll the stats of many caches on a fixed cadence: :func:`watch`.

Round ``n`` is due at ``start + n * interval`` whatever happened before,
so the cadence does not drift. At each due time a call starts for every
cache whose previous call has finished; a cache still busy is skipped,
never given a second call. A round ends when its calls have finished or
when the next one is due, whichever comes first; a call that finishes
later is reported in the round in which it finishes.

Per cache the poller keeps its client, the snapshot last reported (the
baseline of the next :class:`Insight`) and at most one snapshot not yet
reported: memory does not grow with the number of rounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc
import attrs

from ._client import DEFAULT_BASE_URL
from ._errors import ServerError
from ._fanout import (
    CacheTimeout,
    Target,
    _as_target,
    _check_concurrency,
    _check_seconds,
    _Clients,
    _name_of,
    _Resolved,
    _Session,
    _timeout_message,
)
from ._insight import Baseline, Insight
from ._models import Stats
from ._stack import StackKeywords, stack_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["PollResult", "PollRound", "Poller", "watch"]

Status = Literal["ok", "failed", "pending"]


@attrs.frozen
class PollResult:
    """One cache in one round.

    ``status`` is ``"ok"`` when a new snapshot arrived in this round,
    ``"failed"`` when the cache's latest call failed (``error``), and
    ``"pending"`` when no call finished in this round. ``skipped`` says no
    call was started at this round's due time because the previous one was
    still running.

    ``stats`` is the cache's latest successful snapshot (from an earlier
    round when this one brought none); ``insight`` covers the time from the
    previous reported snapshot to the new one, and is ``None`` unless a new
    snapshot arrived and there was an earlier one.
    """

    target: _Resolved
    index: int
    status: Status
    skipped: bool = False
    stats: Stats | None = None
    insight: Insight | None = None
    error: Exception | None = None

    @property
    def name(self) -> str:
        """The cache's name: its :class:`CacheCredentials` ``name`` (by default the
        username), or a client target's username."""
        return _name_of(self.target)

    @property
    def missing_servers(self) -> tuple[str, ...]:
        """The ``host:port`` of the servers that did not answer ("Server error: a:1,b:2")."""
        return self.error.servers if isinstance(self.error, ServerError) else ()


@attrs.frozen
class PollRound:
    """The caches' results at the end of round ``number``.

    ``due`` is when the round was due, on the ``anyio.current_time()``
    clock: ``start + number * interval``. ``taken_at`` is the wall-clock
    time its calls started, an aware UTC ``datetime``, for logs and charts.
    Numbers skip when the reader was so slow that a due time passed unseen
    (those rounds never ran).
    """

    number: int
    due: float
    results: tuple[PollResult, ...]
    taken_at: datetime

    def __len__(self) -> int:
        return len(self.results)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def skipped(self) -> int:
        """How many caches were still busy with an earlier call when this round was due."""
        return sum(1 for r in self.results if r.skipped)


@attrs.define
class _Cache:
    """What the poller remembers of one cache between rounds."""

    target: _Resolved
    busy: bool = False
    skipped: bool = False
    # The snapshot last reported, and the baseline of the next insight (it
    # keeps a server's older sample while that server's clock stands still).
    latest: Stats | None = None
    baseline: Baseline = attrs.field(factory=Baseline)
    # Arrived since the last round was collected, and when its call ran.
    fresh: Stats | None = None
    window: tuple[float, float] = (0.0, 0.0)
    error: Exception | None = None

    def collect(self, index: int) -> PollResult:
        fresh, error, skipped = self.fresh, self.error, self.skipped
        self.fresh, self.error, self.skipped = None, None, False
        found: Insight | None = None
        if fresh is not None:
            try:
                found = self.baseline.advance(fresh, *self.window)
            except Exception as exc:  # one cache's failure is its result, never the round's
                # Whatever the snapshot holds broke the arithmetic: report it,
                # and start over from the next snapshot rather than this one.
                fresh, error = None, exc
                self.baseline.reset()
            else:
                self.latest = fresh
        status: Status = "failed" if error else "ok" if fresh is not None else "pending"
        return PollResult(self.target, index, status, skipped, self.latest, found, error)


class Poller(_Session):
    """Rounds of stats of many caches, on a fixed cadence (see :func:`watch`)."""

    def __init__(
        self,
        targets: Iterable[Target],
        interval: float,
        *,
        rounds: int | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        base_url: str = DEFAULT_BASE_URL,
        **keywords: Unpack[StackKeywords],
    ) -> None:
        options = stack_options("watch", keywords)
        resolved = [_as_target(t) for t in targets]
        interval_seconds = _check_seconds("interval", interval)
        if interval_seconds is None or not math.isfinite(interval_seconds):
            raise ValueError("interval must be positive seconds")
        if rounds is not None and (type(rounds) is not int or rounds < 0):
            raise ValueError("rounds must be a non-negative int, or None")
        limit = _check_concurrency(concurrency)
        super().__init__(_Clients(resolved, options, pool_size=limit, base_url=base_url))
        self._caches = [_Cache(t) for t in resolved]
        self._interval = interval_seconds
        self._rounds = rounds
        self._timeout = _check_seconds("timeout", timeout)
        self._limiter = anyio.CapacityLimiter(limit)
        self._busy = 0
        self._idle = anyio.Event()
        self._start: float | None = None
        self._next = 0
        self._done = 0

    def __repr__(self) -> str:
        return (
            f"<Poller caches={len(self._caches)} interval={self._interval} "
            f"rounds_done={self._done} state={self._state}>"
        )

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def in_flight(self) -> int:
        """Calls running now (never more than ``concurrency``)."""
        return int(self._limiter.borrowed_tokens)

    def snapshots(self) -> Sequence[Stats | None]:
        """The snapshot kept per cache (the last reported), in target order."""
        return [cache.latest for cache in self._caches]

    async def _begin(self, tg: anyio.abc.TaskGroup) -> None:
        self._start = anyio.current_time()

    # --- one round ------------------------------------------------------------

    def _due(self, number: int) -> float:
        assert self._start is not None
        return self._start + number * self._interval

    async def _wait_for_due_time(self) -> int:
        """Sleep until the next round is due; skip rounds whose time passed unseen."""
        number = self._next
        now = anyio.current_time()
        late_by = now - self._due(number)
        if late_by >= self._interval:
            # The reader kept us away past a whole interval: keep the grid,
            # start the latest round that is due instead of catching up.
            number += int(late_by // self._interval)
        else:
            await anyio.sleep_until(self._due(number))
        self._next = number + 1
        return number

    def _launch(self, tg: anyio.abc.TaskGroup) -> None:
        for index, cache in enumerate(self._caches):
            if cache.busy:
                cache.skipped = True
                continue
            cache.busy = True
            self._busy += 1
            tg.start_soon(self._poll, index, cache)
        if self._busy:
            self._idle = anyio.Event()

    async def _poll(self, index: int, cache: _Cache) -> None:
        try:
            async with self._limiter:
                started = anyio.current_time()
                deadline = math.inf if self._timeout is None else started + self._timeout
                stats: Stats | None = None
                with anyio.CancelScope(deadline=deadline) as scope:
                    stats = await self._clients.get(index).stats()
            if scope.cancelled_caught or stats is None:
                raise CacheTimeout(_timeout_message(deadline - started), started=True)
            cache.fresh, cache.error = stats, None
            cache.window = (started, anyio.current_time())
        except Exception as exc:  # one cache's failure is its result, never the others'
            cache.error = exc
        finally:
            cache.busy = False
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _round(self) -> PollRound:
        assert self._tg is not None
        number = await self._wait_for_due_time()
        taken_at = datetime.now(timezone.utc)
        self._launch(self._tg)
        if self._busy:
            with anyio.CancelScope(deadline=self._due(number + 1)):
                await self._idle.wait()
        results = tuple(cache.collect(index) for index, cache in enumerate(self._caches))
        self._done += 1
        return PollRound(number, self._due(number), results, taken_at)

    # --- iteration -------------------------------------------------------------

    def __aiter__(self) -> Poller:
        return self

    async def __anext__(self) -> PollRound:
        await self._start_implicitly()
        if self._state != "running" or (self._rounds is not None and self._done >= self._rounds):
            await self._fail_implicitly()
            raise StopAsyncIteration
        try:
            return await self._round()
        except BaseException:
            await self._fail_implicitly()
            raise


def watch(
    targets: Iterable[Target],
    interval: float = 60.0,
    *,
    rounds: int | None = None,
    concurrency: int | None = None,
    timeout: float | None = None,
    base_url: str = DEFAULT_BASE_URL,
    **keywords: Unpack[StackKeywords],
) -> Poller:
    """Poll the stats of many caches every ``interval`` seconds: one :class:`PollRound` each time.

    ::

        async with watch(targets, interval=60) as poller:
            async for round in poller:
                for result in round.results:
                    if result.insight is not None:
                        print(result.index, result.insight.total.hit_rate)

    Each round holds, per cache, its latest stats and the :class:`Insight`
    since its previous successful snapshot. Round ``n`` is due at
    ``start + n * interval`` (no drift); the first is due at once. A cache
    whose previous call is still running is skipped, not called twice.
    ``rounds`` stops after that many rounds (default: never). Targets,
    ``concurrency``, ``timeout``, ``http_backend``, ``verify``, ``cert``,
    ``proxy``, ``headers``, ``max_response_size`` and the shared HTTP client
    are as for :func:`fan_out` (a body over ``max_response_size`` fails that
    cache in the round). Leaving ``async with`` cancels the calls in flight.
    """
    return Poller(
        targets,
        interval,
        rounds=rounds,
        concurrency=concurrency,
        timeout=timeout,
        base_url=base_url,
        **keywords,
    )
