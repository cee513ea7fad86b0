"""The exporter's capacity gauges: from a history call per cache in the background, never
from a scrape."""

from __future__ import annotations

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async import AsyncAnalytics, capacity
from memcachier_async._cli.exporter import Exporter
from memcachier_async.testing import Emulator, SimulatedServer

pytestmark = pytest.mark.anyio

UNTIL = "memcachier_capacity_seconds_until_full"
FILL = "memcachier_capacity_fill_rate_bytes_per_second"
SUGGESTED = "memcachier_capacity_suggested_limit_bytes"


def fleet() -> tuple[Emulator, list[tuple[str, AsyncAnalytics]]]:
    """'tiny' evicts, 'big' fills slowly (fill traffic); 'idle', on an emulator of its own
    without traffic, has a flat history."""
    emulator = Emulator(servers=None, traffic_profile="fill", history_interval=60.0)
    clients = []
    for name, size in (("tiny", 40_000), ("big", 64 * 2**20)):
        cache = emulator.add_cache(
            [SimulatedServer(f"mc{i}.{name}.test:11211", limit_maxbytes=size) for i in (1, 2)]
        )
        credential = cache.add_credential(f"user-{name}", f"pw-{name}", primary=True)
        clients.append((name, emulator.client(credential)))
    emulator.backfill(10, ops_per_sample=40)
    idle = Emulator(servers=2, history_interval=60.0)
    idle.backfill(3, ops_per_sample=0)
    clients.append(("idle", idle.client()))
    return emulator, clients


async def scrape(exporter: Exporter) -> dict[str, dict[str, float]]:
    transport = httpx.ASGITransport(app=exporter.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as http:
        text = (await http.get("/metrics")).text
    found: dict[str, dict[str, float]] = {UNTIL: {}, FILL: {}, SUGGESTED: {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name][sample.labels["cache"]] = sample.value
    return found


async def test_the_gauges_follow_each_caches_advice() -> None:
    """Evicting: 0 s until full and a suggested limit; filling: a time and no suggestion;
    flat: no time until full. The values are capacity()'s."""
    _, clients = fleet()
    exporter = Exporter(clients, interval=60)
    await exporter.advise()
    gauges = await scrape(exporter)
    advice = {}
    for name, api in clients:
        advice[name] = capacity(await api.history())
        await api.aclose()
    assert gauges[UNTIL]["tiny"] == 0.0
    assert gauges[UNTIL]["big"] == pytest.approx(advice["big"].seconds_until_full)
    assert gauges[UNTIL]["big"] > 0
    assert "idle" not in gauges[UNTIL]
    assert gauges[SUGGESTED] == {"tiny": advice["tiny"].suggested_limit_bytes}
    assert gauges[FILL]["big"] == pytest.approx(
        sum(s.fill_rate for s in advice["big"].servers.values())
    )
    assert gauges[FILL]["big"] > 0
    assert gauges[FILL]["idle"] == 0.0


async def test_history_is_read_in_the_background_never_by_a_scrape() -> None:
    """run() reads each history after the first round and again every history_interval;
    scraping /metrics calls nothing."""
    emulator, clients = fleet()
    exporter = Exporter(clients, interval=0.5, history_interval=0.05)
    async with anyio.create_task_group() as group:
        group.start_soon(exporter.run)
        with anyio.fail_after(20):
            while emulator.calls["history"] < 2 * len(clients):  # noqa: ASYNC110 - a counter, not an event
                await anyio.sleep(0.02)
        group.cancel_scope.cancel()
    calls = dict(emulator.calls)
    gauges = await scrape(exporter)
    assert dict(emulator.calls) == calls
    assert set(gauges[FILL]) == {"tiny", "big", "idle"}
    for _, api in clients:
        await api.aclose()


async def test_a_failing_history_keeps_the_other_caches_advice() -> None:
    """One cache's history failing leaves its gauges out, and the others' in."""
    emulator, clients = fleet()
    emulator.caches[0].active = False  # tiny: 404 No cache found
    exporter = Exporter(clients, interval=60)
    await exporter.advise()
    gauges = await scrape(exporter)
    assert set(gauges[FILL]) == {"big", "idle"}
    for _, api in clients:
        await api.aclose()


def test_history_interval_is_checked() -> None:
    """A history interval that is not positive is refused, naming it; None turns it off."""
    with pytest.raises(ValueError, match="history_interval"):
        Exporter([], history_interval=0)
    assert Exporter([], history_interval=None).history_interval is None
