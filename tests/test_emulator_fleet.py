"""``memcachier-analytics emulator --caches N``: a fleet on one port, and the config to read it.

The command runs in a subprocess, as a user starts it; what it prints or
writes is then used as the docs say: the TOML by ``watch --config``, the
``export MEMCACHIER_*=`` lines by the SDK's ``from_env()`` and the commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from click.testing import CliRunner
from docs_examples import named_blocks
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async import AsyncAnalytics
from memcachier_async._cli import main
from memcachier_async._cli.common import load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib


class Served:
    """The emulator command, running until the test ends; ``lines`` is what it printed."""

    def __init__(self, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memcachier_async._cli", "emulator", "--port", "0", *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert self.process.stdout is not None
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if "Ctrl-C stops it" in line:
                break
        assert "Ctrl-C stops it" in (self.lines or [""])[-1], self.lines

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=20)
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            stream.close()
        return code

    def exports(self) -> dict[str, str]:
        """The variables of the ``export NAME=value`` lines, read as a shell reads them."""
        found = {}
        for line in self.lines:
            if line.startswith("export "):
                name, _, value = shlex.split(line)[1].partition("=")
                found[name] = value
        return found

    def printed_config(self) -> str:
        start = self.lines.index("# The caches, for --config (watch, export, ...):") + 1
        end = self.lines.index("# The first cache, for the SDK (from_env) and the commands:")
        return "\n".join(self.lines[start:end])


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*options: str) -> Served:
        served = Served(*options)
        started.append(served)
        return served

    yield start
    for served in started:
        assert served.stop() == 0  # SIGTERM: a clean stop


def test_write_config_serves_every_cache_to_watch(
    serve: Callable[..., Served], tmp_path: Path, clean_cli_environment: None
) -> None:
    """--caches 3 --write-config: a private TOML file naming three caches, which
    watch --config reads round after round, every cache answering."""
    config = tmp_path / "caches.toml"
    served = serve("--caches", "3", "--write-config", str(config), "--traffic", "500")
    assert f"config of 3 caches written to {config}" in served.lines
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds passwords
    targets = load_config(config)
    assert [t.name for t in targets] == ["cache-1561", "cache-1562", "cache-1563"]
    assert len({t.username for t in targets}) == 3
    result = CliRunner().invoke(
        main, ["watch", "--config", str(config), "--rounds", "2", "--interval", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.splitlines()[-1])
    assert [c["cache"] for c in last["caches"]] == [t.name for t in targets]
    assert all(c["ok"] and c["servers"] == 3 for c in last["caches"])
    assert all(c["request_rate"] is not None for c in last["caches"])


def test_printed_config_and_export_lines_work_as_pasted(
    serve: Callable[..., Served], tmp_path: Path, clean_cli_environment: None
) -> None:
    """Without --write-config the TOML is printed; pasted into a file it is a config; the
    export lines point from_env() and the commands at the first cache."""
    served = serve("--caches", "2", "--servers", "2")
    config = tmp_path / "pasted.toml"
    config.write_text(served.printed_config())
    assert [t.name for t in load_config(config)] == ["cache-1561", "cache-1562"]
    env = served.exports()
    assert set(env) == {"MEMCACHIER_BASE_URL", "MEMCACHIER_USERNAME", "MEMCACHIER_PASSWORD"}
    stats = CliRunner().invoke(main, ["stats", "--json"], env=env)
    assert stats.exit_code == 0, stats.output
    assert len(json.loads(stats.stdout)["servers"]) == 2

    async def login() -> int:
        os.environ.update(env)
        try:
            async with AsyncAnalytics.from_env() as api:
                return await api.login()
        finally:
            for name in env:
                del os.environ[name]

    assert anyio.run(login) == 1561


def test_config_and_exports_keep_odd_characters(
    serve: Callable[..., Served], tmp_path: Path, clean_cli_environment: None
) -> None:
    """A password with quotes, backslashes, spaces and $ survives the TOML and the shell line."""
    password = "pa\"ss\\word $HOME `x` 'q'"
    served = serve("--username", "odd-user", "--password", password)
    config = tmp_path / "odd.toml"
    config.write_text(served.printed_config())
    (target,) = load_config(config)
    assert (target.username, target.password) == ("odd-user", password)
    assert tomllib.loads(served.printed_config())["cache"][0]["password"] == password
    assert served.exports()["MEMCACHIER_PASSWORD"] == password


def test_caches_with_memcached_is_a_usage_error() -> None:
    """--caches N > 1 needs simulated servers: with --memcached it is refused, naming --caches."""
    result = CliRunner().invoke(
        main, ["emulator", "--caches", "2", "--memcached", "127.0.0.1:11211"]
    )
    assert result.exit_code == 2
    assert "--caches" in result.output


def page_lines(page: str, name: str) -> list[list[str]]:
    """The command lines of a named block, split as a shell would (``&`` dropped)."""
    (block,) = named_blocks(page, name)
    return [shlex.split(line.removesuffix("&")) for line in block.strip().splitlines()]


def on_free_port(argv: list[str], option: str) -> list[str]:
    """``argv`` with the port the page gives to ``option`` replaced by any free one: the
    test must not depend on 8080 or 9151 being free on a shared machine."""
    index = argv.index(option) + 1
    argv = list(argv)
    argv[index] = "0" if option == "--port" else argv[index].rsplit(":", 1)[0] + ":0"
    return argv


def test_cli_page_fleet_example(
    serve: Callable[..., Served],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_cli_environment: None,
) -> None:
    """The command line page's fleet block: the emulator writes fleet.toml, watch reads its
    three caches, stats one of them by name."""
    emulator, watch, stats = page_lines("cli.md", "emulator-fleet")
    monkeypatch.chdir(tmp_path)
    serve(*on_free_port(emulator, "--port")[2:])
    watched = CliRunner().invoke(main, [*watch[1:], "--json"])
    assert watched.exit_code == 0, watched.output
    last = json.loads(watched.stdout.splitlines()[-1])
    assert [c["cache"] for c in last["caches"]] == ["cache-1561", "cache-1562", "cache-1563"]
    assert all(c["ok"] for c in last["caches"])
    shown = CliRunner().invoke(main, stats[1:], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("Cache cache-1562 (id 1562): 3 servers")


def test_exporter_page_fleet_example(
    serve: Callable[..., Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter page's fleet block: export serves memcachier_up 1 for each of the three
    caches the emulator wrote into caches.toml; Ctrl-C stops it with 130."""
    emulator, export = page_lines("exporter.md", "export-fleet")
    monkeypatch.chdir(tmp_path)
    serve(*on_free_port(emulator, "--port")[2:])
    with subprocess.Popen(
        [sys.executable, "-m", "memcachier_async._cli", *on_free_port(export, "--listen")[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None
            banner = process.stderr.readline()
            found = re.search(r"on (http://127\.0\.0\.1:\d+/metrics)", banner)
            assert found, banner
            up = scrape_up(found[1])
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=15)
    assert up == {"cache-1561": 1.0, "cache-1562": 1.0, "cache-1563": 1.0}
    assert code == 130


def scrape_up(url: str) -> dict[str, float]:
    """memcachier_up per cache, once every cache is up (15 s at most)."""
    deadline = time.monotonic() + 15
    while True:
        up = {
            sample.labels["cache"]: sample.value
            for family in text_string_to_metric_families(httpx.get(url).text)
            if family.name == "memcachier_up"
            for sample in family.samples
        }
        if len(up) == 3 and all(v == 1 for v in up.values()):
            return up
        assert time.monotonic() < deadline, up
        time.sleep(0.1)


def test_readme_example_against_the_emulator_command(
    serve: Callable[..., Served], clean_cli_environment: None
) -> None:
    """The README's way to try its example: start the emulator command, paste its export
    lines, run the example (in a fresh process, as tests/test_docs_tcp.py runs it)."""
    served = serve("--traffic", "300")
    runner = Path(__file__).parent / "_run_page.py"
    done = subprocess.run(
        [sys.executable, str(runner), "README.md"],
        input="import asyncio\nasyncio.run(main())\n",
        env={**os.environ, **served.exports()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.splitlines()[-1].removeprefix("requests/s: ")) > 0


# --- in process: what the command prints and writes ------------------------------------


def test_the_command_in_process_writes_its_config_and_stops_on_sigterm(
    tmp_path: Path, clean_cli_environment: None
) -> None:
    """The emulator command run by CliRunner: --caches 2 --write-config, then SIGTERM (sent
    once the file exists, so the command is listening for it) ends it with exit code 0."""
    import threading

    config = tmp_path / "fleet.toml"

    def stop_when_written() -> None:
        deadline = time.monotonic() + 30
        while not config.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if config.exists():
            os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_when_written)
    stopper.start()
    try:
        result = CliRunner().invoke(
            main,
            ["emulator", "--port", "0", "--caches", "2", "--write-config", str(config)],
        )
    finally:
        stopper.join()
    assert result.exit_code == 0, result.output
    assert "config of 2 caches written to" in result.stdout
    assert "SIGTERM: stopping" in result.stdout
    assert [t.name for t in load_config(config)] == ["cache-1561", "cache-1562"]


def test_printed_output_of_a_large_fleet_lists_five_and_configures_all() -> None:
    """Seven caches: five listed with their credentials, "... and 2 more caches", and a
    config of all seven."""
    import io

    from rich.console import Console

    from memcachier_async._cli import demo
    from memcachier_async.testing import Emulator

    emulator = Emulator(servers=1)
    for _ in range(6):
        emulator.add_cache(1).add_credential(primary=True)
    out = io.StringIO()
    demo._print_emulator(Console(file=out, width=200), emulator, "http://127.0.0.1:1/api/v1", None)
    text = out.getvalue()
    assert "... and 2 more caches" in text
    assert text.count("primary: username") == 5
    config = tomllib.loads(
        text.split("# The caches, for --config (watch, export, ...):\n")[1].split("\n# ")[0]
    )
    assert [c["name"] for c in config["cache"]] == [f"cache-{1561 + n}" for n in range(7)]


def test_a_config_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    """--write-config into a missing directory: click's one-line file error, no traceback."""
    import click

    from memcachier_async._cli import demo

    target = tmp_path / "nope" / "caches.toml"
    with pytest.raises(click.FileError) as refused:
        demo._write_private(target, "x = 1\n")
    assert refused.value.format_message() == (
        f"Could not open file {str(target)!r}: No such file or directory"
    )


def test_asking_first_names_the_one_cache_or_refuses_many(tmp_path: Path) -> None:
    """flush and delete ask about the cache before connecting: its name, or (with a config of
    several and no --cache) the usage error of exit code 2."""
    from memcachier_async._cli.clients import one_cache_name
    from memcachier_async._cli.common import CliError, Selection

    assert one_cache_name(Selection(emulator=True)) == "web"
    assert one_cache_name(Selection(emulator=True, caches=("sessions",))) == "sessions"
    config = tmp_path / "two.toml"
    config.write_text(
        '[[cache]]\nname = "a"\nusername = "u1"\npassword = "p"\n'
        '[[cache]]\nname = "b"\nusername = "u2"\npassword = "p"\n'
    )
    assert one_cache_name(Selection(config=config, caches=("b",))) == "b"
    with pytest.raises(CliError, match="works on one cache") as refused:
        one_cache_name(Selection(config=config))
    assert refused.value.exit_code == 2
