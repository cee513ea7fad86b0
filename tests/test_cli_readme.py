"""The command line, exporter and FastAPI pages' examples, run as written.

Commands run through click's CliRunner; those that need an account run
against the emulator over loopback TCP, reached with MEMCACHIER_BASE_URL
and the credentials the command line page's caches.toml names.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner
from docs_examples import named_blocks
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async._cli import main
from memcachier_async.testing import Emulator

ROOT = Path(__file__).parent.parent
WEB_PASSWORD = "web-cache-password"


def commands(page: str, name: str) -> list[list[str]]:
    """The ``memcachier-analytics`` lines of the named blocks, split as a shell would."""
    lines = [
        shlex.split(line, comments=True)
        for block in named_blocks(page, name)
        for line in block.splitlines()
    ]
    found = [line for line in lines if line and line[0] == "memcachier-analytics"]
    assert found
    return found


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEMCACHIER_USERNAME", "MEMCACHIER_PASSWORD", "MEMCACHIER_CONFIG", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("argv", commands("cli.md", "emulator-commands"), ids=" ".join)
def test_emulator_examples_run(argv: list[str]) -> None:
    """Every --emulator example of the command line page exits 0 with output."""
    result = CliRunner().invoke(main, argv[1:])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


@pytest.fixture
def account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Emulator, dict[str, str]]]:
    """The page's two caches, served over TCP, with its caches.toml in the working directory."""
    emulator = Emulator(servers=None, history_interval=3600)
    emulator.add_cache(3, cache_id=1561).add_credential("4A1B2C", WEB_PASSWORD, primary=True)
    jobs = emulator.add_cache(2, cache_id=1562)
    jobs.add_credential("9F8E7D", "jobs-cache-password", primary=True)
    emulator.drive_traffic(500)
    (config,) = named_blocks("cli.md", "caches.toml")
    (tmp_path / "caches.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(emulator.serve()) as url,
    ):
        env = {"MEMCACHIER_BASE_URL": url, "WEB_CACHE_PASSWORD": WEB_PASSWORD}
        yield emulator, env
    emulator.close()


def test_config_examples_run(account: tuple[Emulator, dict[str, str]]) -> None:
    """The caches.toml examples work on both caches the file lists."""
    _, env = account
    outputs = []
    for argv in commands("cli.md", "config-commands"):
        result = CliRunner().invoke(main, argv[1:], env=env)
        assert result.exit_code == 0, (argv, result.output)
        outputs.append(result.stdout)
    watch, stats, credentials = outputs
    assert "web" in watch
    assert "jobs" in watch
    assert '"cache": "jobs"' in stats
    assert "4A1B2C" in credentials


def scrape_until_up(url: str, caches: int) -> str:
    deadline = time.monotonic() + 15
    while True:
        text = httpx.get(url).text
        ups = [
            sample
            for family in text_string_to_metric_families(text)
            if family.name == "memcachier_up"
            for sample in family.samples
        ]
        if len(ups) == caches and all(s.value == 1 for s in ups):
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.05)


def test_exporter_example_serves_metrics(account: tuple[Emulator, dict[str, str]]) -> None:
    """The export example serves both caches' metrics; the curl | grep line finds them; Ctrl-C stops it."""
    emulator, env = account
    export_line, curl_line = named_blocks("exporter.md", "export-command")[0].strip().splitlines()
    argv = shlex.split(export_line)
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:9151"  # loopback, as documented
    argv[argv.index("--listen") + 1] = "127.0.0.1:0"  # a free port for the test
    with subprocess.Popen(
        [sys.executable, "-m", "memcachier_async._cli", *argv[1:]],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    ) as process:
        try:
            assert process.stderr is not None
            banner = process.stderr.readline()
            found = re.search(r"on (http://127\.0\.0\.1:\d+/metrics)", banner)
            assert found, banner
            text = scrape_until_up(found.group(1), caches=2)
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=15)
    assert code == 130  # Ctrl-C stops it: the shell's code for it, no error
    pattern = re.search(r"grep -E '(.*)'", curl_line)
    assert pattern is not None
    grepped = [line for line in text.splitlines() if re.search(pattern.group(1), line)]
    assert 'memcachier_up{cache="web"} 1.0' in grepped
    assert 'memcachier_up{cache="jobs"} 1.0' in grepped
    servers = [s.name for c in emulator.caches for s in c.servers]
    assert sum(line.startswith("memcached_current_bytes") for line in grepped) == len(servers)


def test_fastapi_snippet_is_the_example() -> None:
    """The FastAPI page's lifespan snippet is the one examples/fastapi_app.py runs (and its tests test)."""
    (snippet,) = named_blocks("fastapi.md", "lifespan-snippet")
    example = (ROOT / "examples" / "fastapi_app.py").read_text()
    assert textwrap.indent(snippet, "    ") in example


def test_probe_mode_example_serves_sd_and_a_probe(account: tuple[Emulator, dict[str, str]]) -> None:
    """The probe-mode example: /sd lists the config's caches, the probe of web succeeds, as grepped."""
    _, env = account
    block = named_blocks("exporter.md", "probe-commands")[0].strip().splitlines()
    export_line, sd_line, probe_line = block
    argv = shlex.split(export_line)
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:9151"
    argv[argv.index("--listen") + 1] = "127.0.0.1:0"
    with subprocess.Popen(
        [sys.executable, "-m", "memcachier_async._cli", *argv[1:]],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    ) as process:
        try:
            assert process.stderr is not None
            banner = process.stderr.readline()
            found = re.search(r"at (http://127\.0\.0\.1:\d+)/", banner)
            assert found, banner
            root = found.group(1)
            sd = httpx.get(root + shlex.split(sd_line)[-1].removeprefix("http://127.0.0.1:9151"))
            path = shlex.split(probe_line.split("|")[0])[-1].removeprefix("http://127.0.0.1:9151")
            probe = httpx.get(root + path, headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=15)
    assert code == 130
    assert [group["labels"]["cache"] for group in sd.json()] == ["web", "jobs"]
    pattern = re.search(r"grep -E '(.*)'", probe_line)
    assert pattern is not None
    grepped = [line for line in probe.text.splitlines() if re.search(pattern.group(1), line)]
    assert grepped == ["memcachier_probe_success 1.0", 'memcachier_up{cache="web"} 1.0']


def test_shard_example_splits_the_caches(account: tuple[Emulator, dict[str, str]]) -> None:
    """The --shard example: the two replicas poll disjoint sets covering the config's caches."""
    _, env = account
    polled = 0
    for argv in commands("exporter.md", "shard-commands"):
        argv[argv.index("--listen") + 1] = "127.0.0.1:0"
        result = CliRunner().invoke(
            main, [*argv[1:], "--rounds", "1", "--interval", "0.01"], env=env
        )
        assert result.exit_code == 0, result.output
        found = re.search(r"Serving metrics of (\d+) cache", result.stderr)
        assert found, result.stderr
        polled += int(found.group(1))
    assert polled == 2


def headline(text: str) -> tuple[int, int]:
    """(probes per CPU-second, caches per core at 30 s) as a page states them in bold."""
    probes = re.search(r"\*\*([\d,]+) probes per CPU-second\*\*", text)
    caches = re.search(r"\*\*(?:about )?([\d,]+) caches\*\*", text)
    assert probes, "no **N probes per CPU-second**"
    assert caches, "no **N caches**"
    return int(probes.group(1).replace(",", "")), int(caches.group(1).replace(",", ""))


def test_the_capacity_figure_is_the_measured_one() -> None:
    """README and the exporter page quote benchmarks/RESULTS.md's probes per CPU-second and caches per core."""
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    section = results.split("## Exporter: probes per CPU-second", 1)[1]
    measured = headline(section)
    assert measured[1] == round(measured[0] * 30, -2)
    assert headline((ROOT / "README.md").read_text()) == measured
    assert headline((ROOT / "docs" / "exporter.md").read_text()) == measured


def test_fastapi_handler_snippet_is_the_example() -> None:
    """The FastAPI page's with_options handler is the one examples/fastapi_app.py serves."""
    (snippet,) = named_blocks("fastapi.md", "handler-snippet")
    example = (ROOT / "examples" / "fastapi_app.py").read_text()
    assert snippet in example
