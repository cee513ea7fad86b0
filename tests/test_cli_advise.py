"""``memcachier-analytics advise``, and the emulator's ``fill`` traffic it is shown with.

The command runs against the emulator over TCP on its real clock: served by
``memcachier-analytics emulator --traffic fill`` in its own process for one
cache, and by an in-process emulator (fill traffic on caches of different
sizes) for a fleet. Tables are read at 80 columns, as in a terminal.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result
from rich.console import Console

from memcachier_async import AsyncAnalytics, HistoryRecord, capacity
from memcachier_async._cli import main
from memcachier_async._cli.advise import _short_names, fmt_duration, one_cache
from memcachier_async._emulator._sources import FillTraffic
from memcachier_async.testing import Emulator, SimulatedServer

pytestmark = pytest.mark.usefixtures("clean_cli_environment")

WIDTH = 80


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(WIDTH)})


def assert_fits(output: str) -> None:
    too_wide = [line for line in output.splitlines() if len(line) > WIDTH]
    assert too_wide == []


# --- the fill profile ------------------------------------------------------------------


def test_fill_traffic_grows_memory_steadily_until_it_evicts() -> None:
    """Each run of new keys adds the same bytes; once the server is full, sets evict."""
    server = SimulatedServer("a.test:11211", limit_maxbytes=100_000)
    traffic = FillTraffic([server], value_size=950)
    used = []
    for _ in range(5):
        traffic.run(10)
        used.append(server.stats(0)["bytes"])
    steps = {b - a for a, b in itertools.pairwise(used)}
    assert len(steps) == 1
    assert steps.pop() > 9_000
    assert server.stats(0)["evictions"] == 0
    traffic.run(100)
    stats = server.stats(0)
    assert stats["evictions"] > 0
    assert stats["bytes"] <= 100_000


def test_the_emulator_refuses_an_unknown_traffic_profile() -> None:
    """traffic_profile is checked when given, and the error names it."""
    with pytest.raises(ValueError, match="traffic_profile"):
        Emulator(traffic_profile="burst")


@pytest.mark.parametrize("value", ["nope", "fill:x", "-5", "fill:-1", "inf"])
def test_the_emulator_command_refuses_a_bad_traffic(value: str) -> None:
    """--traffic is a rate, fill or fill:RATE; anything else is a usage error naming it."""
    result = run("emulator", "--traffic", value)
    assert result.exit_code == 2
    assert "--traffic" in result.output
    assert "Traceback" not in result.output


def test_durations_read_as_people_write_them() -> None:
    """Time until full: a dash when not filling, "full now", then the two largest units."""
    assert [
        fmt_duration(s) for s in (None, 0.0, 42.4, 930, 3 * 3600 + 1260, 2 * 86400 + 4 * 3600)
    ] == [
        "–",
        "full now",
        "42s",
        "15m 30s",
        "3h 21m",
        "2d 4h",
    ]
    assert fmt_duration(400 * 86400) == "> 1 year"


# --- one cache, against `emulator --traffic fill` ---------------------------------------


@pytest.fixture
def filling_emulator(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """``memcachier-analytics emulator --traffic fill:3000``, sampling twice a second."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memcachier_async._cli",
            "emulator",
            "--port",
            "0",
            "--traffic",
            "fill:3000",
            "--history-interval",
            "0.25",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    text = "".join(lines)
    base_url = re.search(r"base URL: (\S+)", text)
    credential = re.search(r"primary: username (\S+) password (\S+)", text)
    try:
        assert base_url is not None, text
        assert credential is not None, text
        yield base_url[1], credential[1], credential[2]
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        assert process.stderr is not None
        process.stderr.close()


def wait_for_samples(base_url: str, username: str, password: str, rounds: int) -> None:
    """Until every server has ``rounds`` samples of distinct clock seconds in the history.

    The emulator samples every 0.25 s but a server's clock counts whole
    seconds, and capacity() reads samples of one clock second as one.
    """

    async def count() -> int:
        async with AsyncAnalytics(username, password, base_url=base_url) as api:
            records = await api.history()
        clocks: dict[str, set[object]] = {}
        for record in records:
            clocks.setdefault(record.server, set()).add(record.stats.time)
        return min((len(c) for c in clocks.values()), default=0)

    deadline = time.monotonic() + 30
    while anyio.run(count) < rounds:
        assert time.monotonic() < deadline, "the emulator stopped sampling"
        time.sleep(0.25)


def test_advise_one_cache_while_it_fills(filling_emulator: tuple[str, str, str]) -> None:
    """A row per server with a positive fill rate and a time until full, the fullest
    server's chart with its projection, and the advice: in 80 columns, exit 0."""
    base_url, username, password = filling_emulator
    wait_for_samples(base_url, username, password, 4)
    result = run("advise", "--base-url", base_url, "-u", username, "-p", password)
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    rows = [line for line in result.output.splitlines() if re.match(r"\s*mc\d\s", line)]
    assert len(rows) == 3
    assert all(re.search(r"\+[\d.]+ (KiB|MiB)/s", row) for row in rows)
    assert "(….c1561.memcachier.test:11211)" in result.output
    assert re.search(r"the limit in \d+", result.output)
    assert re.search(r"fills first: full in \d+", result.output)
    assert "No evictions in the window." in result.output
    chart = next(
        line.strip()
        for line in result.output.splitlines()
        if line.strip() and set(line.strip()) <= set("▁▂▃▄▅▆▇█")
    )
    assert len(chart) >= 40


def test_advise_json_for_one_cache(filling_emulator: tuple[str, str, str]) -> None:
    """--json: the capacity of the cache, every server filling, as to_dict writes it."""
    base_url, username, password = filling_emulator
    wait_for_samples(base_url, username, password, 3)
    result = run("advise", "--base-url", base_url, "-u", username, "-p", password, "--json")
    assert result.exit_code == 0, result.output
    (cache,) = json.loads(result.output)["caches"]
    assert cache["ok"] is True
    assert cache["error"] is None
    servers = cache["capacity"]["servers"]
    assert len(servers) == 3
    assert all(s["fill_rate"] > 0 and s["seconds_until_full"] > 0 for s in servers.values())
    assert cache["capacity"]["evicting"] is False


# --- a fleet ---------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Path]:
    """Three caches under fill traffic: 'tiny' (evicting), 'small' (filling fast), 'big'
    (filling slowly), and a fourth entry whose password is wrong."""
    emulator = Emulator(servers=None, traffic_profile="fill", history_interval=60.0)
    sizes = {"big": 64 * 2**20, "small": 2 * 2**20, "tiny": 40_000}
    caches = {}
    for name, size in sizes.items():
        cache = emulator.add_cache(
            [SimulatedServer(f"mc{i}.{name}.test:11211", limit_maxbytes=size) for i in (1, 2)]
        )
        cache.add_credential(f"user-{name}", f"pw-{name}", primary=True)
        caches[name] = cache
    emulator.backfill(10, ops_per_sample=40)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(emulator.serve()) as base_url,
    ):
        entries = [
            f"[[cache]]\nname = '{name}'\nusername = 'user-{name}'\npassword = 'pw-{name}'\n"
            for name in ("big", "tiny", "small")
        ]
        entries.append("[[cache]]\nname = 'wrong'\nusername = 'user-big'\npassword = 'nope'\n")
        path = tmp_path / "fleet.toml"
        path.write_text(f"base_url = '{base_url}'\n" + "".join(entries), encoding="utf-8")
        yield path
    emulator.close()


def test_advise_a_fleet_sorts_by_urgency(fleet: Path) -> None:
    """One row per cache: evicting first, then by time until full; a failing cache is its
    own row and a line under the table, and the command still exits 0."""
    result = run("advise", "--config", str(fleet))
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    names = [
        match[1]
        for line in result.output.splitlines()
        if (match := re.match(r"\s*(big|small|tiny|wrong)\s", line))
    ]
    assert names == ["tiny", "small", "big", "wrong"]
    tiny = next(line for line in result.output.splitlines() if line.strip().startswith("tiny"))
    assert "full now" in tiny
    assert "yes" in tiny
    assert re.search(r"^wrong: 401 ", result.output, re.M)


def test_advise_a_fleet_as_json(fleet: Path) -> None:
    """--json: the caches in the table's order, the failing one with its error."""
    result = run("advise", "--config", str(fleet), "--json")
    assert result.exit_code == 0, result.output
    caches = json.loads(result.output)["caches"]
    assert [c["cache"] for c in caches] == ["tiny", "small", "big", "wrong"]
    tiny, small, big, wrong = caches
    assert tiny["capacity"]["evicting"] is True
    assert tiny["capacity"]["suggested_limit_bytes"] > 2 * 40_000
    assert 0 < small["capacity"]["seconds_until_full"] < big["capacity"]["seconds_until_full"]
    assert wrong["ok"] is False
    assert wrong["capacity"] is None
    assert "401" in wrong["error"]


def test_advise_fails_as_the_other_commands_when_no_cache_answers(fleet: Path) -> None:
    """Only the failing cache chosen: one Error line, exit 3 (credentials refused)."""
    result = run("advise", "--config", str(fleet), "--cache", "wrong")
    assert result.exit_code == 3
    assert result.output.count("Error: ") == 1
    assert "nope" not in result.output
    assert "Traceback" not in result.output
    both = run("advise", "--config", str(fleet), "--cache", "wrong", "--cache", "wrong")
    assert both.exit_code == 3


def rendered(records: list[HistoryRecord]) -> str:
    console = Console(width=WIDTH, record=True, file=io.StringIO())
    console.print(one_cache("c", records, capacity(records), console.width))
    return console.export_text()


def history_of(emulator: Emulator) -> list[HistoryRecord]:
    async def read() -> list[HistoryRecord]:
        async with emulator.client() as api:
            return await api.history()

    return anyio.run(read)


def test_one_cache_without_history_or_growth_says_so() -> None:
    """No records: nothing to advise; a flat single server: its full name, not filling."""
    assert "No history yet: nothing to advise." in rendered([])
    idle = Emulator(servers=1, history_interval=60.0)
    idle.backfill(3, ops_per_sample=0)
    text = rendered(history_of(idle))
    assert "Cache c: 1 server (….c1561.memcachier.test:11211)" in text
    assert re.search(r"^ mc1 \*\s+0 B\s+64\.0 MiB\s+0\.0%\s+0 B/s\s+–\s+0\s+– $", text, re.M)
    assert "no server is filling" in text
    assert "0 B/s" in text
    assert "No evictions in the window." in text
    assert_fits(text)


def test_short_names_keep_names_without_a_shared_domain() -> None:
    """Servers sharing no dotted suffix keep their whole names, and no suffix is shown."""
    assert _short_names(["a:1", "b:1"]) == ({"a:1": "a:1", "b:1": "b:1"}, "")
    assert _short_names(["a:1"]) == ({"a:1": "a:1"}, "")
    assert _short_names([]) == ({}, "")
    assert _short_names(["mc1.x.test:1", "mc2.x.test:1"]) == (
        {"mc1.x.test:1": "mc1", "mc2.x.test:1": "mc2"},
        ".x.test:1",
    )
