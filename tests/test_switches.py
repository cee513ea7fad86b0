"""memcachier_async.testing's whole-test switches: instant_retries and mock_api, and the request log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from memcachier_async import (
    AsyncAnalytics,
    CacheCredentials,
    RetryPolicy,
    ServerError,
    fan_out,
)
from memcachier_async._transports.shards import ShardedTransport
from memcachier_async.testing import Emulator, RequestRecord, instant_retries, mock_api

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"


class Sleeps:
    """A sleep that records what it was asked to wait, and waits nothing."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


@pytest.fixture
def unavailable() -> Iterator[respx.Route]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/login").respond(200, json={"cache_id": 7})
        yield router.get("/7/stats").respond(503, headers={"Retry-After": "2"})


async def test_instant_retries_wait_zero_and_keep_max_attempts(unavailable: respx.Route) -> None:
    """Under the switch, 4 × 503 with Retry-After: 2 are four attempts and no wait."""
    sleeps = Sleeps()
    async with AsyncAnalytics("u", "p", retry=RetryPolicy(sleep=sleeps)) as api:
        with instant_retries(), pytest.raises(ServerError) as caught:
            await api.stats()
        assert len(caught.value.attempts) == 4
        assert sleeps.asked == [0.0, 0.0, 0.0]
        # Off again: the next call waits what the server asked.
        with pytest.raises(ServerError):
            await api.stats()
        assert sleeps.asked[3:] == [2.0, 2.0, 2.0]


async def test_instant_retries_can_cap_attempts(unavailable: respx.Route) -> None:
    """instant_retries(max_attempts=2) bounds every policy to two attempts."""
    async with AsyncAnalytics("u", "p", retry=RetryPolicy(max_attempts=10)) as api:
        with instant_retries(max_attempts=2), pytest.raises(ServerError) as caught:
            await api.stats()
    assert len(caught.value.attempts) == 2
    with pytest.raises(ValueError, match="max_attempts"), instant_retries(max_attempts=0):
        pass


async def test_instant_retries_ignore_an_empty_budget(unavailable: respx.Route) -> None:
    """An exhausted retry budget does not change how many attempts a call makes in tests."""
    from memcachier_async import RetryBudget

    policy = RetryPolicy(budget=RetryBudget(capacity=0))
    async with AsyncAnalytics("u", "p", retry=policy) as api:
        with instant_retries(), pytest.raises(ServerError) as caught:
            await api.stats()
    assert len(caught.value.attempts) == 4


def test_the_instant_retries_fixture(memcachier_instant_retries: None) -> None:
    """The pytest fixture turns the switch on for the test."""
    from memcachier_async._transports import retry

    assert retry._instant == 0


async def test_mock_api_catches_clients_made_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env() with any credentials, inside mock_api(), reads the emulator and is logged."""
    monkeypatch.setenv("MEMCACHIER_USERNAME", "my-app")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "whatever")
    monkeypatch.delenv("MEMCACHIER_BASE_URL", raising=False)
    with mock_api() as emulator:
        async with AsyncAnalytics.from_env() as api:
            stats = await api.stats()
    assert set(stats) == {s.name for s in emulator.cache.servers}
    log = list(emulator.requests)
    assert [(r.method, r.endpoint, r.status) for r in log] == [
        ("GET", "login", 200),
        ("GET", "stats", 200),
    ]
    assert log[1].path == f"/api/v1/{emulator.cache.cache_id}/stats"
    assert all(isinstance(r, RequestRecord) and r.time > 0 for r in log)
    assert log[0].time <= log[1].time


async def test_mock_api_leaves_explicit_targets_alone() -> None:
    """A client with its own transport or base_url is not redirected; after the block nothing is."""
    own = Emulator()
    with mock_api() as mocked:
        async with own.client() as api:  # an explicit transport
            await api.stats()
        api = AsyncAnalytics("u", "p", base_url="http://127.0.0.1:1/api/v1")
        assert type(api.http_client._transport.inner) is ShardedTransport  # type: ignore[attr-defined]
        await api.aclose()
    assert own.calls["stats"] == 1
    assert mocked.calls["stats"] == 0
    outside = AsyncAnalytics("u", "p")
    assert type(outside.http_client._transport.inner) is ShardedTransport  # type: ignore[attr-defined]
    await outside.aclose()
    own.close()


async def test_mock_api_covers_fan_out() -> None:
    """fan_out's own shared client is redirected too: every cache answers from the emulator."""
    with mock_api() as emulator:
        second = emulator.add_cache(2)
        other = second.add_credential()
        targets = [
            CacheCredentials(emulator.username, emulator.password),
            CacheCredentials(other.sasl_username, other.sasl_password),
        ]
        async with fan_out(targets, lambda api: api.stats()) as results:
            sizes = sorted([len(r.value or {}) async for r in results])
    assert sizes == [2, 3]
    assert emulator.calls["stats"] == 2


@mock_api()
async def test_mock_api_as_a_decorator() -> None:
    """@mock_api() on an async test: the body runs with every client emulated."""
    async with AsyncAnalytics("anyone", "anything") as api:
        assert len(await api.list_credentials()) == 2  # the primary, and "anyone"


def test_mock_api_decorates_sync_functions_too() -> None:
    """@mock_api() on a sync function turns the switch on for its body only."""
    from memcachier_async import _stack

    @mock_api()
    def inside() -> int:
        return len(_stack._mocks)

    assert inside() == 1
    assert _stack._mocks == []


async def test_the_mock_api_fixture(memcachier_mock_api: Emulator) -> None:
    """The pytest fixture yields the emulator every client talks to."""
    async with AsyncAnalytics("u", "p") as api:
        await api.flush()
    assert memcachier_mock_api.requests[-1].endpoint == "flush"
    assert memcachier_mock_api.requests[-1].status == 200


async def test_mock_api_keeps_wrong_passwords_out() -> None:
    """A known username with a wrong password gets 401 from the emulator, as the service would."""
    from memcachier_async import AuthenticationError

    with mock_api() as emulator:
        async with AsyncAnalytics(emulator.username, "wrong") as api:
            with pytest.raises(AuthenticationError):
                await api.stats()
        assert emulator.requests[-1].status == 401


async def test_the_request_log_records_drops_and_unknown_paths() -> None:
    """A reset is logged with status None; a path the API lacks with endpoint None."""
    from memcachier_async.testing import FaultPlan, Faults

    emulator = Emulator(faults=FaultPlan(stats=Faults(reset=1.0)))
    transport: Any = emulator.transport()
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        auth = (emulator.username, emulator.password)
        assert (await http.get("/nowhere", auth=auth)).status_code == 404
        with pytest.raises(httpx.ReadError):
            await http.get(f"/{emulator.cache.cache_id}/stats", auth=auth)
    (unknown, dropped) = emulator.requests
    assert (unknown.endpoint, unknown.status) == (None, 404)
    assert (dropped.endpoint, dropped.status) == ("stats", None)
    emulator.close()
