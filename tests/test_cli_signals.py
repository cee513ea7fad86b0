"""Commands that run until stopped exit 0 on SIGINT and SIGTERM, without a traceback.

Each case starts the real command in a subprocess (the signal goes to a real
process, as Ctrl-C or a service manager's ``kill`` would send it), waits
until it is serving or polling, signals it and reads how it ended.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

# Each command, and a line it prints (on stdout or stderr) once it is running.
COMMANDS = {
    "export": (
        ["export", "--emulator", "--listen", "127.0.0.1:0", "--interval", "0.05"],
        r"Serving metrics of 2 cache\(s\) on http://127\.0\.0\.1:\d+/metrics",
    ),
    "watch": (["watch", "--emulator", "--json", "--interval", "0.05"], r'^\{"round":2,"time":'),
    "emulator": (["emulator", "--port", "0"], r"Ctrl-C stops it"),
}
SIGNALS = [signal.SIGINT, signal.SIGTERM]


class Running:
    """A command in a subprocess, with its stdout and stderr read as they come."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memcachier_async._cli", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        streams = (self.process.stdout, self.process.stderr)
        self.pumps = [threading.Thread(target=self._pump, args=(s,)) for s in streams]
        for pump in self.pumps:
            pump.start()

    def _pump(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> None:
        """Until a line matching ``pattern`` is printed (30 s at most)."""
        while not any(re.search(pattern, line) for line in self.seen):
            try:
                self.seen.append(self.lines.get(timeout=30))
            except queue.Empty:
                pytest.fail(f"never printed {pattern!r}; printed {self.seen!r}")

    def output(self) -> str:
        """Everything printed, once the process has ended."""
        for pump in self.pumps:
            pump.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "".join(self.seen)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.output()
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            stream.close()


@pytest.fixture
def started(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    """The command named by the test's ``started`` parameter, running."""
    argv, ready = COMMANDS[request.param]
    if request.param == "emulator":
        argv = [*argv, "--db", str(tmp_path / "emu.sqlite")]
    running = Running(argv)
    try:
        running.wait_for(ready)
        yield running
    finally:
        running.close()


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("started", list(COMMANDS), indirect=True)
def test_command_stops_cleanly_on_a_signal(started: Running, signum: signal.Signals) -> None:
    """A running export, watch or emulator exits 0 on SIGINT/SIGTERM and prints no traceback or error."""
    assert started.process.poll() is None  # still running: it runs until stopped
    started.process.send_signal(signum)
    code = started.process.wait(timeout=20)
    text = started.output()
    assert code == 0, text
    assert "Traceback" not in text
    assert "Error" not in text
