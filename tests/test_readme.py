"""The getting-started and errors pages' examples run as written, against respx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from docs_examples import page_code

from memcachier_async import AsyncAnalytics

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "samples"
BASE = "https://analytics.memcachier.com/api/v1"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


async def test_first_example_prints_stats(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first example of the getting-started page logs in from the environment and prints each server."""
    monkeypatch.setenv("MEMCACHIER_USERNAME", "user")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "pw")
    code = page_code("index.md")
    with respx.mock(base_url=BASE) as router:
        router.get("/login").respond(json=sample("login.json"))
        router.get("/1561/stats").respond(json=sample("stats_two_servers.json"))
        await code["main"]()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("mc1.example.com:11211 ")
    assert out[1] == "mc2.example.com:11211 7 2 2017-07-21 15:31:25+00:00"


async def test_tour_calls_every_endpoint_but_promote_on_a_credential_it_made() -> None:
    """The tour makes each call once (plus one list for update) and deletes only the credential
    it created; rotate() promotes a new one. Neither deletes the credential in use."""
    code = page_code("index.md")
    new = sample("credential_created.json")
    with respx.mock(base_url=BASE) as router:
        routes = [
            router.get("/login").respond(json=sample("login.json")),
            router.get("/1561/stats").respond(json=sample("stats_reference.json")),
            router.get("/1561/history").respond(json=sample("history.json")),
            router.get("/1561/credentials").respond(
                json=[
                    *sample("credentials.json"),
                    {k: v for k, v in new.items() if k != "sasl_password"},
                ]
            ),
            router.post("/1561/credentials").respond(json=new),
            router.patch("/1561/credentials/CRED_USERNAME").respond(
                json=sample("capabilities.json")
            ),
            router.delete("/1561/credentials/primary/CRED_USERNAME").respond(200, text=""),
            router.post("/1561/flush").respond(200, text=""),
        ]
        promote = router.post("/1561/credentials/primary/CRED_USERNAME").respond(
            json=sample("credential_promoted.json")
        )
        async with AsyncAnalytics("user", "pw") as api:
            await code["tour"](api)
            assert [r.call_count for r in routes] == [1, 1, 1, 2, 1, 1, 1, 1]
            assert promote.call_count == 0
            rotated = await code["rotate"](api)
        assert rotated.sasl_username == "CRED_USERNAME"
        assert promote.call_count == 1
        assert len(router.calls) == 11  # nothing else: no delete of "user"


async def test_error_example_reports_what_it_claims(capsys: pytest.CaptureFixture[str]) -> None:
    """flush_carefully prints the servers of a partial flush failure, even on a client with the
    default retry policy (which would retry the 500), a refusal, and a success."""
    code = page_code("errors.md")
    with respx.mock(base_url=BASE) as router:
        flush = router.post("/5/flush").mock(
            side_effect=[
                httpx.Response(500, text="Server error: a:1,b:2"),
                httpx.Response(403, text="You are not authorized to perform this action."),
                httpx.Response(200, text=""),
            ]
        )
        async with AsyncAnalytics("user", "pw", cache_id=5) as api:
            for _ in range(3):
                await code["flush_carefully"](api)
    assert flush.call_count == 3
    assert capsys.readouterr().out.splitlines() == [
        "not flushed on: a:1, b:2",
        "this credential may not flush",
        "flushed",
    ]
