"""memcachier-analytics stats, history, flush, credentials, watch and export.

Each command runs through click's CliRunner twice over: against
``--emulator`` (an emulator built inside the command) and against an
emulator served over loopback TCP, named with ``--base-url`` and
credentials, as a real account would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result

from memcachier_async import history_series
from memcachier_async._cli import emulated as cli_emulator
from memcachier_async._cli import main
from memcachier_async._convert import structure
from memcachier_async._models import HistoryRecord
from memcachier_async.testing import Emulator, SimulatedServer

pytestmark = pytest.mark.usefixtures("clean_cli_environment")


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env)


def ok_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Emulator]:
    """The emulators ``--emulator`` builds, kept for assertions on their state."""
    made: list[Emulator] = []
    original = cli_emulator.build_emulator

    def build(**kwargs: Any) -> Emulator:
        emulator = original(**kwargs)
        made.append(emulator)
        return emulator

    monkeypatch.setattr(cli_emulator, "build_emulator", build)
    return made


@pytest.fixture
def tcp() -> Iterator[tuple[Emulator, list[str]]]:
    """An emulator served over loopback TCP, and the options that reach its cache."""
    emulator = Emulator(history_interval=60.0)
    emulator.backfill(5, ops_per_sample=400)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(emulator.serve()) as base_url,
    ):
        options = ["--base-url", base_url, "-u", emulator.username, "-p", emulator.password]
        yield emulator, options
    emulator.close()


# --- stats -----------------------------------------------------------------------


def test_stats_table_against_the_emulator() -> None:
    """stats prints each server, the total row and marks the fullest server."""
    result = run("stats", "--emulator")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for number in (1, 2, 3):
        assert f"mc{number}.web.memcachier.test:11211" in out
    assert "Total" in out
    assert "▲ fullest" in out
    assert "fullest server mc1.web.memcachier.test:11211" in out


def test_stats_json_totals_and_memory(built: list[Emulator]) -> None:
    """stats --json has every server, their sum and the fullest server by usage."""
    data = ok_json("stats", "--emulator")
    servers = data["servers"]
    assert len(servers) == 3
    assert data["cache"] == "web"
    assert data["cache_id"] == built[0].caches[0].cache_id
    for field in ("get_hits", "cmd_set", "bytes", "evictions"):
        assert data["total"][field] == sum(s[field] for s in servers.values())
    usage = {name: s["bytes"] / s["limit_maxbytes"] for name, s in servers.items()}
    assert data["memory"]["fullest"]["server"] == max(usage, key=usage.__getitem__)
    assert data["rates"] is None


def test_stats_interval_gives_rates_over_the_interval() -> None:
    """stats --interval reads twice and reports rates and hit rates over that time."""
    data = ok_json("stats", "--emulator", "--interval", "1")
    rates = data["rates"]
    assert rates["seconds"] >= 1
    total = rates["total"]
    assert total["request_rate"] > 0  # the emulator's traffic runs meanwhile
    assert 0 <= total["hit_rate"] <= 1
    assert set(rates["servers"]) == set(data["servers"])


def test_stats_over_tcp_matches_the_emulator(tcp: tuple[Emulator, list[str]]) -> None:
    """stats over TCP shows the emulator's counters, server by server."""
    emulator, options = tcp
    data = ok_json("stats", *options)
    for server in emulator.cache.servers:
        truth = server.stats(0)
        got = data["servers"][server.name]
        assert got["get_hits"] == truth["get_hits"]
        assert got["cmd_set"] == truth["cmd_set"]


# --- history ---------------------------------------------------------------------


def test_history_sparklines() -> None:
    """history draws a sparkline per metric with its min, max and latest."""
    result = run("history", "--emulator")
    assert result.exit_code == 0, result.output
    for label in ("Hit rate", "Requests/s", "Memory", "Evictions/s"):
        assert label in result.stdout
    assert any(bar in result.stdout for bar in "▁▂▃▄▅▆▇█")


def test_history_json_is_the_series_of_the_cache(tcp: tuple[Emulator, list[str]]) -> None:
    """history --json has one point per interval, equal to history_series() of the records."""
    emulator, options = tcp
    data = ok_json("history", *options)
    records = structure(emulator.cache.history(), list[HistoryRecord], "history")
    expected = history_series(records)
    assert len(data["points"]) == len(expected) == 4
    for point, insight in zip(data["points"], expected, strict=True):
        assert point["hit_rate"] == insight.total.hit_rate
        assert point["request_rate"] == insight.total.request_rate
        assert point["bytes"] == insight.total.bytes


def test_history_without_enough_samples(tcp: tuple[Emulator, list[str]]) -> None:
    """A cache with fewer than two samples says so instead of drawing nothing."""
    emulator, options = tcp
    fresh = emulator.add_cache(2)
    credential = fresh.add_credential()
    options = [*options[:2], "-u", credential.sasl_username, "-p", credential.sasl_password]
    result = run("history", *options)
    assert result.exit_code == 0, result.output
    assert "not enough history yet" in result.stdout


# --- flush -----------------------------------------------------------------------


def flushes(emulator: Emulator) -> list[int]:
    return [server.stats(0)["cmd_flush"] for server in emulator.caches[0].servers]


def test_flush_asks_first_and_stops_on_no(built: list[Emulator]) -> None:
    """Without --yes, flush asks before it connects; answering no exits 1 having opened and
    flushed nothing."""
    result = run("flush", "--emulator", input="n\n")
    assert result.exit_code == 1
    assert "Flush every item of cache web? [y/N]: " in result.stderr
    assert result.stderr.endswith("Nothing done.\n")
    assert "Aborted" not in result.output
    assert built == []  # no emulator (no client) was even made


def test_flush_after_confirmation(built: list[Emulator]) -> None:
    """Answering yes flushes every server of the cache."""
    result = run("flush", "--emulator", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Flushed cache web." in result.stdout
    assert flushes(built[0]) == [1, 1, 1]


def test_flush_yes_over_tcp(tcp: tuple[Emulator, list[str]]) -> None:
    """flush --yes --json over TCP flushes every server and says so."""
    emulator, options = tcp
    assert ok_json("flush", *options, "--yes") == {
        "cache": emulator.username,
        "flushed": True,
        "failed_servers": [],
    }
    assert flushes(emulator) == [1, 1, 1]


def test_partial_flush_names_the_servers_and_exits_4(tcp: tuple[Emulator, list[str]]) -> None:
    """A server that does not answer is reported; the others are flushed; exit code 4."""
    emulator, options = tcp
    down = emulator.cache.servers[1]
    assert isinstance(down, SimulatedServer)
    down.up = False
    result = run("flush", *options, "--yes", "--json", "--retries", "0")
    assert result.exit_code == 4
    assert json.loads(result.stdout) == {
        "cache": emulator.username,
        "flushed": False,
        "failed_servers": [down.name],
    }
    assert down.name in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    down.up = True
    assert flushes(emulator) == [1, 0, 1]


# --- credentials -------------------------------------------------------------------


def test_credentials_list_against_the_emulator() -> None:
    """credentials list shows the demo cache's two credentials and their capabilities."""
    data = ok_json("credentials", "list", "--emulator")
    assert [(c["sasl_username"], c["primary"], c["flush_capability"]) for c in data] == [
        ("4A1B2C", True, True),
        ("5D6E7F", False, False),
    ]
    table = run("credentials", "list", "--emulator").stdout
    assert "4A1B2C" in table
    assert "5D6E7F" in table


def test_credentials_lifecycle_over_tcp(tcp: tuple[Emulator, list[str]]) -> None:
    """create prints the password once; update, promote and delete change the emulator."""
    emulator, options = tcp
    cache = emulator.cache
    created = run("credentials", "create", *options)
    assert created.exit_code == 0, created.output
    new = next(c for c in cache.credentials if not c.primary)
    assert new.sasl_username in created.stdout
    assert new.sasl_password in created.stdout
    assert "never shows it again" in created.stdout

    updated = ok_json("credentials", "update", new.sasl_username, "--no-flush", *options)
    assert updated == {
        "sasl_username": new.sasl_username,
        "flush_capability": False,
        "write_capability": True,
        "api_capability": True,
    }
    assert cache.credential(new.sasl_username).flush_capability is False
    assert cache.credential(new.sasl_username).write_capability is True

    promoted = ok_json("credentials", "promote", new.sasl_username, *options)
    assert promoted["primary"] is True
    assert cache.primary is not None
    assert cache.primary.sasl_username == new.sasl_username

    old = emulator.username if emulator.username != new.sasl_username else None
    assert old is None  # the emulator's primary is now the new credential
    others = [c.sasl_username for c in cache.credentials if not c.primary]
    deleted = run("credentials", "delete", others[0], "--yes", *options)
    assert deleted.exit_code == 0, deleted.output
    assert [c.sasl_username for c in cache.credentials] == [new.sasl_username]


def test_create_json_has_the_password(built: list[Emulator]) -> None:
    """credentials create --json prints the new password, which then logs in."""
    data = ok_json("credentials", "create", "--emulator")
    stored = built[0].caches[0].credential(data["sasl_username"])
    assert data["sasl_password"] == stored.sasl_password
    assert data["id"] is None


def test_update_needs_a_capability_flag() -> None:
    """update without any --write/--flush/--api flag is a usage error (exit 2)."""
    result = run("credentials", "update", "5D6E7F", "--emulator")
    assert result.exit_code == 2
    assert "at least one of" in result.stderr


def test_update_keeps_the_capabilities_not_given(built: list[Emulator]) -> None:
    """--no-write alone changes write only: flush and api keep their values."""
    data = ok_json("credentials", "update", "5D6E7F", "--no-write", "--emulator")
    assert data == {
        "sasl_username": "5D6E7F",
        "flush_capability": False,
        "write_capability": False,
        "api_capability": True,
    }


def test_delete_asks_first(built: list[Emulator]) -> None:
    """delete without --yes asks first; no (or the end of input) deletes nothing and exits 1."""
    for answer in ("n\n", ""):
        result = run("credentials", "delete", "5D6E7F", "--emulator", input=answer)
        assert result.exit_code == 1
        assert "Nothing done." in result.stderr
    assert built == []


def test_unknown_credential_is_an_api_error() -> None:
    """Promoting a username the cache does not have exits 4 with the API's answer."""
    result = run("credentials", "promote", "NOSUCH", "--emulator", "--retries", "0")
    assert result.exit_code == 4
    assert "No credential found." in result.stderr


# --- watch -----------------------------------------------------------------------


def test_watch_json_rounds_over_both_emulated_caches() -> None:
    """watch --json prints one line per round; the second has rates for every cache."""
    result = run("watch", "--emulator", "--rounds", "2", "--interval", "1", "--json")
    assert result.exit_code == 0, result.output
    rounds = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    times = [datetime.fromisoformat(r["time"]) for r in rounds]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert 0.5 < (times[1] - times[0]).total_seconds() < 30  # the 1 s cadence, in UTC
    first, second = rounds
    assert [c["cache"] for c in second["caches"]] == ["web", "sessions"]
    assert all(c["request_rate"] is None for c in first["caches"])  # a baseline only
    for cache in second["caches"]:
        assert cache["ok"] is True
        assert cache["request_rate"] > 0
        assert 0 < cache["memory_usage"] <= 1


def test_watch_table_and_a_failing_cache(tcp: tuple[Emulator, list[str]], tmp_path: Any) -> None:
    """watch over a config file of two caches keeps showing one while the other fails."""
    emulator, options = tcp
    base_url = options[1]
    bad = emulator.add_cache(2)
    bad_credential = bad.add_credential()
    bad.active = False  # every call now answers 404 "No cache found."
    config = tmp_path / "caches.toml"
    config.write_text(
        f'base_url = "{base_url}"\n'
        f'[[cache]]\nname = "main"\nusername = "{emulator.username}"\n'
        f'password = "{emulator.password}"\n'
        f'[[cache]]\nname = "gone"\nusername = "{bad_credential.sasl_username}"\n'
        f'password = "{bad_credential.sasl_password}"\n'
    )
    result = run("watch", "--config", str(config), "--rounds", "1", "--interval", "0.01")
    assert result.exit_code == 0, result.output
    assert "main" in result.stdout
    assert "gone" in result.stdout
    assert "No cache found." in result.stdout
    assert emulator.password not in result.output


def test_watch_exits_4_when_no_cache_answers(tcp: tuple[Emulator, list[str]]) -> None:
    """When every cache failed in the last round, watch ends with exit code 4."""
    emulator, options = tcp
    emulator.cache.active = False
    result = run("watch", *options, "--rounds", "1", "--interval", "0.01", "--retries", "0")
    assert result.exit_code == 4
    assert "no cache answered" in result.stderr


# --- export ----------------------------------------------------------------------


def test_export_serves_then_stops_after_its_rounds() -> None:
    """export --rounds N polls N times, says where it serves (loopback) and exits 0."""
    result = run(
        "export", "--emulator", "--listen", "127.0.0.1:0", "--rounds", "2", "--interval", "0.01"
    )
    assert result.exit_code == 0, result.output
    assert "Serving metrics of 2 cache(s) on http://127.0.0.1:" in result.stderr


def test_export_shard_polls_its_share_of_the_caches() -> None:
    """export --shard I/N polls the caches of its shard only (the emulator's web and sessions split)."""
    from memcachier_async._cli.exporter import shard_of

    counts = []
    for index in (0, 1):
        result = run(
            "export", "--emulator", "--listen", "127.0.0.1:0", "--rounds", "1",
            "--interval", "0.01", "--shard", f"{index}/2",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        expected = sum(shard_of(name, 2) == index for name in ("web", "sessions"))
        assert f"Serving metrics of {expected} cache(s)" in result.stderr
        counts.append(expected)
    assert sum(counts) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "2/2"], "below N"),
        (["--shard", "half"], "expected I/N"),
        (["--mode", "probe", "--shard", "0/2"], "apply to --mode poll"),
        (["--mode", "probe", "--rounds", "1"], "apply to --mode poll"),
        (["--max-concurrent-probes", "0"], "0 is not in the range"),
    ],
)
def test_export_refuses_options_that_do_not_fit(args: list[str], message: str) -> None:
    """A bad --shard, or poll-only options in probe mode: a usage error (2) saying why."""
    result = run("export", "--emulator", "--listen", "127.0.0.1:0", *args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
def test_export_polls_over_tcp_with_either_http_backend(
    tcp: tuple[Emulator, list[str]], backend: str
) -> None:
    """export --http-backend aiohttp|httpx reaches a real server over loopback and polls it."""
    emulator, options = tcp
    result = run(
        "export", *options, "--listen", "127.0.0.1:0", "--rounds", "1", "--interval", "30",
        "--http-backend", backend,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # The round ends when its call has finished (the interval is long): it reached the server.
    assert emulator.calls["stats"] == 1


def test_export_refuses_a_bad_listen_address() -> None:
    """--listen must be HOST:PORT: a usage error otherwise."""
    result = run("export", "--emulator", "--listen", "nowhere")
    assert result.exit_code == 2
    assert "HOST:PORT" in result.stderr


# --- every command -----------------------------------------------------------------

COMMANDS = [
    ["stats"],
    ["history"],
    ["flush"],
    ["credentials"],
    ["credentials", "update"],
    ["watch"],
    ["export"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_examples_and_exit_codes(command: list[str]) -> None:
    """--help of every command shows runnable examples and the exit codes."""
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert "memcachier-analytics" in result.stdout
    assert "Exit codes:" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["history"],
        ["flush", "--yes"],
        ["credentials", "list"],
        ["credentials", "create"],
        ["credentials", "update", "4A1B2C", "--write"],
        ["credentials", "promote", "4A1B2C"],
        ["credentials", "delete", "4A1B2C", "--yes"],
        ["watch", "--rounds", "1", "--interval", "0.01"],
    ],
    ids=" ".join,
)
def test_every_command_prints_json(command: list[str]) -> None:
    """--json gives parseable JSON on stdout for every command (exit 0 or a clean error)."""
    result = run(*command, "--emulator", "--json", "--retries", "0")
    if command[:2] == ["credentials", "delete"]:
        # The emulator refuses to delete the primary credential: a clean error.
        assert result.exit_code == 3
        assert result.stderr.startswith("Error: 403")
        return
    assert result.exit_code == 0, result.output
    for line in result.stdout.splitlines() if command[0] == "watch" else [result.stdout]:
        json.loads(line)


def test_watch_in_a_terminal_draws_a_live_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a terminal, watch refreshes one live table (with a progress bar) instead of printing rounds."""
    from rich.console import Console

    from memcachier_async._cli import watch as watch_module

    consoles: list[Console] = []

    def terminal() -> Console:
        console = Console(force_terminal=True, width=120, highlight=False)
        consoles.append(console)
        return console

    monkeypatch.setattr(watch_module, "make_console", terminal)
    result = run("watch", "--emulator", "--rounds", "2", "--interval", "0.05")
    assert result.exit_code == 0, result.output
    assert consoles[0].is_terminal
    assert "\x1b[" in result.stdout  # cursor and colour control: a live display
    assert "Round 2" in result.stdout
    assert "sessions" in result.stdout
