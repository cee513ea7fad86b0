"""The retries page's examples run as written, against respx."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx
from docs_examples import page_code

from memcachier_async import ServerError

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def credentials_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's clients come from ``AsyncAnalytics.from_env()``."""
    monkeypatch.setenv("MEMCACHIER_USERNAME", "user")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "pw")
    monkeypatch.delenv("MEMCACHIER_BASE_URL", raising=False)


ROOT = Path(__file__).parent.parent
BASE = "https://analytics.memcachier.com/api/v1"


async def test_retry_example_reports_retries(capsys: pytest.CaptureFixture[str]) -> None:
    """The on_retry hook and the response hook of the retries page print what happened."""
    code = page_code("retries.md")
    stats = json.loads((ROOT / "tests" / "samples" / "stats_reference.json").read_text())
    with respx.mock(base_url=BASE) as router:
        router.get("/login").respond(json={"cache_id": 7})
        router.get("/7/stats").mock(
            side_effect=[
                httpx.Response(503, headers={"Retry-After": "0"}),  # no real wait
                httpx.Response(200, json=stats),
            ]
        )
        async with code["make_client"]() as api:
            await api.stats()
    assert capsys.readouterr().out.splitlines() == [
        "login: 200 after 0 retries",
        "stats: attempt 1 failed (503), retry in 0.0 s",
        "stats: 200 after 1 retries",
    ]


@pytest.mark.parametrize(("name", "attempts"), [("default", 4), ("tuned", 2), ("single", 1)])
async def test_policy_examples_send_what_they_say(name: str, attempts: int) -> None:
    """The page's three clients: the default policy tries 4 times, the tuned one 2, the disabled one once."""
    code = page_code("retries.md")
    with respx.mock(base_url=BASE) as router:
        router.get("/login").respond(json={"cache_id": 7})
        stats = router.get("/7/stats").respond(503, headers={"Retry-After": "0"})
        async with code[name] as api:
            with pytest.raises(ServerError):
                await api.stats()
    assert stats.call_count == attempts


async def test_own_http_client_example_retries_through_its_transport() -> None:
    """The page's own-http_client example is used as given and retries through the RetryTransport it wraps."""
    code = page_code("retries.md")
    api, http = code["api"], code["http"]
    assert api.http_client is http
    with respx.mock(base_url=BASE) as router:
        router.get("/login").respond(json={"cache_id": 7})
        stats = router.get("/7/stats").respond(503, headers={"Retry-After": "0"})
        async with http, api:
            with pytest.raises(ServerError):
                await api.stats()
    assert stats.call_count == 4
