"""One round of stats over many caches, for ``watch`` and ``export``.

Each cache's result (stats or the error, and how long it took) is handed
to ``on_result`` as soon as it arrives, so a progress bar can move and a
slow cache does not hold back the others' results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio
import attrs

from ._client import AsyncAnalytics
from ._models import Stats

__all__ = ["PollResult", "poll_round"]


@attrs.frozen
class PollResult:
    """One cache's answer in a round: ``stats``, or the ``error`` raised."""

    name: str
    stats: Stats | None
    error: BaseException | None
    duration: float


async def _poll_one(
    name: str,
    api: AsyncAnalytics,
    timeout: float | None,  # noqa: ASYNC109 - a per-cache bound, applied with fail_after
    limiter: anyio.CapacityLimiter,
    on_result: Callable[[PollResult], None],
) -> None:
    async with limiter:
        started = time.perf_counter()
        try:
            with anyio.fail_after(timeout):
                stats = await api.stats()
        except Exception as error:  # reported per cache; one failure must not end the round
            on_result(PollResult(name, None, error, time.perf_counter() - started))
            return
        on_result(PollResult(name, stats, None, time.perf_counter() - started))


async def poll_round(
    clients: Sequence[tuple[str, AsyncAnalytics]],
    on_result: Callable[[PollResult], None],
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - a per-cache bound, applied with fail_after
    concurrency: int = 50,
) -> None:
    """Read every cache's stats concurrently (at most ``concurrency`` at once)."""
    limiter = anyio.CapacityLimiter(concurrency)
    async with anyio.create_task_group() as group:
        for name, api in clients:
            group.start_soon(_poll_one, name, api, timeout, limiter, on_result)
