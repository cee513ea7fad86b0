"""The README's emulator examples run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

README = Path(__file__).parent.parent / "README.md"


def section_code() -> dict[str, Any]:
    """Execute the ``python readme-example`` blocks of the emulator section."""
    text = README.read_text()
    section = re.search(r"<!-- section:emulator -->(.*?)<!-- /section:emulator -->", text, re.S)
    assert section is not None
    blocks = re.findall(r"```python readme-example\n(.*?)```", section.group(1), re.S)
    assert len(blocks) == 3
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "README.md:emulator", "exec"), namespace)
    return namespace


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
