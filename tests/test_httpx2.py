"""httpx2: the SDK unchanged under ``httpx2.alias_httpx()``, as an application calls it.

``nox -s tests_httpx2`` runs the whole suite with the alias made before
anything imports httpx; there ``MEMCACHIER_EXPECT_HTTPX2`` is set and the
first test checks that the alias really held. The second runs the example of
``docs/client.md`` in a fresh process, as a user pastes it, against the
emulator over TCP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import httpx
import pytest
from docs_examples import named_blocks

import memcachier_async

pytest.importorskip("httpx2")


@pytest.mark.skipif(
    not os.environ.get("MEMCACHIER_EXPECT_HTTPX2"), reason="only under nox -s tests_httpx2"
)
def test_the_suite_runs_on_httpx2_when_asked() -> None:
    """Under the alias, httpx is httpx2 and the SDK's own client is one of its clients."""
    assert httpx.__name__ == "httpx2"
    api = memcachier_async.AsyncAnalytics("u", "p")
    assert type(api.http_client).__module__.startswith("httpx2")


def test_the_alias_example_runs_in_a_fresh_process() -> None:
    """docs/client.md's alias block, then a stats call to the emulator over TCP: the
    client is httpx2's and the call answers."""
    (block,) = named_blocks("client.md", "httpx2-alias")
    script = block + textwrap.dedent(
        """
        import anyio
        import httpx

        from memcachier_async import AsyncAnalytics
        from memcachier_async.testing import Emulator


        async def main() -> None:
            emulator = Emulator()
            async with emulator.serve() as base_url:
                async with AsyncAnalytics(
                    emulator.username, emulator.password, base_url=base_url
                ) as api:
                    stats = await api.stats()
                    print(httpx.__name__, type(api.http_client).__module__, len(stats))
            emulator.close()


        anyio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    name, module, servers = done.stdout.split()
    assert name == "httpx2"
    assert module.startswith("httpx2")
    assert int(servers) > 0
