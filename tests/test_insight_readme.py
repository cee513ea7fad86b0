"""The insight page's examples run as written, against respx and the emulator."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from docs_examples import page_code

from memcachier_async import AsyncAnalytics, CacheCredentials, HistoryRecord, RetryPolicy, capacity
from memcachier_async._convert import structure
from memcachier_async.testing import STATS_FIELDS, Emulator, SimulatedServer

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "samples"
BASE = "https://analytics.memcachier.com/api/v1"


def insight_examples() -> dict[str, Any]:
    """Execute the python blocks of the insight page."""
    code = page_code("insight.md")
    assert {
        "show_totals",
        "show_hit_rate",
        "hit_rate_chart",
        "check_all",
        "tagged_check",
        "poll",
        "capacity_report",
        "runs_out_first",
    } <= (code.keys())
    return code


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def client(cache_id: int = 1561, username: str = "user") -> AsyncAnalytics:
    return AsyncAnalytics(username, "pw", cache_id=cache_id, retry=RetryPolicy.disabled())


async def test_totals_example(capsys: pytest.CaptureFixture[str]) -> None:
    """show_totals prints the server count, summed items and hits, and the fullest server."""
    code = insight_examples()
    with respx.mock(base_url=BASE) as router:
        router.get("/1561/stats").respond(json=sample("insight_after.json"))
        async with client() as api:
            await code["show_totals"](api)
    hits = sum(server["get_hits"] for server in sample("insight_after.json").values())
    assert capsys.readouterr().out.splitlines() == [
        f"4 servers: 45 items, {hits} hits since start",
        "memory: 4500 of 16000 bytes used",
        "fullest: b.example.com:11211 at 75%",
    ]


async def test_hit_rate_example(capsys: pytest.CaptureFixture[str]) -> None:
    """show_hit_rate compares two snapshots: 121 hits of 179 lookups, 12.5 gets/s."""
    code = insight_examples()
    with respx.mock(base_url=BASE) as router:
        router.get("/1561/stats").mock(
            side_effect=[
                httpx.Response(200, json=sample("insight_before.json")),
                httpx.Response(200, json=sample("insight_after.json")),
            ]
        )
        async with client() as api:
            await code["show_hit_rate"](api, seconds=0)
    assert capsys.readouterr().out.splitlines() == [
        "hit rate over 20 s: 67.6%",
        "gets/s: 12.50, evictions/s: 0.50",
        "  a.example.com:11211: get hit rate 0.8",
        "  b.example.com:11211: get hit rate 0.4",
        "  c.example.com:11211: get hit rate None",
        "  e.example.com:11211: get hit rate None",
    ]


async def test_history_chart_example(capsys: pytest.CaptureFixture[str]) -> None:
    """hit_rate_chart gives one point per later sampling time of the emulator's history."""
    code = insight_examples()
    emulator = Emulator(history_interval=60.0)
    emulator.backfill(6, ops_per_sample=500)
    async with emulator.client(retry=RetryPolicy.disabled()) as api:
        points = await code["hit_rate_chart"](api)
    assert len(points) == 5
    assert all(rate is not None and 0 <= rate <= 1 for _, rate in points)
    assert len(capsys.readouterr().out.splitlines()) == 5


async def test_fan_out_example(capsys: pytest.CaptureFixture[str]) -> None:
    """check_all reports stats, missing servers and other errors, one line per cache."""
    code = insight_examples()
    with respx.mock(base_url=BASE) as router:
        router.get("/1/stats").respond(json=sample("stats_two_servers.json"))
        router.get("/2/stats").respond(500, text="Server error: mc2.example.com:11211")
        router.get("/3/stats").respond(403, text="You are not authorized to perform this action.")
        targets = [client(i, f"cache{i}") for i in (1, 2, 3)]
        await code["check_all"](targets)
        for api in targets:
            await api.aclose()
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "cache1: 2 servers, 23 bytes used",
        "cache2: no answer from mc2.example.com:11211",
        "cache3: PermissionDeniedError: 403 Forbidden from GET "
        f"{BASE}/3/stats: You are not authorized to perform this action.",
    ]


async def test_tagged_fan_out_example(capsys: pytest.CaptureFixture[str]) -> None:
    """tagged_check sends X-Team to every cache and reports the one body over its limit."""
    code = insight_examples()
    body = (SAMPLES / "stats_two_servers.json").read_bytes()
    with respx.mock(base_url=BASE) as router:
        router.get("/1/stats").respond(json={})
        router.get("/2/stats").respond(content=body)
        targets = [CacheCredentials(f"cache{i}", "pw", cache_id=i) for i in (1, 2)]
        answered = await code["tagged_check"](targets, limit=len(body) - 1)
        sent = [call.request.headers.get("x-team") for call in router.calls]
    assert sent == ["payments", "payments"]
    assert answered == ["cache1"]
    assert capsys.readouterr().out.splitlines() == [f"cache2: answer over {len(body) - 1:,} bytes"]


async def test_poll_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """poll prints each cache's hit rate once it has two snapshots."""
    # The fake's server clock runs 60 s per call, far faster than the 0.2 s
    # rounds; watch()'s clock-step check would rightly call that a jump.
    monkeypatch.setattr("memcachier_async._insight.CLOCK_TOLERANCE", 1e9)
    code = insight_examples()
    template = sample("insight_idle_before.json")["idle.example.com:11211"]
    calls: dict[str, int] = {}

    def stats(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] = n = calls.get(request.url.path, 0) + 1
        server = template | {
            "cmd_get": 10 * n,
            "get_hits": 9 * n,
            "get_misses": n,
            "time": 1_500_000_000 + 60 * n,
        }
        return httpx.Response(200, json={"s1:11211": server})

    with respx.mock(base_url=BASE) as router:
        router.get(path__regex=r"/\d+/stats").mock(side_effect=stats)
        targets = [CacheCredentials(f"cache{i}", "pw", cache_id=i) for i in (1, 2)]
        await code["poll"](targets, interval=0.2, rounds=3)
    lines = capsys.readouterr().out.splitlines()
    # From the second snapshot of a cache on (round 1, unless its first call
    # was slower than a round): 9 hits in 10 gets.
    assert {line.split(" ", 2)[2] for line in lines} == {
        "cache1: hit rate 0.9",
        "cache2: hit rate 0.9",
    }
    # Never round 0 (a baseline only); on a loaded machine a slow round can
    # make the numbers skip (round 3 instead of 2), so only that is pinned.
    assert lines
    assert all(line.startswith("round ") and not line.startswith("round 0 ") for line in lines)


def filling_emulator() -> Emulator:
    """Two caches under fill traffic, with ten minutes of history: 'tiny' (two 40 kB servers)
    evicts, 'big' (two 64 MiB servers) fills slowly."""
    emulator = Emulator(servers=None, traffic_profile="fill", history_interval=60.0)
    for name, size in (("tiny", 40_000), ("big", 64 * 2**20)):
        cache = emulator.add_cache(
            [SimulatedServer(f"mc{i}.{name}.test:11211", limit_maxbytes=size) for i in (1, 2)]
        )
        cache.add_credential(f"user-{name}", f"pw-{name}", primary=True)
    emulator.backfill(10, ops_per_sample=40)
    return emulator


async def test_capacity_report_example(capsys: pytest.CaptureFixture[str]) -> None:
    """capacity_report, over TCP: a line per server, the one that runs out first, the plan."""
    code = insight_examples()
    emulator = filling_emulator()
    async with (
        emulator,
        emulator.serve() as base_url,
        AsyncAnalytics("user-tiny", "pw-tiny", base_url=base_url) as api,
    ):
        await code["capacity_report"](api)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    for line, server in zip(lines, ("mc1.tiny.test:11211", "mc2.tiny.test:11211"), strict=False):
        assert re.fullmatch(rf"{re.escape(server)}: [\d,]+ of 40,000 bytes, .* evicted", line)
    assert re.fullmatch(r"runs out first: mc\d\.tiny\.test:11211", lines[2])
    assert re.fullmatch(r"a plan of [\d,]+ bytes would have held what it evicted", lines[3])


async def test_runs_out_first_example(capsys: pytest.CaptureFixture[str]) -> None:
    """runs_out_first, over TCP: the evicting cache first, a refused one printed and left out."""
    code = insight_examples()
    emulator = filling_emulator()
    targets = [
        CacheCredentials("user-big", "pw-big"),
        CacheCredentials("user-tiny", "pw-tiny"),
        CacheCredentials("user-big", "wrong"),
    ]
    async with emulator, emulator.serve() as base_url:
        ranked = await code["runs_out_first"](targets, base_url=base_url)
    assert ranked == ["user-tiny", "user-big"]
    assert capsys.readouterr().out.splitlines() == ["user-big: AuthenticationError"]


def test_capacity_worked_example() -> None:
    """The worked example of the insight page, computed: every number it states."""

    def record(server: str, at: int, used: int, items: int, evictions: int) -> HistoryRecord:
        fields = dict.fromkeys(STATS_FIELDS, 0)
        fields.update(bytes=used, curr_items=items, evictions=evictions, limit_maxbytes=1_000_000)
        fields["time"] = 1_700_000_000 + at
        body = {"memcachier_id": "11", "server": server, "stats": fields}
        body["timestamp"] = str((1_700_000_000 + at) * 1000)
        return structure(body, HistoryRecord, "history")

    b_evictions = (100, 100, 130, 160)
    records = [record("a", 60 * i, 400_000 + 30_000 * i, 4000 + 300 * i, 0) for i in range(4)]
    records += [record("b", 60 * i, 990_000, 9900, b_evictions[i]) for i in range(4)]
    advice = capacity(records)
    a, b = advice.servers["a"], advice.servers["b"]
    assert a.fill_rate == pytest.approx(500)
    assert a.seconds_until_full == pytest.approx(1020)
    assert a.needed_bytes is None
    assert (b.fill_rate, b.seconds_until_full, b.evictions) == (0.0, 0.0, 60)
    assert b.eviction_rate == pytest.approx(60 / 180)
    assert b.first_eviction == records[6].timestamp
    assert b.needed_bytes == 996_000
    assert advice.fullest == b
    assert advice.evicting
    assert advice.suggested_limit_bytes == 1_992_000
    page = (Path(__file__).parent.parent / "docs" / "insight.md").read_text()
    for stated in ("500 B/s", "1,020 s", "996,000", "1,992,000", "60 / 180"):
        assert stated in page
