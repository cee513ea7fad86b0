"""Every python block of the README and docs/, run as a reader runs it.

Each page runs in a fresh Python process (``tests/_run_page.py``): its
blocks in the order a reader meets them, then the lines the reader types
next (``asyncio.run(main())``), with ``MEMCACHIER_USERNAME``,
``MEMCACHIER_PASSWORD`` and ``MEMCACHIER_BASE_URL`` pointing at an
emulator served over TCP on loopback with its real clock and live traffic:
no canned samples, no mocked time. The other docs tests check the details
of each example in process; these check that a copied page works.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio
import attrs
import pytest

from memcachier_async.testing import EmulatedCredential, Emulator

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RUNNER = Path(__file__).parent / "_run_page.py"
# Simulated operations per second on every cache, so that rates are not zero.
TRAFFIC = 400.0


@pytest.fixture
def anyio_backend() -> str:
    # The emulator serves from a thread of its own and each page picks its own
    # event loop in its own process: running these twice would test nothing new.
    return "asyncio"


@attrs.frozen
class Served:
    emulator: Emulator
    base_url: str

    @property
    def credential(self) -> EmulatedCredential:
        return self.emulator.credential

    def env(self, credential: EmulatedCredential | None = None) -> dict[str, str]:
        credential = credential or self.credential
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCACHIER_")}
        env.pop("COLUMNS", None)
        return {
            **env,
            "MEMCACHIER_USERNAME": credential.sasl_username,
            "MEMCACHIER_PASSWORD": credential.sasl_password,
            "MEMCACHIER_BASE_URL": self.base_url,
        }


def fleet() -> Emulator:
    """Cache 1561 on three simulated servers and two more caches, with an hour of history."""
    emulator = Emulator(traffic=TRAFFIC, history_interval=60.0, seed=3)
    for servers in (2, 1):
        emulator.add_cache(servers).add_credential(primary=True)
    emulator.backfill(60, ops_per_sample=300)
    return emulator


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    emulator = fleet()
    async with emulator.serve() as base_url:
        yield Served(emulator, base_url)


async def run_page(
    served: Served, page: str, driver: str, env: Mapping[str, str] | None = None
) -> list[str]:
    """The lines the page's blocks and ``driver`` print, run in a fresh process."""
    done = await anyio.run_process(
        [sys.executable, str(RUNNER), page],
        input=driver.encode(),
        env=dict(env or served.env()),
        check=False,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{page} failed:\n{out}\n{err}"
    assert "Traceback" not in err, err
    return out.splitlines()


async def test_readme_example_runs_twice_in_a_row(served: Served) -> None:
    """The README's example, run twice back to back as the README says, prints the servers,
    the memory and a measured request rate each time."""
    servers = sorted(s.name for s in served.emulator.cache.servers)
    for _ in range(2):
        lines = await run_page(served, "README.md", "import asyncio\nasyncio.run(main())\n")
        assert sorted(line.split(" ", 1)[0] for line in lines[:3]) == servers
        assert lines[3].startswith("memory: ")
        assert lines[4].startswith("over "), lines[4]
        assert "n/a requests/s" not in lines[4]
        rate = lines[5].removeprefix("requests/s: ")
        assert float(rate) > 0, lines


async def test_getting_started_page(served: Served) -> None:
    """The first call prints each server; the tour, run twice, leaves the credential in use
    primary and working; rotate() then hands the primary role to a new credential."""
    original = served.credential.sasl_username
    driver = """
import asyncio

asyncio.run(main())


async def reader():
    async with AsyncAnalytics.from_env() as api:
        await tour(api)
        await tour(api)
        print("primary:", *[c.sasl_username for c in await api.list_credentials() if c.primary])
        new = await rotate(api)
        await api.stats()
        print("rotated to", new.sasl_username)

asyncio.run(reader())
"""
    lines = await run_page(served, "index.md", driver)
    servers = [s.name for s in served.emulator.cache.servers]
    assert sorted(line.split(" ", 1)[0] for line in lines[:3]) == sorted(servers)
    assert lines[3].startswith("cache 1561: servers 3, history records ")
    assert lines[4].startswith("credentials 1; ")
    assert lines[4].endswith(" made (write: False), deleted")
    assert lines[5] == lines[3]  # the second tour, still logged in
    assert lines[6].startswith("credentials 1; ")
    assert lines[7] == f"primary: {original}"
    rotated = lines[8].removeprefix("rotated to ")
    credentials = {c.sasl_username: c for c in served.emulator.cache.credentials}
    assert set(credentials) == {original, rotated}
    assert credentials[rotated].primary
    assert not credentials[original].primary


async def test_errors_page(served: Served) -> None:
    """flush_carefully names the server of a partial flush, reports a refusal, and a success."""
    from memcachier_async.testing import FaultPlan

    no_flush = served.emulator.cache.add_credential(flush=False)
    served.emulator.faults = plan = FaultPlan()
    plan.script("flush", "partial")
    driver = f"""
import asyncio

async def reader():
    async with AsyncAnalytics.from_env() as api:
        await flush_carefully(api)
        await flush_carefully(api)
    async with AsyncAnalytics.from_env(username={no_flush.sasl_username!r},
                                       password={no_flush.sasl_password!r}) as api:
        await flush_carefully(api)

asyncio.run(reader())
"""
    lines = await run_page(served, "errors.md", driver)
    servers = [s.name for s in served.emulator.cache.servers]
    assert lines[0].removeprefix("not flushed on: ") in servers, lines
    assert lines[1:] == ["flushed", "this credential may not flush"]


async def test_client_page(served: Served) -> None:
    """The constructor, with_options views, request() and to_json, over TCP."""
    driver = """
import asyncio
import json


async def reader():
    await show_cache_id(username, password, base_url)
    async with AsyncAnalytics.from_env() as api:
        print("quick", await quick_stats(api))
        await one_try(api)
        print("raw", *sorted(await raw_stats(api)))
        print("document", json.loads(stats_document(await api.stats()))["servers"])

asyncio.run(reader())
"""
    lines = await run_page(served, "client.md", driver)
    servers = sorted(s.name for s in served.emulator.cache.servers)
    assert lines == ["cache 1561", "quick 3", "raw " + " ".join(servers), "document 3"]
    assert served.emulator.calls["flush"] == 1


def fleet_targets(served: Served) -> str:
    """Python for the fleet's credential sets, one per cache (as a reader would list them)."""
    entries = [
        f"CacheCredentials({c.primary.sasl_username!r}, {c.primary.sasl_password!r}, "
        f"name='cache-{c.cache_id}')"
        for c in served.emulator.caches
        if c.primary is not None
    ]
    return "FLEET = [" + ", ".join(entries) + "]"


async def test_insight_page(served: Served) -> None:
    """Totals, a measured hit rate, the history chart, fan_out and watch over the fleet."""
    driver = f"""
import asyncio

from memcachier_async import CacheCredentials

{fleet_targets(served)}


async def reader():
    async with AsyncAnalytics.from_env() as api:
        await show_totals(api)
        await show_hit_rate(api, seconds=2)
        print("points", len(await hit_rate_chart(api)))
    await check_all(FLEET, base_url=base_url)
    print("answered", *await tagged_check(FLEET, base_url=base_url))
    await poll(FLEET, interval=1.5, rounds=3, base_url=base_url)

asyncio.run(reader())
"""
    lines = await run_page(served, "insight.md", driver)
    names = sorted(f"cache-{c.cache_id}" for c in served.emulator.caches)
    assert lines[0].startswith("3 servers: ")
    assert lines[1].startswith("memory: ")
    assert lines[2].startswith("fullest: mc")
    assert lines[3].startswith("hit rate over 2 s: ") or lines[3].startswith("hit rate over 3 s: ")
    assert lines[4].startswith("gets/s: ")
    points = lines.index("points 59")
    fanned = lines[points + 1 : points + 4]
    assert sorted(line.split(":", 1)[0] for line in fanned) == names
    assert all(" servers, " in line for line in fanned), fanned
    assert lines[points + 4] == "answered " + " ".join(names)
    polled = lines[points + 5 :]
    assert {line.split(" ", 2)[2].split(":")[0] for line in polled} == set(names)
    assert all(re.fullmatch(r"round \d+ cache-\d+: hit rate [01]\.\d+", line) for line in polled)


async def test_retries_page(served: Served) -> None:
    """The three policies, the hooks and the own-http_client example, against the emulator."""
    driver = """
import asyncio

from prometheus_client import CollectorRegistry


async def reader():
    async with default, tuned, single:
        for client in (default, tuned, single):
            print("servers", len(await client.stats()))
    async with make_client() as client:
        await client.stats()
    registry = CollectorRegistry()
    metrics = instrument(registry)
    async with http, api:
        await api.stats()
    metrics.uninstall()
    labels = {"endpoint": "stats", "outcome": "ok"}
    print("measured", registry.get_sample_value(
        "memcachier_client_call_duration_seconds_count", labels))

asyncio.run(reader())
"""
    lines = await run_page(served, "retries.md", driver)
    assert lines == [
        "servers 3",
        "servers 3",
        "servers 3",
        "login: 200 after 0 retries",
        "stats: 200 after 0 retries",
        "measured 1.0",
    ]


async def test_limits_page(served: Served) -> None:
    """A bound the answer fits in, one it does not, and the corporate client on loopback
    (reached directly: the proxy is for https:// beyond loopback)."""
    driver = """
import asyncio


async def reader():
    async with api, corporate:
        print("stats", len(await stats_or_none(api)))
        print("corporate", len(await corporate.stats()))
    async with AsyncAnalytics.from_env(max_response_size=100) as small:
        print("small", await stats_or_none(small))

asyncio.run(reader())
"""
    lines = await run_page(served, "limits.md", driver)
    assert lines == [
        "stats 3",
        "corporate 3",
        "the answer was larger than 100 bytes",
        "small None",
    ]


async def test_performance_page(served: Served) -> None:
    """The aiohttp-backed client reads the emulator's stats under asyncio."""
    driver = """
import asyncio


async def reader():
    async with api:
        print("stats", len(await api.stats()))

asyncio.run(reader())
"""
    assert await run_page(served, "performance.md", driver) == ["stats 3"]


async def test_testing_page(served: Served) -> None:
    """The testing page's tests, called as plain coroutines in a fresh process (pytest runs
    them too: tests/test_emulator_readme.py)."""
    driver = """
import asyncio

from memcachier_async.testing import Emulator


async def reader():
    await test_dashboard_reads_stats()
    await test_over_tcp()
    emulator = Emulator()
    emulator.drive_traffic(100)
    emulator.sample()
    await test_history_is_served(emulator)
    await test_app_reads_the_cache()
    await test_an_outage_is_reported_without_waiting()
    await test_flaky_service()
    print("done")

asyncio.run(reader())
"""
    lines = await run_page(served, "testing.md", driver)
    assert lines[-1] == "done"
    assert any(line.startswith("not flushed on ('mc") for line in lines), lines
