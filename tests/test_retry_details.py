"""Retry details: Retry-After per RFC 9110, the capped backoff, the budget charged at send.

Pure rules are checked as functions; the rest through ``RetryTransport`` on a
fake clock (no test really waits).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx
from _fake_time import FakeTime, policy

from memcachier_async import AsyncAnalytics, RetryBudget, RetryPolicy, RetryTransport
from memcachier_async._transports.rules import backoff_ceiling, parse_retry_after

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
# 1994-11-06 08:49:37 GMT, the date of RFC 9110's examples.
NOW = float(calendar.timegm((1994, 11, 6, 8, 49, 37, 0, 0, 0)))


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


# --- Retry-After -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        ("007", 7.0),
        (" 120\t", 120.0),  # whitespace around a field value is not part of it
        ("Sun, 06 Nov 1994 08:49:47 GMT", 10.0),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:50:37 GMT", 60.0),  # RFC 850
        ("Sun Nov  6 08:51:37 1994", 120.0),  # asctime: no zone, and GMT all the same
        ("Sun Nov 06 08:51:37 1994", 120.0),  # asctime with a two-digit day
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),  # now
        ("Sun, 06 Nov 1994 08:49:60 GMT", 22.0),  # a leap second is the minute's last
    ],
)
def test_retry_after_accepts_what_rfc_9110_allows(value: str, seconds: float) -> None:
    """delay-seconds and all three HTTP-date formats give the right wait."""
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "-5",
        "+5",
        "1e3",
        "1_0",
        "1.5",
        " 1.5",
        "inf",
        "nan",
        "0x10",
        "١٢",  # Unicode digits are not DIGIT
        "",
        "soon",
        "sun, 06 Nov 1994 08:49:37 GMT",  # names are case-sensitive
        "Sun, 06 Nov 1994 08:49:37 UTC",  # IMF-fixdate says GMT
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # IMF-fixdate's day has two digits
        "Sun Nov 6 08:49:37 1994",  # asctime pads a one-digit day with a space
    ],
)
def test_retry_after_refuses_what_rfc_9110_does_not_allow(value: str) -> None:
    """Signs, fractions, exponents, underscores, other zones and impossible dates are unreadable."""
    assert parse_retry_after(value, now=NOW) is None


def test_retry_after_date_in_the_past_means_no_wait() -> None:
    """A date already passed (any format) is a wait of 0, never a negative one."""
    for value in (
        "Sat, 05 Nov 1994 08:49:37 GMT",
        "Saturday, 05-Nov-94 08:49:37 GMT",
        "Sat Nov  5 08:49:37 1994",
    ):
        assert parse_retry_after(value, now=NOW) == 0.0


def test_retry_after_two_digit_year_is_at_most_50_years_ahead() -> None:
    """RFC 850's "94" read in 2030 is 1994 (2094 is too far ahead); "40" is 2040."""
    in_2030 = float(calendar.timegm((2030, 1, 1, 0, 0, 0, 0, 0, 0)))
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now=in_2030) == 0.0
    ahead = parse_retry_after("Sunday, 01-Jan-40 00:00:00 GMT", now=in_2030)
    assert ahead == calendar.timegm((2040, 1, 1, 0, 0, 0, 0, 0, 0)) - in_2030


def test_retry_after_with_endless_digits_is_long_not_an_error() -> None:
    """Five thousand digits are a very long wait (beyond any cap), not a ValueError."""
    wait = parse_retry_after("9" * 5000)
    assert wait is not None
    assert wait >= 1e12


async def test_a_past_retry_after_retries_at_once(router: respx.MockRouter, fake: FakeTime) -> None:
    """A 503 whose Retry-After date has passed is retried after 0 s (not a jittered wait)."""
    route = router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}),
            httpx.Response(503, headers={"Retry-After": "Sun Nov  6 08:49:37 1994"}),
            httpx.Response(200, json={}),
        ]
    )
    retry = policy(fake, random=lambda: 0.9)
    async with AsyncAnalytics("user", "pw", cache_id=14, retry=retry) as api:
        await api.stats()
    assert route.call_count == 3
    assert fake.waits == [0.0, 0.0]


# --- backoff -----------------------------------------------------------------


def test_backoff_ceiling_doubles_then_caps_without_overflow() -> None:
    """0.25·2^(n-1) capped at max_backoff, for retry 1 up to retry 10**6 (2.0**1024 would raise)."""
    assert [backoff_ceiling(0.25, 8.0, n) for n in range(1, 8)] == [
        0.25,
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        8.0,
    ]
    for n in (1025, 1026, 10**6):
        assert backoff_ceiling(0.25, 8.0, n) == 8.0
    assert backoff_ceiling(1.0, float("inf"), 10**6) == 2.0**64


async def test_more_than_1024_retries_keep_the_capped_wait(fake: FakeTime) -> None:
    """A policy allowing 1,100 attempts retries past retry 1024 with waits of at most max_backoff."""
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        return httpx.Response(502)

    retry = policy(
        fake, max_attempts=1100, budget=None, deadline=None, random=lambda: 1.0, max_backoff=2.0
    )
    async with httpx.AsyncClient(
        transport=RetryTransport(httpx.MockTransport(handler), retry)
    ) as c:
        response = await c.get("https://example.test/")
    assert response.status_code == 502
    assert len(sent) == 1100
    assert fake.waits[-1] == 2.0
    assert max(fake.waits) == 2.0


# --- the budget is charged when a retry is sent --------------------------------


async def test_calls_cancelled_while_waiting_cost_the_budget_nothing(
    router: respx.MockRouter,
) -> None:
    """Ten calls cancelled in their backoff (as fan_out(timeout=) does) leave the budget full."""
    budget = RetryBudget(capacity=50)
    asleep = anyio.Event()
    sleeping = 0

    async def long_sleep(seconds: float) -> None:
        nonlocal sleeping
        sleeping += 1
        if sleeping == 10:
            asleep.set()
        await anyio.sleep_forever()

    route = router.get("/14/stats").mock(return_value=httpx.Response(503))
    retry = RetryPolicy(budget=budget, sleep=long_sleep, random=lambda: 0.5)
    async with (
        AsyncAnalytics("user", "pw", cache_id=14, retry=retry) as api,
        anyio.create_task_group() as tg,
    ):
        for _ in range(10):
            tg.start_soon(api.stats)
        await asleep.wait()
        tg.cancel_scope.cancel()
    assert route.call_count == 10
    assert budget.available == 50


async def test_the_budget_is_charged_per_retry_sent(
    router: respx.MockRouter, fake: FakeTime
) -> None:
    """Three 503s then a give-up: two retries sent, 2 × retry_cost taken (none for the last)."""
    budget = RetryBudget(capacity=50, retry_cost=5)
    route = router.get("/14/stats").mock(return_value=httpx.Response(503))
    async with AsyncAnalytics(
        "user", "pw", cache_id=14, retry=policy(fake, budget=budget, max_attempts=3)
    ) as api:
        with pytest.raises(Exception, match="503"):
            await api.stats()
    assert route.call_count == 3
    assert budget.available == 40


async def test_a_budget_drained_during_the_wait_stops_the_retry(router: respx.MockRouter) -> None:
    """When other calls empty the budget while this one waits, it gives up with the last outcome."""
    budget = RetryBudget(capacity=5, retry_cost=5)

    async def drained_sleep(seconds: float) -> None:
        assert budget.try_acquire(5)  # another call takes the last tokens meanwhile
        await anyio.lowlevel.checkpoint()

    route = router.get("/14/stats").mock(return_value=httpx.Response(503))
    retry = RetryPolicy(budget=budget, sleep=drained_sleep)
    async with AsyncAnalytics("user", "pw", cache_id=14, retry=retry) as api:
        with pytest.raises(Exception, match="503") as info:
            await api.stats()
    assert route.call_count == 1
    assert len(info.value.attempts) == 1  # type: ignore[attr-defined]
