"""Fault soak over real sockets: the SDK's retry layer against the emulator's FaultPlan.

The emulator serves on loopback TCP (uvicorn), so resets and dropped
connections are real socket events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import httpx
import pytest

from memcachier_async import (
    AsyncAnalytics,
    MemcachierError,
    NewCredential,
    OutcomeUnknownError,
    RetryPolicy,
    Stats,
)
from memcachier_async.testing import Emulator, FaultPlan, Faults

# Not measured by coverage: the retry layer's lines are covered by its own
# tests, and tracing every line of thousands of requests makes this 4x slower.
pytestmark = [pytest.mark.slow, pytest.mark.unmeasured]

T = TypeVar("T")

# Why these numbers.
#
# Faults are independent draws at 30 % per attempt, so a call fails only if
# all of its attempts fail: 0.3 ** n. With the default 4 attempts that is
# 0.81 % of calls (about 16 of 2,000), so this test needs more attempts:
# 16 leave 4.3e-9 per call, about a 1-in-100,000 chance that any of the
# 2,000 calls fails. (12 left a 1-in-900 chance per run, and CI runs this
# test ten times: on four Pythons, the lowest versions and two backends.) The retry budget is off: a sustained 30 % failure rate is the
# brown-out the budget exists to throttle (with the default bucket, retries
# cost about as many tokens as first-try successes refund), and this test is
# about the retry loop, not the brake. Waits are kept to milliseconds because
# the server is on loopback; the server's Retry-After is 0 for the same
# reason.
SOAK_POLICY = RetryPolicy(
    max_attempts=16,
    initial_backoff=0.001,
    max_backoff=0.02,
    retry_after_cap=0.05,
    deadline=60.0,
    budget=None,
)
CALLS = 2_000
IN_FLIGHT = 50
FAULT_RATE = 0.30


def _pooled_transport() -> httpx.AsyncHTTPTransport:
    # Ten connections for fifty calls in flight: httpcore's pool bookkeeping
    # grows with the square of its open connections (500 calls at 50 in
    # flight took 7.2 s on 50 connections and 3.1 s on 10, on a 2-core
    # machine); the calls still wait concurrently, in the pool's queue.
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=10)
    )


async def _run_all(
    count: int, in_flight: int, call: Callable[[], Awaitable[T]]
) -> list[T | BaseException]:
    """``count`` calls, ``in_flight`` at a time; each result or the exception it raised."""
    results: list[T | BaseException] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            try:
                results.append(await call())
            except MemcachierError as exc:
                results.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(in_flight):
            group.start_soon(worker)
    return results


def _describe(errors: list[BaseException], plan: FaultPlan) -> str:
    """What a failed soak saw, short enough to survive a CI log's tail."""
    kinds = {kind: count for (_, kind), count in plan.injected.items()}
    shown = "; ".join(f"{type(e).__name__}: {e}" for e in errors[:3])
    return f"{len(errors)} error(s) [{shown}], faults injected {kinds}"


@pytest.mark.anyio
async def test_stats_survives_30_percent_transient_faults() -> None:
    """2,000 stats() over TCP with 30 % 500/502/503/429/resets, 50 in flight: no error reaches
    the caller, and every injected fault cost exactly one extra attempt."""
    plan = FaultPlan(seed=2024, retry_after=0, stats=Faults.transient(FAULT_RATE))
    emulator = Emulator(faults=plan)
    async with (
        emulator.serve() as base_url,
        AsyncAnalytics(
            emulator.username,
            emulator.password,
            base_url=base_url,
            cache_id=emulator.cache.cache_id,
            transport=_pooled_transport(),
            retry=SOAK_POLICY,
        ) as api,
    ):
        results = await _run_all(CALLS, IN_FLIGHT, api.stats)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], _describe(errors, plan)
    assert len(results) == CALLS
    assert all(isinstance(r, Stats) and len(r) == 3 for r in results)
    injected = plan.count()
    assert injected > 0.25 * CALLS  # the faults really happened (~0.3 / 0.7 per call)
    assert {kind for _, kind in plan.injected} == {
        "server_error",
        "bad_gateway",
        "unavailable",
        "rate_limit",
        "reset",
    }
    assert emulator.calls["stats"] == CALLS + injected, _describe(errors, plan)


@pytest.mark.anyio
async def test_create_credential_under_act_then_drop_never_creates_twice() -> None:
    """200 create_credential() with 20 % act-then-drop: each returns a credential or raises
    OutcomeUnknownError, and the emulator holds exactly the returned plus the dropped ones."""
    plan = FaultPlan(seed=7, create_credential=Faults(act_then_drop=0.2))
    emulator = Emulator(faults=plan)
    async with (
        emulator.serve() as base_url,
        AsyncAnalytics(
            emulator.username,
            emulator.password,
            base_url=base_url,
            cache_id=emulator.cache.cache_id,
            transport=_pooled_transport(),
        ) as api,
    ):
        results = await _run_all(200, 20, api.create_credential)

    created = [r for r in results if isinstance(r, NewCredential)]
    unknown = [r for r in results if isinstance(r, OutcomeUnknownError)]
    assert len(created) + len(unknown) == 200  # nothing else was raised
    dropped = plan.count("act_then_drop", "create_credential")
    assert len(unknown) == dropped > 10
    assert emulator.calls["create_credential"] == 200  # no call was sent twice
    names = {c.sasl_username for c in emulator.cache.credentials}
    assert len(names) == 1 + len(created) + dropped
    assert {c.sasl_username for c in created} <= names
    assert len({c.sasl_username for c in created}) == len(created)
