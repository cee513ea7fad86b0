"""The README's retry example runs as written, against respx."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
BASE = "https://analytics.memcachier.com/api/v1"


def retries_section_code() -> dict[str, Any]:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- section:retries -->(.*?)<!-- /section:retries -->", readme, re.S)
    assert section is not None
    blocks = re.findall(r"```python readme-example\n(.*?)```", section.group(1), re.S)
    assert blocks
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "README.md:retries", "exec"), namespace)
    return namespace


async def test_retry_example_reports_retries(capsys: pytest.CaptureFixture[str]) -> None:
    """The on_retry hook and the response hook of the README print what happened."""
    code = retries_section_code()
    stats = json.loads((ROOT / "tests" / "samples" / "stats_reference.json").read_text())
    with respx.mock(base_url=BASE) as router:
        router.get("/login").respond(json={"cache_id": 7})
        router.get("/7/stats").mock(
            side_effect=[
                httpx.Response(503, headers={"Retry-After": "0"}),  # no real wait
                httpx.Response(200, json=stats),
            ]
        )
        async with code["make_client"]("user", "pw") as api:
            await api.stats()
    assert capsys.readouterr().out.splitlines() == [
        "login: 200 after 0 retries",
        "stats: attempt 1 failed (503), retry in 0.0 s",
        "stats: 200 after 1 retries",
    ]
