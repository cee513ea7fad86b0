"""The ``memcachier-analytics`` command: ``demo`` and ``emulator``."""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from memcachier_async import AsyncAnalytics
from memcachier_async._cli import main

STEPS = ("1. Log in", "2. Stats", "3. History", "4. Credentials", "5. Flush", "6. Capacity")


@pytest.mark.parametrize("args", [[], ["--tcp"]], ids=["in-process", "tcp"])
def test_demo_runs_every_step(args: list[str]) -> None:
    """demo exits 0 after logging in, stats (with totals), history, credentials and flush."""
    result = CliRunner().invoke(main, ["demo", *args])
    assert result.exit_code == 0, result.output
    for step in STEPS:
        assert step in result.output
    assert re.search(r"total\s+[\d,]+\s+[\d.]+%", result.output)
    assert "the last five intervals" in result.output
    assert "deleted" in result.output
    assert result.output.count("0 → 1") == 3
    # It ends with the capacity advice for its cache: a row per server, and the advice.
    advice = result.output.split("6. Capacity advice", 1)[1]
    assert len(re.findall(r"^ mc\d", advice, re.M)) == 3
    assert re.search(r"(is full now|fills first|no server is filling)", advice)
    assert "Done in" in result.output


def test_console_script_points_at_main() -> None:
    """The installed console script memcachier-analytics is _cli:main."""
    scripts = importlib.metadata.entry_points(group="console_scripts")
    (script,) = [s for s in scripts if s.name == "memcachier-analytics"]
    assert script.value == "memcachier_async._cli:main"


def test_demo_as_a_process() -> None:
    """The demo runs as its own process (as the README's first command does) and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "memcachier_async._cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "5. Flush" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memcachier_async._cli",
            "emulator",
            "--port",
            "0",
            "--db",
            str(tmp_path / "emu.sqlite"),
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
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        assert process.stderr is not None
        process.stderr.close()


def test_emulator_command_serves_until_interrupted(
    emulator_process: tuple[subprocess.Popen[str], list[str]],
) -> None:
    """emulator prints a base URL and credentials that work with the SDK, and stops on Ctrl-C."""
    process, lines = emulator_process
    text = "".join(lines)
    base_url = re.search(r"base URL: (\S+)", text)
    credential = re.search(r"primary: username (\S+) password (\S+)", text)
    assert base_url is not None, text
    assert credential is not None, text

    async def read() -> int:
        async with AsyncAnalytics(*credential.groups(), base_url=base_url[1]) as api:
            assert len(await api.stats()) == 3
            return await api.login()

    assert anyio.run(read) == 1561
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130  # Ctrl-C's exit code


def test_emulator_command_refuses_a_bad_memcached_address() -> None:
    """A --memcached value that is not host:port is a usage error (exit 2), not a traceback."""
    result = CliRunner().invoke(main, ["emulator", "--memcached", "nope"])
    assert result.exit_code == 2
    assert "host:port" in result.output


def test_help_lists_the_commands() -> None:
    """--help names the demo and emulator commands."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
    assert "emulator" in result.output
