"""One cache's failure is that cache's result, never the fleet's.

Whatever one cache sends — values out of the wire's range, the wrong
types, extreme but valid numbers — and whatever breaks while its snapshot
is processed, ``fan_out``, ``watch``, the exporter and the CLI keep
reporting every other cache, round after round.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async import (
    AsyncAnalytics,
    CacheCredentials,
    DecodeError,
    PollResult,
    RetryPolicy,
    fan_out,
    watch,
)
from memcachier_async import _insight as insight_module
from memcachier_async._cli import main
from memcachier_async._cli.exporter import Exporter
from memcachier_async.testing import STATS_FIELDS, Emulator, FaultPlan, SimulatedServer

TOP = 2**64 - 1


class FixedServer:
    """A stats source that answers with given values (valid or not), counters moving."""

    blocking = False

    def __init__(self, name: str, **fields: Any) -> None:
        self._name = name
        self._fields = fields
        self._calls = 0

    @property
    def name(self) -> str:
        return self._name

    def stats(self, now: float) -> dict[str, Any]:
        self._calls += 1
        base: dict[str, Any] = dict.fromkeys(STATS_FIELDS, self._calls)
        base.update(limit_maxbytes=1 << 26, bytes=1 << 20, time=int(now))
        base.update(self._fields)
        return base

    def flush(self) -> None:
        """Nothing to flush."""


# Five caches whose values are outside what the wire allows...
BAD: dict[str, dict[str, Any]] = {
    "negative": {"get_hits": -1},
    "too-big": {"cmd_get": 2**64},
    "huge": {"bytes": 10**400},
    "float": {"evictions": 1.5},
    "text": {"curr_items": "many"},
}
# ...and five with extreme values that are valid, and must be reported.
EXTREME: dict[str, dict[str, Any]] = {
    "top-bytes": {"bytes": TOP, "limit_maxbytes": 1},
    "top-limit": {"limit_maxbytes": TOP},
    "no-limit": {"limit_maxbytes": 0, "bytes": TOP},
    "top-counter": {"total_items": TOP - 1000},
    "zero": dict.fromkeys(("bytes", "limit_maxbytes", "curr_connections"), 0),
}


def fleet(healthy: int = 90) -> tuple[Emulator, list[tuple[str, CacheCredentials]]]:
    """An emulator of ``healthy`` simulated caches plus the BAD and EXTREME ones."""
    emulator = Emulator(servers=None)
    named: list[tuple[str, CacheCredentials]] = []
    sources: list[tuple[str, Any]] = [
        (f"ok-{i}", SimulatedServer(f"mc.ok{i}.test:11211")) for i in range(healthy)
    ]
    sources += [(name, FixedServer(f"mc.{name}.test:11211", **f)) for name, f in EXTREME.items()]
    sources += [(name, FixedServer(f"mc.{name}.test:11211", **f)) for name, f in BAD.items()]
    for name, source in sources:
        cache = emulator.add_cache([source])
        credential = cache.add_credential(primary=True)
        target = CacheCredentials(
            credential.sasl_username, credential.sasl_password, cache.cache_id
        )
        named.append((name, target))
    return emulator, named


@pytest.mark.anyio
async def test_watch_over_100_caches_keeps_95_reporting_every_round() -> None:
    """5 of 100 caches send impossible values: the 95 others are ok in each of 3 rounds."""
    emulator, named = fleet()
    names = [name for name, _ in named]
    seen: list[dict[str, str]] = []
    poller = watch(
        [t for _, t in named],
        interval=1.0,
        rounds=3,
        transport=emulator.transport(),
        retry=RetryPolicy.disabled(),
    )
    async with poller:
        async for done in poller:
            seen.append({names[r.index]: r.status for r in done.results})
            for result in done.results:
                if names[result.index] in BAD:
                    assert isinstance(result.error, DecodeError)
                    assert result.error.path is not None
                    assert set(BAD[names[result.index]]) & set(result.error.path.split("."))
                elif done.number > 0:
                    assert result.insight is not None  # extreme values are processed too
    assert len(seen) == 3
    for statuses in seen:
        assert [n for n, s in statuses.items() if s != "ok"] == list(BAD)


@pytest.mark.anyio
async def test_watch_reports_a_failure_in_post_processing_as_that_caches_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception while computing one cache's insight is its result; the round goes on."""
    emulator, named = fleet(healthy=3)
    real_insight = insight_module.insight

    def fragile(previous: Any, current: Any, **options: Any) -> Any:
        if "mc.ok1.test:11211" in current:
            raise OverflowError("boom")
        return real_insight(previous, current, **options)

    monkeypatch.setattr(insight_module, "insight", fragile)
    targets = [t for name, t in named if name not in BAD]
    rounds: list[tuple[PollResult, ...]] = []
    async with watch(targets, 0.5, rounds=5, transport=emulator.transport()) as poller:
        async for done in poller:
            rounds.append(done.results)
    failed = [round_ for round_ in rounds if round_[1].status == "failed"]
    # It fails whenever it has a baseline to compare with, then starts over.
    assert failed
    for round_ in failed:
        assert isinstance(round_[1].error, OverflowError)
        # ...and in that very round, every other cache reports.
        assert [r.status for r in round_ if r.index != 1] == ["ok"] * (len(targets) - 1)
    assert sum(1 for round_ in rounds if round_[1].status == "ok") >= 2


@pytest.mark.anyio
async def test_fan_out_gives_each_bad_cache_its_own_error() -> None:
    """fan_out over the fleet: the bad caches' results hold DecodeError, the rest values."""
    emulator, named = fleet(healthy=20)
    names = [name for name, _ in named]
    async with fan_out(
        [t for _, t in named], AsyncAnalytics.stats, transport=emulator.transport()
    ) as results:
        outcome = {names[r.index]: r async for r in results}
    assert {n for n, r in outcome.items() if not r.ok} == set(BAD)
    assert all(isinstance(outcome[n].error, DecodeError) for n in BAD)
    assert outcome["top-bytes"].unwrap().memory().used == TOP


@pytest.mark.anyio
async def test_exporter_serves_the_healthy_caches_up_and_the_bad_ones_down() -> None:
    """The exporter over the 100-cache fleet: memcachier_up 1 for 95 caches, 0 for the 5 bad."""
    emulator, named = fleet()
    clients: list[tuple[str, AsyncAnalytics]] = []
    for name, target in named:
        api = AsyncAnalytics(
            target.username,
            target.password,
            cache_id=target.cache_id,
            transport=emulator.transport(),
            retry=RetryPolicy.disabled(),
        )
        clients.append((name, api))
    exporter = Exporter(clients, interval=1.0)
    try:
        await exporter.run(rounds=3)
    finally:
        for _, api in clients:
            await api.aclose()
    text = generate_latest(exporter.registry).decode()
    up = {
        s.labels["cache"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "memcachier_up"
        for s in family.samples
    }
    assert {n for n, v in up.items() if v == 0} == set(BAD)
    assert sum(up.values()) == 95
    assert 'memcached_current_bytes{cache="top-bytes",server="mc.top-bytes.test:11211"}' in text
    polls = {
        s.labels["cache"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "memcachier_polls"
        for s in family.samples
    }
    assert polls["ok-0"] + polls["ok-89"] >= 4  # every round, bar one skipped under load


# --- the CLI ---------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[Emulator, str, list[tuple[str, CacheCredentials]]]]:
    """A small hostile fleet served over loopback TCP."""
    emulator, named = fleet(healthy=2)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(emulator.serve()) as base_url,
    ):
        yield emulator, base_url, named
    emulator.close()


def _config(tmp_path: Any, base_url: str, named: list[tuple[str, CacheCredentials]]) -> str:
    lines = [f'base_url = "{base_url}"']
    for name, t in named:
        lines.append(
            f'[[cache]]\nname = "{name}"\nusername = "{t.username}"\n'
            f'password = "{t.password}"\ncache_id = {t.cache_id}'
        )
    path = tmp_path / "caches.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.mark.usefixtures("clean_cli_environment")
def test_cli_watch_shows_every_cache_and_the_bad_ones_as_errors(served: Any, tmp_path: Any) -> None:
    """watch --json over a hostile fleet: the good caches have numbers, the bad ones an error."""
    _, base_url, named = served
    config = _config(tmp_path, base_url, named)
    result = run("watch", "--config", config, "--rounds", "2", "--interval", "1.1", "--json")
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.splitlines()[-1])
    by_name = {c["cache"]: c for c in last["caches"]}
    for name in BAD:
        assert by_name[name]["ok"] is False
        assert "unexpected stats response" in by_name[name]["error"]
    for name in ("ok-0", "ok-1", *EXTREME):
        assert by_name[name]["ok"] is True, by_name[name]
    assert by_name["ok-0"]["request_rate"] is not None
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("clean_cli_environment")
@pytest.mark.parametrize("command", [["stats"], ["stats", "--json"], ["history"]])
@pytest.mark.parametrize("name", list(BAD))
def test_cli_single_cache_on_a_bad_answer_prints_one_error_line(
    served: Any, tmp_path: Any, command: list[str], name: str
) -> None:
    """stats or history of a cache that sends an impossible value: one 'Error:' line, exit 4."""
    _, base_url, named = served
    config = _config(tmp_path, base_url, named)
    result = run(*command, "--config", config, "--cache", name)
    assert result.exit_code == 4, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    # The emulator's history samples the same servers: the same value, the same refusal.
    assert lines[0].startswith(f"Error: unexpected {command[0]} response")
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("clean_cli_environment")
@pytest.mark.parametrize("name", list(EXTREME))
def test_cli_stats_shows_extreme_values(served: Any, tmp_path: Any, name: str) -> None:
    """stats of a cache with 2**64 - 1 values prints a table with sane percentages."""
    _, base_url, named = served
    result = run("stats", "--config", _config(tmp_path, base_url, named), "--cache", name)
    assert result.exit_code == 0, result.output
    assert "e+" not in result.stdout
    assert "00000000000000%" not in result.stdout


@pytest.mark.usefixtures("clean_cli_environment")
def test_cli_unexpected_failure_is_one_line_with_traceback_only_under_v(
    served: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug anywhere under a command: one 'Error:' line and exit code 6; -v adds the traceback."""
    from memcachier_async._cli import render

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(render, "stats_table", broken)
    _, base_url, named = served
    config = _config(tmp_path, base_url, named)
    quiet = run("stats", "--config", config, "--cache", "ok-0")
    assert quiet.exit_code == 6
    assert quiet.stderr.strip().splitlines() == [
        "Error: unexpected failure (RuntimeError: a bug); run with -v for details"
    ]
    loud = run("-v", "stats", "--config", config, "--cache", "ok-0")
    assert loud.exit_code == 6
    assert "Traceback" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1].startswith("Error: unexpected failure")


@pytest.mark.usefixtures("clean_cli_environment")
def test_cli_retry_notices_only_with_v(tmp_path: Any) -> None:
    """Retries of a 503 stay off stderr; -v shows them."""
    emulator = Emulator(faults=FaultPlan(seed=1).script("stats", "unavailable"))
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(emulator.serve()) as base_url,
    ):
        options = ["--base-url", base_url, "-u", emulator.username, "-p", emulator.password]
        quiet = run("stats", *options, "--json")
        emulator.faults = FaultPlan(seed=1).script("stats", "unavailable")
        loud = run("-v", "stats", *options, "--json")
    emulator.close()
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert loud.exit_code == 0, loud.output
    assert "retry" in loud.stderr.lower()
