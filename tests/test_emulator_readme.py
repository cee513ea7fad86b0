"""The examples of the page on testing with the emulator run as written."""

from __future__ import annotations

from typing import Any

import pytest
from docs_examples import page_code

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
    await section_code()["over_tcp"]()


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
