"""The examples of the page on testing with the emulator run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from docs_examples import blocks, page_code

from memcachier_async.testing import Emulator

pytestmark = pytest.mark.anyio


def section_code() -> dict[str, Any]:
    """Execute the python blocks of the testing page."""
    return page_code("testing.md")


async def test_in_process_example() -> None:
    """The in-process example's assertions hold."""
    await section_code()["test_dashboard_reads_stats"]()


async def test_tcp_example() -> None:
    """The TCP example creates a credential the emulator then holds."""
    await section_code()["test_over_tcp"]()


async def test_fault_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The fault example gets through its faults and prints what was injected."""
    await section_code()["test_flaky_service"]()
    out = capsys.readouterr().out
    assert "not flushed on ('mc" in out
    assert "the answer was lost" in out
    assert "('stats'," in out


async def test_fixture_example(memcachier_emulator: Emulator) -> None:
    """The pytest fixture example passes with the plugin's memcachier_emulator fixture."""
    await section_code()["test_history_is_served"](memcachier_emulator)


async def test_whole_test_switch_examples() -> None:
    """The mock_api and instant_retries examples pass as written."""
    code = section_code()
    await code["test_app_reads_the_cache"]()
    await code["test_an_outage_is_reported_without_waiting"]()


def test_each_example_passes_pasted_alone_into_a_fresh_suite(tmp_path: Path) -> None:
    """Each python block of the page, saved as its own test file in an empty directory (no
    conftest, no pytest settings: a new project's suite), passes under pytest: markers and
    imports are all in the block."""
    running = [block for block in blocks("testing.md") if block.runs]
    tests = 0
    for number, block in enumerate(running):
        (tmp_path / f"test_example_{number}.py").write_text(block.code)
        tests += len(re.findall(r"^async def test_|^def test_", block.code, re.M))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert tests >= 6
    # anyio's plugin may run each test once per installed backend (asyncio, trio).
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.fullmatch(r"(\d+) passed in [\d.]+s", summary)
    assert passed is not None, done.stdout
    assert int(passed[1]) % tests == 0, done.stdout
