"""Ctrl-C (SIGINT) ends any command with exit code 130 and no ``Aborted!``; SIGTERM ends a
command that runs until stopped with exit code 0; neither prints a traceback.

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
# What a shell reports for Ctrl-C (128 + SIGINT); a service manager's SIGTERM is a clean stop.
EXIT_CODE = {signal.SIGINT: 130, signal.SIGTERM: 0}
# One-shot commands caught in the middle: waiting between two reads, or at a prompt.
ONE_SHOT = {
    # -vv logs each request: after the first stats call it waits out the interval.
    "stats --interval": (
        ["-vv", "stats", "--emulator", "--interval", "60"],
        r"GET \S+/stats -> 200",
    ),
    "flush prompt": (["flush", "--emulator"], r"Flush every item of cache web\? \[y/N\]"),
    "delete prompt": (
        ["credentials", "delete", "5D6E7F", "--emulator"],
        r"Delete credential 5D6E7F of cache web\? \[y/N\]",
    ),
}


class Running:
    """A command in a subprocess, with its stdout and stderr read as they come."""

    def __init__(self, argv: list[str], *, stdin: int = subprocess.DEVNULL) -> None:
        """``stdin=subprocess.PIPE`` leaves a prompt waiting for an answer (never given)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memcachier_async._cli", *argv],
            stdin=stdin,
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
        # Whatever has arrived, not whole lines: a prompt does not end its line.
        assert stream is not None
        while chunk := os.read(stream.fileno(), 4096):
            self.lines.put(chunk.decode(errors="replace"))

    def wait_for(self, pattern: str) -> None:
        """Until text matching ``pattern`` is printed (30 s at most; ``^`` is a line start)."""
        while not re.search(pattern, "".join(self.seen), re.M):
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
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
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
    """A running export, watch or emulator exits 130 on SIGINT, 0 on SIGTERM, and prints no
    traceback, error or Aborted!."""
    assert started.process.poll() is None  # still running: it runs until stopped
    started.process.send_signal(signum)
    code = started.process.wait(timeout=20)
    text = started.output()
    assert code == EXIT_CODE[signum], text
    assert "Traceback" not in text
    assert "Error" not in text
    assert "Aborted" not in text


@pytest.mark.parametrize("case", list(ONE_SHOT))
def test_ctrl_c_in_a_one_shot_command_exits_130(case: str) -> None:
    """Ctrl-C while stats waits out its interval, or at a confirmation prompt: exit 130, no
    Aborted!, no traceback, and nothing done."""
    argv, ready = ONE_SHOT[case]
    running = Running(argv, stdin=subprocess.PIPE)
    try:
        running.wait_for(ready)
        assert running.process.poll() is None
        running.process.send_signal(signal.SIGINT)
        code = running.process.wait(timeout=20)
        text = running.output()
    finally:
        running.close()
    assert code == 130, text
    assert "Aborted" not in text
    assert "Traceback" not in text
    assert "Nothing done" not in text
