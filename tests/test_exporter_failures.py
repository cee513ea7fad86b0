"""Failures that say why: the exporter, run as a user runs it, against the emulator over TCP.

One cache refuses its credential every round, one has a server down and then
back, one is fine. The exporter logs one WARNING when a cache starts failing
(its name, the error's class and message), one INFO when it recovers, nothing
per round in between; ``memcachier_last_error_info{cache, error}`` carries the
latest error on /metrics and /probe; ``memcachier_scrape_duration_seconds``
each probed cache's call time. No credential appears anywhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async.testing import Emulator, SimulatedServer

pytestmark = pytest.mark.slow

WRONG_PASSWORD = "wrong-Pa55word-never-seen"
INTERVAL = 0.3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_cache(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> dict:
    """``{cache: (labels, value)}`` of one metric name."""
    return {
        dict(labels)["cache"]: (dict(labels), value)
        for (sample, labels), value in found.items()
        if sample == name
    }


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[SimulatedServer, str, Path, list[str]]]:
    """The emulator over TCP and ``memcachier-analytics export`` polling its three caches."""
    emulator = Emulator(servers=None, history_interval=3600)
    entries = []
    flaky_server = SimulatedServer("mc1.flaky.test:11211")
    secrets = []
    for name, servers, wrong in (
        ("web", [SimulatedServer("mc1.web.test:11211")], False),
        ("broken", [SimulatedServer("mc1.broken.test:11211")], True),
        ("flaky", [flaky_server, SimulatedServer("mc2.flaky.test:11211")], False),
    ):
        cache = emulator.add_cache(servers)
        credential = cache.add_credential(primary=True)
        password = WRONG_PASSWORD if wrong else credential.sasl_password
        secrets.append(password)
        entries.append(
            f'[[cache]]\nname = "{name}"\nusername = "{credential.sasl_username}"\n'
            f'password = "{password}"\ncache_id = {cache.cache_id}\n'
        )
    emulator.drive_traffic(50)
    flaky_server.up = False
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCACHIER_")}
    with ExitStack() as stack:
        stack.callback(emulator.close)
        portal = stack.enter_context(start_blocking_portal())
        base_url = stack.enter_context(portal.wrap_async_context_manager(emulator.serve()))
        config = tmp_path / "caches.toml"
        config.write_text(f'base_url = "{base_url}"\n\n' + "\n".join(entries))
        port = free_port()
        log = tmp_path / "stderr.log"
        command = [sys.executable, "-m", "memcachier_async._cli", "export", "--config"]
        command += [str(config), "--interval", str(INTERVAL), "--retries", "0"]
        command += ["--listen", f"127.0.0.1:{port}"]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stderr=out, stdout=out, env=env)
        try:
            root = f"http://127.0.0.1:{port}"
            wait_for("the exporter to be ready", lambda: _ready(root) or process.poll() is not None)
            assert process.poll() is None, log.read_text()
            yield flaky_server, root, log, secrets
        finally:
            process.terminate()
            assert process.wait(15) == 0, log.read_text()


def _ready(root: str) -> bool:
    try:
        with urllib.request.urlopen(root + "/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def lines(log: Path, level: str, cache: str) -> list[str]:
    return [
        line
        for line in log.read_text().splitlines()
        if line.startswith(level) and f"cache {cache!r}" in line
    ]


def polls(root: str, cache: str) -> float:
    return samples(root + "/metrics").get(
        ("memcachier_polls_total", frozenset({("cache", cache)})), 0.0
    )


def test_a_failing_cache_is_logged_once_with_why_and_its_recovery_once(
    running: tuple[SimulatedServer, str, Path, list[str]],
) -> None:
    """Poll mode: one WARNING per failing cache with its error class and message, one INFO on
    recovery, none per round; last_error_info names the error while it lasts; a probe of a
    failing cache serves the same error and the call's duration; no password anywhere."""
    flaky, root, log, secrets = running
    start = polls(root, "broken")
    wait_for("five more rounds", lambda: polls(root, "broken") >= start + 5)

    broken = lines(log, "WARNING", "broken")
    assert len(broken) == 1, log.read_text()
    assert "AuthenticationError" in broken[0]
    failing = lines(log, "WARNING", "flaky")
    assert len(failing) == 1, log.read_text()
    assert "ServerError" in failing[0]
    assert "mc1.flaky.test:11211" in failing[0]  # which server did not answer
    assert lines(log, "WARNING", "web") == []

    errors = by_cache(samples(root + "/metrics"), "memcachier_last_error_info")
    assert set(errors) == {"broken", "flaky"}
    assert errors["broken"][0]["error"].startswith("AuthenticationError: ")
    assert errors["flaky"][0]["error"].startswith("ServerError: ")
    assert {value for _, value in errors.values()} == {1.0}

    probe = samples(root + "/probe?cache=broken")
    assert by_cache(probe, "memcachier_last_error_info")["broken"][0]["error"].startswith(
        "AuthenticationError: "
    )
    duration = by_cache(probe, "memcachier_scrape_duration_seconds")["broken"][1]
    assert 0 < duration < 10
    assert by_cache(samples(root + "/probe?cache=web"), "memcachier_last_error_info") == {}

    flaky.up = True
    wait_for(
        "flaky to be up again",
        lambda: (
            samples(root + "/metrics").get(("memcachier_up", frozenset({("cache", "flaky")}))) == 1
        ),
    )
    again = polls(root, "flaky")
    wait_for("three more rounds", lambda: polls(root, "flaky") >= again + 3)
    recovered = lines(log, "INFO", "flaky")
    assert len(recovered) == 1, log.read_text()
    assert "recovered" in recovered[0]
    assert len(lines(log, "WARNING", "flaky")) == 1
    assert len(lines(log, "WARNING", "broken")) == 1  # still failing: still one line
    assert set(by_cache(samples(root + "/metrics"), "memcachier_last_error_info")) == {"broken"}

    everything = log.read_text() + str(samples(root + "/metrics")) + str(probe)
    for secret in secrets:
        assert secret not in everything
