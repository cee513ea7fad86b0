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
