"""Probes an HA pair can share: one API call per cache however many probes ask at once,
an answer reused for --probe-cache-ttl, and one poll per interval however many scrape.

The Prober runs on asyncio and trio (gated mock transports, no timing but the
deadlines each test names); the HTTP tests run the exporter (uvicorn, asyncio)
against the emulator over TCP and count the calls the emulator saw.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest
from _gate import Gate, wait_until
from click.testing import CliRunner

from memcachier_async import AsyncAnalytics, RetryPolicy
from memcachier_async._cli import main
from memcachier_async._cli.exporter import Exporter
from memcachier_async._cli.probe import ProbeBusy, Prober
from memcachier_async.testing import Emulator

TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


# --- the Prober, on both backends ------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_probes_of_a_cache_share_one_call() -> None:
    """Three probes of one cache while its call is in flight: one API call, three answers."""
    gate = Gate()
    prober = Prober({"web": gate.client()}, cache_ttl=0)
    results: list[Any] = []

    async def probe() -> None:
        results.append(await prober.probe("web", within=10))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(probe)
        await wait_until(lambda: gate.in_flight == 1)
        await anyio.sleep(0.05)  # the others are waiting for it, not calling
        assert gate.calls == 1
        gate.open.set()
    assert [r.success for r in results] == [True, True, True]
    assert gate.calls == prober.api_calls == 1
    assert prober.results == {"success": 3}


@pytest.mark.anyio
async def test_an_answer_is_reused_within_the_ttl_and_not_after() -> None:
    """cache_ttl: a probe right after a call reuses it; once the ttl passed, the next one calls."""
    gate = Gate()
    gate.open.set()
    prober = Prober({"web": gate.client()}, cache_ttl=0.2)
    assert (await prober.probe("web", within=10)).success
    assert (await prober.probe("web", within=10)).success
    assert gate.calls == 1
    await anyio.sleep(0.3)
    assert (await prober.probe("web", within=10)).success
    assert gate.calls == prober.api_calls == 2


@pytest.mark.anyio
async def test_without_a_ttl_only_concurrent_probes_share() -> None:
    """cache_ttl=0: probes one after the other each call."""
    gate = Gate()
    gate.open.set()
    prober = Prober({"web": gate.client(), "other": gate.client()}, cache_ttl=0)
    for cache in ("web", "web", "other"):
        await prober.probe(cache, within=10)
    assert gate.calls == 3


@pytest.mark.anyio
async def test_a_probe_waiting_for_another_gives_up_at_its_own_deadline() -> None:
    """A waiting probe with less time than the call: failure at its deadline; the call goes on
    and serves the probe that made it."""
    gate = Gate()
    prober = Prober({"web": gate.client()}, cache_ttl=0)
    first: list[Any] = []
    async with anyio.create_task_group() as group:

        async def lead() -> None:
            first.append(await prober.probe("web", within=10))

        group.start_soon(lead)
        await wait_until(lambda: gate.in_flight == 1)
        late = await prober.probe("web", within=0.1)
        assert not late.success
        assert late.sample.error == "timeout"
        gate.open.set()
    assert first[0].success
    assert gate.calls == 1


@pytest.mark.anyio
async def test_when_the_calling_probe_is_cancelled_a_waiting_one_calls() -> None:
    """The probe that called is cancelled (its scraper went away): a probe waiting for it makes
    its own call rather than failing."""
    gate = Gate()
    prober = Prober({"web": gate.client()}, cache_ttl=0)
    waiting: list[Any] = []
    async with anyio.create_task_group() as group:
        leader = anyio.CancelScope()

        async def lead() -> None:
            with leader:
                await prober.probe("web", within=10)

        group.start_soon(lead)
        await wait_until(lambda: gate.in_flight == 1)

        async def follow() -> None:
            waiting.append(await prober.probe("web", within=10))

        group.start_soon(follow)
        await anyio.sleep(0.05)
        leader.cancel()
        await wait_until(lambda: gate.calls == 2)
        gate.open.set()
    assert waiting[0].success
    assert prober.api_calls == 2


@pytest.mark.anyio
async def test_a_probe_that_gets_no_slot_does_not_leave_others_waiting() -> None:
    """Busy (every slot taken): the probe raises ProbeBusy, and the next probe of that cache
    calls once a slot is free."""
    gate = Gate()
    prober = Prober({"a": gate.client(), "b": gate.client()}, max_concurrent=1, cache_ttl=0)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: prober.probe("a", within=10))
        await wait_until(lambda: gate.in_flight == 1)
        with pytest.raises(ProbeBusy):
            await prober.probe("b", within=0.05)
        gate.open.set()
    assert (await prober.probe("b", within=10)).success
    assert gate.calls == 2


@pytest.mark.parametrize("ttl", [-1.0, math.nan, math.inf])
def test_the_ttl_is_checked_when_given(ttl: float) -> None:
    """A negative or non-finite cache_ttl is refused, naming it."""
    with pytest.raises(ValueError, match="cache_ttl"):
        Prober({}, cache_ttl=ttl)


def test_the_ttl_flag_is_checked() -> None:
    """--probe-cache-ttl -1 is a usage error naming the flag."""
    result = CliRunner().invoke(main, ["export", "--emulator", "--probe-cache-ttl", "-1"])
    assert result.exit_code == 2
    assert "--probe-cache-ttl" in result.output


# --- over HTTP, against the emulator ------------------------------------------------------


Served = tuple[Emulator, Exporter, httpx.AsyncClient, list[tuple[str, AsyncAnalytics]]]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """The emulator over TCP (two caches) and an exporter serving both, default ttl (1 s)."""
    emulator = Emulator(servers=None, history_interval=3600)
    async with AsyncExitStack() as stack:
        stack.callback(emulator.close)
        base_url = await stack.enter_async_context(emulator.serve())
        clients = []
        for name in ("web", "sessions"):
            credential = emulator.add_cache(2).add_credential(primary=True)
            api = AsyncAnalytics(
                credential.sasl_username,
                credential.sasl_password,
                base_url=base_url,
                retry=RetryPolicy.disabled(),
            )
            await stack.enter_async_context(api)
            clients.append((name, api))
        exporter = Exporter(clients, interval=0.2, mode="probe")
        root = await stack.enter_async_context(exporter.serve("127.0.0.1", 0))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=root, timeout=10))
        yield emulator, exporter, http, clients


async def probe(http: httpx.AsyncClient, cache: str) -> str:
    response = await http.get("/probe", params={"cache": cache}, headers={TIMEOUT_HEADER: "4"})
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_an_ha_pair_probing_together_makes_one_request_and_2_s_later_another(
    served: Served,
) -> None:
    """Two concurrent /probe?cache=web: one stats request at the emulator, both answered with
    its values; two probes 2 s apart: two requests. Another cache is its own call."""
    emulator, _, http, _ = served
    answers: list[str] = []

    async def one() -> None:
        answers.append(await probe(http, "web"))

    async with anyio.create_task_group() as group:
        group.start_soon(one)
        group.start_soon(one)
    assert emulator.calls["stats"] == 1
    assert len(answers) == 2
    assert all("memcachier_probe_success 1.0" in text for text in answers)
    await anyio.sleep(2)
    await probe(http, "web")
    assert emulator.calls["stats"] == 2
    await probe(http, "sessions")
    assert emulator.calls["stats"] == 3
    metrics = (await http.get("/metrics")).text
    assert "memcachier_exporter_probe_api_calls_total 3.0" in metrics
    assert 'memcachier_exporter_probes_total{result="success"} 4.0' in metrics


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_poll_mode_polls_once_per_interval_however_many_scrape(
    served: Served,
) -> None:
    """Four scrapers hammering /metrics through 3 rounds: at most 3 calls per cache."""
    emulator, _, _, clients = served
    exporter = Exporter(clients, interval=0.2)
    scrapes = 0
    async with exporter.serve("127.0.0.1", 0) as root, httpx.AsyncClient(base_url=root) as own:

        async def scraper() -> None:
            nonlocal scrapes
            while True:
                assert (await own.get("/metrics")).status_code == 200
                scrapes += 1

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(scraper)
            await exporter.run(rounds=3)
            group.cancel_scope.cancel()
    assert exporter.rounds == 3
    assert scrapes > 12  # more scrapes than rounds × scrapers: the scrapes never poll
    assert 2 <= emulator.calls["stats"] <= 3 * 2
