"""The retry layer: which failures are retried, waits, Retry-After, deadline, budget.

Everything runs on a fake clock with a fake sleep: no test really waits.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx
import pytest
import respx
from _fake_time import FakeTime, policy

from memcachier_async import (
    APIError,
    AsyncAnalytics,
    Attempt,
    AuthenticationError,
    NewCredential,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    RetryTransport,
    ServerError,
    Stats,
    TransportError,
)
from memcachier_async._transports.retry import (
    ATTEMPTS_EXTENSION,
    RETRIES_EXTENSION,
    DeadlineExceeded,
    attempts_of,
)
from memcachier_async._transports.shards import ShardedTransport

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
SAMPLES = Path(__file__).parent / "samples"
PASSWORD = "hunter2-retry-password"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def api(retry: RetryPolicy, **kwargs: Any) -> AsyncAnalytics:
    kwargs.setdefault("cache_id", 14)
    return AsyncAnalytics("user", PASSWORD, retry=retry, **kwargs)


class BrokenBody(httpx.AsyncByteStream):
    """A body that fails half way, like a connection reset mid-response."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"cache_'
        raise httpx.ReadError("connection reset while reading the body")


def status(code: int, **headers: str) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(code, text=f"status {code}", headers=headers)


def raises(cls: type[Exception], message: str) -> Callable[[], Exception]:
    return lambda: cls(message)


def broken_body() -> httpx.Response:
    return httpx.Response(200, stream=BrokenBody())


# (id, make the failure, retried for an idempotent call, retried for a
# non-idempotent one, error of a non-idempotent call that is not retried)
RULES: list[tuple[str, Callable[[], Any], bool, bool, type[Exception] | None]] = [
    ("connect-error", raises(httpx.ConnectError, "refused"), True, True, None),
    ("connect-timeout", raises(httpx.ConnectTimeout, "slow"), True, True, None),
    ("pool-timeout", raises(httpx.PoolTimeout, "pool full"), True, True, None),
    ("429", status(429), True, True, None),
    ("503", status(503), True, True, None),
    ("502", status(502), True, False, ServerError),
    ("504", status(504), True, False, ServerError),
    ("500", status(500), True, False, ServerError),
    ("read-timeout", raises(httpx.ReadTimeout, "read"), True, False, OutcomeUnknownError),
    ("write-timeout", raises(httpx.WriteTimeout, "write"), True, False, OutcomeUnknownError),
    ("reset", raises(httpx.ReadError, "reset by peer"), True, False, OutcomeUnknownError),
    ("write-error", raises(httpx.WriteError, "broken pipe"), True, False, OutcomeUnknownError),
    (
        "protocol-error",
        raises(httpx.RemoteProtocolError, "Server disconnected"),
        True,
        False,
        OutcomeUnknownError,
    ),
    ("body-read-failure", broken_body, True, False, OutcomeUnknownError),
    ("400", status(400), False, False, APIError),
    ("401", status(401), False, False, AuthenticationError),
    ("403", status(403), False, False, PermissionDeniedError),
    ("404", status(404), False, False, NotFoundError),
]


@pytest.mark.parametrize(
    ("failure", "retried"),
    [pytest.param(r[1], r[2], id=r[0]) for r in RULES],
)
async def test_rules_for_an_idempotent_call(
    router: respx.MockRouter, fake: FakeTime, failure: Callable[[], Any], retried: bool
) -> None:
    """stats (idempotent) after one failure: retried once with a jittered wait, or not at all."""
    route = router.get("/14/stats").mock(
        side_effect=[failure(), httpx.Response(200, json=sample("stats_reference.json"))]
    )
    async with api(policy(fake)) as client:
        if retried:
            assert isinstance(await client.stats(), Stats)
        else:
            with pytest.raises(APIError) as info:
                await client.stats()
            assert [a.number for a in info.value.attempts] == [1]
    assert route.call_count == (2 if retried else 1)
    assert len(fake.waits) == (1 if retried else 0)
    assert all(0 <= w <= 0.25 for w in fake.waits)


@pytest.mark.parametrize(
    ("failure", "retried", "error"),
    [pytest.param(r[1], r[3], r[4], id=r[0]) for r in RULES],
)
async def test_rules_for_a_non_idempotent_call(
    router: respx.MockRouter,
    fake: FakeTime,
    failure: Callable[[], Any],
    retried: bool,
    error: type[Exception] | None,
) -> None:
    """create_credential after one failure: retried only when it never reached the server or was refused."""
    route = router.post("/14/credentials").mock(
        side_effect=[failure(), httpx.Response(200, json=sample("credential_created.json"))]
    )
    async with api(policy(fake)) as client:
        if retried:
            assert isinstance(await client.create_credential(), NewCredential)
        else:
            assert error is not None
            with pytest.raises(error) as info:
                await client.create_credential()
            assert type(info.value) is error
            assert len(info.value.attempts) == 1  # type: ignore[attr-defined]
    assert route.call_count == (2 if retried else 1)
    assert len(fake.waits) == (1 if retried else 0)
    assert all(0 <= w <= 0.25 for w in fake.waits)


async def test_outcome_unknown_says_how_to_check(router: respx.MockRouter, fake: FakeTime) -> None:
    """A create_credential cut off after sending tells the user to list credentials, and chains the cause."""
    router.post("/14/credentials").mock(side_effect=httpx.ReadTimeout("timed out"))
    async with api(policy(fake)) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.create_credential()
    assert isinstance(info.value, TransportError)
    assert "list_credentials()" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert [(a.number, a.outcome) for a in info.value.attempts] == [(1, "ReadTimeout")]


async def test_connect_failures_of_create_credential_are_plain_transport_errors(
    router: respx.MockRouter, fake: FakeTime
) -> None:
    """A create_credential that never connected, every attempt, is a TransportError, not 'unknown'."""
    route = router.post("/14/credentials").mock(side_effect=httpx.ConnectError("refused"))
    async with api(policy(fake)) as client:
        with pytest.raises(TransportError) as info:
            await client.create_credential()
    assert type(info.value) is TransportError
    assert route.call_count == 4
    assert [a.outcome for a in info.value.attempts] == ["ConnectError"] * 4


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("POST", "/14/flush", lambda c: c.flush()),
        ("DELETE", "/14/credentials/primary/bob", lambda c: c.delete_credential("bob")),
        ("POST", "/14/credentials/primary/bob", lambda c: c.promote_credential("bob")),
        (
            "PATCH",
            "/14/credentials/bob",
            lambda c: c.update_credential(
                "bob", write_capability=True, flush_capability=True, api_capability=True
            ),
        ),
    ],
)
async def test_idempotency_comes_from_the_endpoint_table(
    router: respx.MockRouter, fake: FakeTime, method: str, path: str, call: Any
) -> None:
    """POST flush and promote, PATCH and DELETE are idempotent calls: a reset is retried."""
    bodies = {
        "/14/credentials/primary/bob": sample("credential_promoted.json"),
        "/14/credentials/bob": sample("capabilities.json"),
    }
    ok = httpx.Response(200, json=bodies.get(path, ""))
    if method == "DELETE":
        ok = httpx.Response(200, text="")
    route = router.request(method, path).mock(side_effect=[httpx.ReadError("reset"), ok])
    async with api(policy(fake)) as client:
        await call(client)
    assert route.call_count == 2


# --- waits ----------------------------------------------------------------


async def test_waits_are_full_jitter_under_an_exponential_ceiling(
    router: respx.MockRouter, fake: FakeTime
) -> None:
    """Four 503s: three waits, each within [0, 0.25·2^(n-1)], then the last error with four attempts."""
    route = router.get("/14/stats").mock(return_value=httpx.Response(503, text="busy"))
    async with api(policy(fake)) as client:
        with pytest.raises(ServerError) as info:
            await client.stats()
    assert route.call_count == 4
    assert len(fake.waits) == 3
    for wait, ceiling in zip(fake.waits, [0.25, 0.5, 1.0], strict=True):
        assert 0 <= wait <= ceiling
    attempts = info.value.attempts
    assert [(a.number, a.outcome) for a in attempts] == [(n, 503) for n in (1, 2, 3, 4)]
    assert [a.elapsed for a in attempts] == pytest.approx(
        [0.0, fake.waits[0], sum(fake.waits[:2]), sum(fake.waits)]
    )


async def test_backoff_is_capped_by_max_backoff(router: respx.MockRouter, fake: FakeTime) -> None:
    """With a fixed draw of 0.5 the waits are half of 1, 2, 4, 4, 4 (max_backoff 4)."""
    router.get("/14/stats").mock(return_value=httpx.Response(502))
    retry = policy(
        fake,
        max_attempts=6,
        initial_backoff=1.0,
        max_backoff=4.0,
        random=lambda: 0.5,
        deadline=None,
    )
    async with api(retry) as client:
        with pytest.raises(ServerError):
            await client.stats()
    assert fake.waits == [0.5, 1.0, 2.0, 2.0, 2.0]


async def test_retry_after_seconds_is_honoured(router: respx.MockRouter, fake: FakeTime) -> None:
    """503 with Retry-After: 7 waits exactly 7 s, then succeeds."""
    route = router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "7"}),
            httpx.Response(200, json=sample("stats_reference.json")),
        ]
    )
    async with api(policy(fake)) as client:
        await client.stats()
    assert route.call_count == 2
    assert fake.waits == [7.0]


async def test_retry_after_http_date_is_honoured(router: respx.MockRouter, fake: FakeTime) -> None:
    """429 with Retry-After as an HTTP date 20 s ahead waits about 20 s (date resolution is 1 s)."""
    when = datetime.fromtimestamp(time.time() + 20, tz=timezone.utc)
    route = router.post("/14/credentials").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)}),
            httpx.Response(200, json=sample("credential_created.json")),
        ]
    )
    async with api(policy(fake)) as client:
        await client.create_credential()
    assert route.call_count == 2
    assert len(fake.waits) == 1
    assert 17.0 <= fake.waits[0] <= 20.0


async def test_retry_after_is_capped(router: respx.MockRouter, fake: FakeTime) -> None:
    """A Retry-After of 500 s waits only retry_after_cap (60 s)."""
    router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "500"}),
            httpx.Response(200, json=sample("stats_reference.json")),
        ]
    )
    async with api(policy(fake, deadline=None)) as client:
        await client.stats()
    assert fake.waits == [60.0]


async def test_retry_after_beyond_the_deadline_raises_at_once(
    router: respx.MockRouter, fake: FakeTime
) -> None:
    """Retry-After: 45 with a 30 s deadline: no wait, no second request, the error has retry_after."""
    route = router.get("/14/stats").mock(
        return_value=httpx.Response(429, text="slow down", headers={"Retry-After": "45"})
    )
    async with api(policy(fake)) as client:
        with pytest.raises(RateLimitError) as info:
            await client.stats()
    assert route.call_count == 1
    assert fake.waits == []
    assert info.value.retry_after == 45.0
    assert len(info.value.attempts) == 1


async def test_503_beyond_the_deadline_keeps_its_retry_after(
    router: respx.MockRouter, fake: FakeTime
) -> None:
    """A 503 whose Retry-After passes the deadline is a ServerError carrying retry_after."""
    router.get("/14/stats").mock(return_value=httpx.Response(503, headers={"Retry-After": "31"}))
    async with api(policy(fake)) as client:
        with pytest.raises(ServerError) as info:
            await client.stats()
    assert info.value.retry_after == 31.0
    assert fake.waits == []


# --- deadline -------------------------------------------------------------


def silent_server(fake: FakeTime, seen: list[dict[str, float | None]]) -> httpx.MockTransport:
    """A server that accepts the request and never answers: each attempt costs its read timeout."""

    async def handler(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]
        seen.append(dict(timeout))
        fake.now += timeout["read"]
        await anyio.lowlevel.checkpoint()
        raise httpx.ReadTimeout("timed out", request=request)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("http_timeout", "deadline"),
    [(httpx.Timeout(30.0, connect=5.0), 30.0), (httpx.Timeout(4.0), 10.0), (1.0, 2.5)],
)
async def test_a_silent_server_costs_at_most_the_deadline(
    fake: FakeTime, http_timeout: httpx.Timeout | float, deadline: float
) -> None:
    """Attempt timeouts shrink to the time left: the call ends by its deadline, not timeout × attempts."""
    seen: list[dict[str, float | None]] = []
    started = fake.now
    client = api(
        policy(fake, deadline=deadline, random=lambda: 0.0),  # no waits: attempts end to end
        transport=silent_server(fake, seen),
        http_timeout=http_timeout,
    )
    async with client:
        with pytest.raises(TransportError) as info:
            await client.stats()
    assert fake.now - started <= deadline + 1e-9
    read = httpx.Timeout(http_timeout).read
    assert read is not None
    assert seen[0]["read"] == min(read, deadline)
    for phases in seen:
        assert all(v is not None and v <= deadline for v in phases.values())
    # The last attempt got exactly the time that was left.
    assert fake.now - started == pytest.approx(deadline)
    assert len(info.value.attempts) == len(seen)
    assert info.value.attempts[-1].elapsed <= deadline + 1e-9


async def test_an_attempt_that_overruns_the_deadline_is_cut(anyio_backend: str) -> None:
    """A body that never ends is cut at the deadline (a real 50 ms) with DeadlineExceeded."""

    class EndlessBody(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"{"
            await anyio.sleep_forever()

    closed: list[bool] = []

    class Tracked(httpx.AsyncByteStream):
        def __init__(self) -> None:
            self.inner = EndlessBody()

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self.inner:
                yield chunk

        async def aclose(self) -> None:
            closed.append(True)

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Tracked()))
    client = api(RetryPolicy(deadline=0.05), transport=transport)
    async with client:
        with anyio.fail_after(5):  # a safety net only: the deadline ends the call
            with pytest.raises(TransportError) as info:
                await client.stats()
    assert isinstance(info.value.__cause__, DeadlineExceeded)
    assert closed == [True]


# --- budget ---------------------------------------------------------------


async def test_budget_bounds_retries_of_concurrent_calls_in_an_outage(
    router: respx.MockRouter, fake: FakeTime
) -> None:
    """200 concurrent calls against a dead service send 200 + 500/5 requests, then recovery refills the budget."""
    budget = RetryBudget()
    route = router.get("/14/stats").mock(return_value=httpx.Response(503, text="down"))
    failures: list[BaseException] = []

    async def call(client: AsyncAnalytics) -> None:
        try:
            await client.stats()
        except ServerError as exc:
            failures.append(exc)

    async with api(policy(fake, budget=budget)) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(call, client)
        assert len(failures) == 200
        assert route.call_count <= 200 + budget.capacity // budget.retry_cost
        assert route.call_count == 300  # every token was spent on a retry
        assert budget.available < budget.retry_cost

        # Recovery: each first-try success puts one token back.
        route.mock(return_value=httpx.Response(200, json=sample("stats_reference.json")))
        before = budget.available
        for _ in range(20):
            await client.stats()
        assert budget.available == before + 20

        # With tokens again, a transient failure is retried once more.
        route.mock(
            side_effect=[
                httpx.Response(503),
                httpx.Response(200, json=sample("stats_reference.json")),
            ]
        )
        route.reset()
        await client.stats()
        assert route.call_count == 2


async def test_timeouts_cost_the_budget_double(router: respx.MockRouter, fake: FakeTime) -> None:
    """Under 100 % connect timeouts, 100 calls get 500/10 retries."""
    budget = RetryBudget()
    # The class, not an instance: respx then raises a new exception per
    # request, as a real transport does. One instance raised 150 times grows
    # one traceback that keeps every frame alive (6-11 s in the full suite).
    route = router.get("/14/stats").mock(side_effect=httpx.ConnectTimeout)

    async def call(client: AsyncAnalytics) -> None:
        with pytest.raises(TransportError):
            await client.stats()

    async with api(policy(fake, budget=budget)) as client, anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(call, client)
    assert route.call_count == 100 + 500 // 10
    assert budget.available == 0


async def test_success_after_a_retry_refunds_its_cost(
    router: respx.MockRouter, fake: FakeTime
) -> None:
    """A call that succeeds after one retry leaves the budget where it was (capped at capacity)."""
    budget = RetryBudget(capacity=20)
    router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(200, json=sample("stats_reference.json")),
            httpx.Response(200, json=sample("stats_reference.json")),
        ]
    )
    async with api(policy(fake, budget=budget)) as client:
        await client.stats()
        assert budget.available == 20
        await client.stats()
        assert budget.available == 20


def test_budget_bucket_arithmetic() -> None:
    """try_acquire takes only what is there; release never fills past capacity."""
    budget = RetryBudget(capacity=12)
    assert budget.try_acquire(10)
    assert not budget.try_acquire(5)
    assert budget.available == 2
    budget.release(100)
    assert budget.available == 12


async def test_no_budget_means_unlimited_retries(router: respx.MockRouter, fake: FakeTime) -> None:
    """budget=None: every call gets its max_attempts however many fail."""
    route = router.get("/14/stats").mock(return_value=httpx.Response(503))
    async with api(policy(fake, budget=None, max_attempts=3)) as client:
        for _ in range(120):
            with pytest.raises(ServerError):
                await client.stats()
    assert route.call_count == 360  # a budget would have stopped at 120 + 100


# --- turning it off, wiring -------------------------------------------------


@pytest.mark.parametrize("retry", [RetryPolicy.disabled(), RetryPolicy(max_attempts=1)])
async def test_disabled_policy_sends_once(router: respx.MockRouter, retry: RetryPolicy) -> None:
    """RetryPolicy.disabled() and max_attempts=1 send one request and report one attempt."""
    route = router.get("/14/stats").mock(return_value=httpx.Response(503))
    async with api(retry) as client:
        with pytest.raises(ServerError) as info:
            await client.stats()
    assert route.call_count == 1
    assert [a.number for a in info.value.attempts] == [1]


async def test_default_client_retries(router: respx.MockRouter) -> None:
    """Without retry=, AsyncAnalytics retries with a default RetryPolicy of its own."""
    route = router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "0"}),  # no real wait
            httpx.Response(200, json=sample("stats_reference.json")),
        ]
    )
    async with (
        AsyncAnalytics("user", PASSWORD, cache_id=14) as client,
        AsyncAnalytics("user", PASSWORD, cache_id=14) as other,
    ):
        transport = client.http_client._transport
        other_transport = other.http_client._transport
        assert isinstance(transport, RetryTransport)
        assert isinstance(other_transport, RetryTransport)
        assert attrs.evolve(transport.policy, budget=None) == RetryPolicy(budget=None)
        # Each client has a budget of its own.
        assert transport.policy.budget is not None
        assert transport.policy.budget is not other_transport.policy.budget
        await client.stats()
    assert route.call_count == 2


async def test_given_transport_is_wrapped_once(fake: FakeTime) -> None:
    """A user transport is wrapped; a RetryTransport given as transport is not wrapped again."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(502)

    mock = httpx.MockTransport(handler)
    async with api(policy(fake, max_attempts=2), transport=mock) as client:
        with pytest.raises(ServerError):
            await client.stats()
    assert len(calls) == 2

    calls.clear()
    own = RetryTransport(mock, policy(fake, max_attempts=3))
    async with AsyncAnalytics("user", PASSWORD, cache_id=14, transport=own) as client:
        with pytest.raises(ServerError) as info:
            await client.stats()
    assert len(calls) == 3
    assert len(info.value.attempts) == 3


async def test_given_http_client_is_not_wrapped(router: respx.MockRouter) -> None:
    """A user http_client is used as it is: no retry, one attempt reported."""
    route = router.get("/14/stats").mock(return_value=httpx.Response(503))
    async with httpx.AsyncClient() as http:
        client = AsyncAnalytics("user", PASSWORD, cache_id=14, http_client=http)
        with pytest.raises(ServerError) as info:
            await client.stats()
    assert route.call_count == 1
    assert [(a.number, a.outcome) for a in info.value.attempts] == [(1, 503)]


def test_retry_with_http_client_is_refused() -> None:
    """retry= with http_client would be silently ignored, so it is an error."""
    with pytest.raises(ValueError, match="RetryTransport"):
        AsyncAnalytics("u", "p", http_client=httpx.AsyncClient(), retry=RetryPolicy())


# --- what the user sees: attempts, retry count, log, hook -------------------


async def test_success_exposes_the_retry_count(router: respx.MockRouter, fake: FakeTime) -> None:
    """A response event hook reads memcachier_retries and memcachier_attempts."""
    router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(502),
            httpx.ConnectError("refused"),
            httpx.Response(200, json=sample("stats_reference.json")),
        ]
    )
    seen: list[httpx.Response] = []

    async def on_response(response: httpx.Response) -> None:
        seen.append(response)

    async with api(policy(fake)) as client:
        client.http_client.event_hooks["response"].append(on_response)
        await client.stats()
    (response,) = seen
    assert response.extensions[RETRIES_EXTENSION] == 2
    outcomes = [a.outcome for a in response.extensions[ATTEMPTS_EXTENSION]]
    assert outcomes == [502, "ConnectError", 200]
    assert [a.outcome for a in attempts_of(response)] == outcomes


async def test_api_errors_carry_attempts_without_retry(router: respx.MockRouter) -> None:
    """Even a 404 that is never retried reports its one attempt."""
    router.get("/14/stats").mock(return_value=httpx.Response(404, text="No cache found."))
    async with api(RetryPolicy()) as client:
        with pytest.raises(NotFoundError) as info:
            await client.stats()
    (attempt,) = info.value.attempts
    assert isinstance(attempt, Attempt)
    assert (attempt.number, attempt.outcome) == (1, 404)


async def test_each_retry_is_logged_and_hooked_without_credentials(
    router: respx.MockRouter, fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """Every retry: one INFO record on memcachier_async and one on_retry event with attempt, reason and wait."""
    caplog.set_level(logging.INFO, logger="memcachier_async")
    events: list[RetryEvent] = []
    router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "2"}),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json=sample("stats_reference.json")),
        ]
    )
    async with api(policy(fake, on_retry=events.append)) as client:
        await client.stats()
    assert [(e.attempt, e.reason, e.retry_after) for e in events] == [
        (1, "503", 2.0),
        (2, "ReadTimeout", None),
    ]
    assert [e.wait for e in events] == fake.waits
    assert events[0].wait == 2.0
    assert all(e.endpoint == "stats" and e.method == "GET" and e.idempotent for e in events)
    assert events[0].url == f"{BASE}/14/stats"
    records = [r for r in caplog.records if r.name == "memcachier_async"]
    assert [r.levelno for r in records] == [logging.INFO] * 2
    first, second = (r.getMessage() for r in records)
    assert "attempt 1 of 4" in first
    assert "503" in first
    assert "2.000 s" in first
    assert "attempt 2 of 4" in second
    assert "ReadTimeout" in second
    token = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    for text in [r.getMessage() for r in records] + [repr(e) for e in events]:
        assert PASSWORD not in text
        assert token not in text


def test_policy_defaults() -> None:
    """The documented defaults, and a frozen policy."""
    p = RetryPolicy()
    assert (p.max_attempts, p.initial_backoff, p.max_backoff) == (4, 0.25, 8.0)
    assert (p.deadline, p.retry_after_cap) == (30.0, 60.0)
    assert p.budget is not None
    assert (p.budget.capacity, p.budget.retry_cost, p.budget.timeout_retry_cost) == (500, 5, 10)
    assert p.budget.success_refund == 1
    with pytest.raises(AttributeError):
        p.max_attempts = 2  # type: ignore[misc]
    assert RetryPolicy.disabled().max_attempts == 1
    assert RetryPolicy.disabled().budget is None


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_backoff": -1}, {"deadline": 0}, {"retry_after_cap": -1}],
)
def test_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    """Attempts below 1, negative waits and a zero deadline are refused."""
    with pytest.raises(ValueError):  # noqa: PT011 - attrs validators raise bare ValueErrors
        RetryPolicy(**kwargs)


# --- the transport on its own -------------------------------------------------


async def test_transport_wraps_a_plain_httpx_client_and_judges_by_method(
    fake: FakeTime,
) -> None:
    """Without the extension: GET is retried on 502, POST is not; a streamed body is sent again whole."""
    bodies: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(await request.aread())
        return httpx.Response(502)

    transport = RetryTransport(httpx.MockTransport(handler), policy(fake, max_attempts=3))
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.get("https://example.test/a")
        assert response.status_code == 502
        assert response.extensions[RETRIES_EXTENSION] == 2
        assert len(bodies) == 3

        bodies.clear()
        await http.post("https://example.test/a", content=b"once")
        assert bodies == [b"once"]

        async def chunks() -> AsyncIterator[bytes]:
            yield b"ab"
            yield b"cd"

        bodies.clear()
        await http.put("https://example.test/a", content=chunks())
        assert bodies == [b"abcd"] * 3


async def test_transport_raises_the_last_httpx_error_with_attempts(fake: FakeTime) -> None:
    """Used directly, the transport raises httpx's own exception, with attempts_of() filled."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = RetryTransport(httpx.MockTransport(handler), policy(fake, max_attempts=2))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.ConnectError) as info:
            await http.get("https://example.test/")
    assert [a.outcome for a in attempts_of(info.value)] == ["ConnectError", "ConnectError"]


async def test_body_is_decoded_once(fake: FakeTime) -> None:
    """A gzip body passes through raw and is decoded by the client, once."""
    import gzip

    payload = gzip.compress(b'{"ok": true}')
    transport = RetryTransport(
        httpx.MockTransport(
            lambda r: httpx.Response(200, content=payload, headers={"Content-Encoding": "gzip"})
        ),
        policy(fake),
    )
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.get("https://example.test/")
    assert response.json() == {"ok": True}


# --- the budget under partial failure (figures quoted in docs/retries.md) --


async def run_fault_rate(
    fault_rate: float, calls: int, *, timeouts: bool = False
) -> tuple[float, float, int]:
    """Sequential calls against a service failing at random: requests per call, failed share, lowest budget."""
    rng = random.Random(20240501)
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        if rng.random() < fault_rate:
            if timeouts:
                raise httpx.ReadTimeout("timed out", request=request)
            return httpx.Response(503)
        return httpx.Response(200)

    fake = FakeTime()
    budget = RetryBudget()
    retry = policy(fake, budget=budget, deadline=None)
    failed, lowest = 0, budget.available
    async with httpx.AsyncClient(
        transport=RetryTransport(httpx.MockTransport(handler), retry)
    ) as http:
        for _ in range(calls):
            try:
                failed += (await http.get("https://example.test/")).status_code != 200
            except httpx.ReadTimeout:
                failed += 1
            lowest = min(lowest, budget.available)
    return sent / calls, failed / calls, lowest


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # arithmetic, not I/O: one loop is enough
async def test_budget_under_a_30_percent_fault_rate(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At 30 % 503s refunds keep pace with retries; at 50 % and on timeouts the bucket runs dry."""
    caplog.set_level(logging.ERROR, logger="memcachier_async")
    per_call, failed, lowest = await run_fault_rate(0.3, 1000)
    assert 1.35 < per_call < 1.48  # 1 + 0.3 + 0.09 + 0.027: as if unlimited
    assert failed < 0.02
    assert lowest > 250

    per_call, failed, lowest = await run_fault_rate(0.5, 1000)
    assert lowest < 10
    assert per_call < 1.5  # unlimited retries would send about 1.875

    per_call, failed, lowest = await run_fault_rate(0.3, 1000, timeouts=True)
    assert lowest < 20  # a retry after a timeout costs 10
    assert per_call < 1.4


@pytest.mark.parametrize(
    ("env", "proxied"),
    [
        ({"HTTPS_PROXY": "http://proxy.test:3128"}, True),
        ({"HTTPS_PROXY": "proxy.test:3128"}, True),
        ({"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "memcachier.com"}, False),
        ({}, False),
    ],
)
def test_environment_proxy_is_kept_under_the_retry_layer(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], proxied: bool
) -> None:
    """The transport built for the retry layer honours HTTPS_PROXY and NO_PROXY as httpx would."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = AsyncAnalytics("user", PASSWORD)
    transport = client.http_client._transport
    assert isinstance(transport, RetryTransport)
    # The engine is httpx's own transports (several small pools); behind a
    # proxy httpcore tunnels through it, in each of them.
    assert isinstance(transport.inner, ShardedTransport)
    for shard in transport.inner.shards:
        assert isinstance(shard, httpx.AsyncHTTPTransport)
        assert (type(shard._pool).__name__ == "AsyncHTTPProxy") is proxied
