"""Scaling out with a real Prometheus: 200 caches, two exporter replicas, two Prometheus servers.

Everything on loopback: the emulator serves 200 caches over TCP; two
``memcachier-analytics export --mode probe`` processes read the same
config; two Prometheus servers each discover the caches from one
replica's ``/sd`` and keep their half with ``hashmod`` (modulus 2), as
``docs/exporter.md`` tells users to. A third Prometheus server is the HA
twin of the first (the same configuration, scraping the same replica): the
replica's counters show the pair costing one API call per probe pair. The
test then asks the Prometheus HTTP APIs what they scraped, stops one
replica, and checks that only its Prometheus servers see its caches go down.

Needs the ``prometheus`` binary (Debian package ``prometheus``): skipped
where it is missing, a failure in CI. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async._cli.exporter import shard_of
from memcachier_async.testing import Emulator

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

CACHES = 200
SHARDS = 2
SERVERS_PER_CACHE = 2
# Short, for a short test; long enough that 200 probes per interval (50 a second)
# fit on a busy 2-core machine shared with other test runs.
SCRAPE_INTERVAL = 4.0
DASHBOARD = (
    Path(__file__).resolve().parent.parent / "examples" / "prometheus" / "grafana-dashboard.json"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """``check()``'s first truthy result, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Process:
    """A child process whose output goes to a file, shown when the test fails."""

    def __init__(
        self, name: str, command: list[str], log: Path, env: dict[str, str], address: str = ""
    ) -> None:
        self.name = name
        self.address = address
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(command, stdout=self._file, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._file.close()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def probe_counts(replica: Process) -> tuple[float, float]:
    """(probes answered, API calls they made) from a replica's own /metrics."""
    status, body = get(f"http://{replica.address}/metrics")
    assert status == 200
    probes = calls = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "memcachier_exporter_probes_total":
                probes += sample.value
            elif sample.name == "memcachier_exporter_probe_api_calls_total":
                calls += sample.value
    return probes, calls


class Prometheus:
    def __init__(self, url: str, process: Process) -> None:
        self.url = url
        self.process = process

    def query(self, promql: str) -> list[dict[str, Any]]:
        status, body = get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert status == 200, (promql, body[:500])
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def by_cache(self, promql: str) -> dict[str, float]:
        return {r["metric"]["cache"]: float(r["value"][1]) for r in self.query(promql)}


def prometheus_config(replica: str, shard: int) -> dict[str, Any]:
    """The probe-mode job of examples/prometheus/prometheus.yml, with hashmod on, on short intervals."""
    interval = f"{SCRAPE_INTERVAL:g}s"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {
                "job_name": "memcachier",
                "metrics_path": "/probe",
                "http_sd_configs": [{"url": f"http://{replica}/sd", "refresh_interval": "2s"}],
                "relabel_configs": [
                    {
                        "source_labels": ["cache"],
                        "modulus": SHARDS,
                        "target_label": "__tmp_shard",
                        "action": "hashmod",
                    },
                    {"source_labels": ["__tmp_shard"], "regex": str(shard), "action": "keep"},
                    {"source_labels": ["cache"], "target_label": "__param_cache"},
                    {"source_labels": ["cache"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": replica},
                ],
            },
            {"job_name": "memcachier-exporter", "static_configs": [{"targets": [replica]}]},
        ],
    }


@pytest.fixture
def fleet(
    tmp_path: Path, require_binary: Callable[[str, str], str]
) -> Iterator[tuple[Emulator, list[Process], list[Prometheus]]]:
    """The emulator (200 caches over TCP), two exporter replicas and three Prometheus servers:
    one per replica, and the first one's HA twin (same config, same replica)."""
    prometheus_binary = require_binary("prometheus", "prometheus")
    emulator = Emulator(servers=None, history_interval=3600)
    credentials = []
    for _ in range(CACHES):
        cache = emulator.add_cache(SERVERS_PER_CACHE)
        credential = cache.add_credential(primary=True)
        credentials.append((cache.cache_id, credential.sasl_username, credential.sasl_password))
    emulator.drive_traffic(50)  # items in every cache; no traffic after, so values hold still
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCACHIER_")}
    with ExitStack() as stack:
        stack.callback(emulator.close)
        portal = stack.enter_context(start_blocking_portal())
        base_url = stack.enter_context(portal.wrap_async_context_manager(emulator.serve()))
        config = tmp_path / "caches.toml"
        entries = [
            f'[[cache]]\nname = "cache-{i:03d}"\nusername = "{user}"\npassword = "{password}"\n'
            f"cache_id = {cache_id}\n"
            for i, (cache_id, user, password) in enumerate(credentials)
        ]
        config.write_text(f'base_url = "{base_url}"\n\n' + "\n".join(entries))
        replicas = []
        for index in range(SHARDS):
            port = free_port()
            command = [sys.executable, "-m", "memcachier_async._cli", "export"]
            command += ["--config", str(config), "--mode", "probe", "--retries", "0"]
            command += ["--listen", f"127.0.0.1:{port}"]
            log = tmp_path / f"replica{index}.log"
            replica = Process(f"replica {index}", command, log, env, f"127.0.0.1:{port}")
            stack.callback(replica.stop)
            replicas.append(replica)
        for replica in replicas:
            wait_for(
                f"{replica.name} to be ready",
                lambda r=replica: get(f"http://{r.address}/-/ready")[0] == 200 or not r.alive(),
                30,
            )
            assert replica.alive(), replica.output()
        servers = []
        # The twin: the first Prometheus again, as an HA pair runs it.
        for index, (shard, replica) in enumerate([*enumerate(replicas), (0, replicas[0])]):
            port = free_port()
            directory = tmp_path / f"prometheus{index}"
            directory.mkdir()
            (directory / "prometheus.yml").write_text(
                json.dumps(prometheus_config(replica.address, shard))
            )
            command = [
                prometheus_binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ]
            process = Process(f"prometheus {index}", command, directory / "log", env)
            stack.callback(process.stop)
            servers.append(Prometheus(f"http://127.0.0.1:{port}", process))
        for server in servers:
            wait_for(
                f"{server.process.name} to be ready",
                lambda s=server: get(f"{s.url}/-/ready")[0] == 200 or not s.process.alive(),
                60,
            )
            assert server.process.alive(), server.process.output()
        try:
            yield emulator, replicas, servers
        except BaseException:
            for process in [*replicas, *(s.process for s in servers)]:
                print(f"--- {process.name} ---\n{process.output()}")
            raise


def test_two_prometheus_servers_split_200_caches_over_two_replicas(
    fleet: tuple[Emulator, list[Process], list[Prometheus]],
) -> None:
    """hashmod splits the caches in two disjoint halves that cover all 200, every probe succeeds,
    the values are the emulator's, an HA pair on one replica costs one API call per cache per
    interval, and a stopped replica takes down only its own half."""
    emulator, replicas, servers = fleet
    names = {f"cache-{i:03d}" for i in range(CACHES)}

    progress: list[str] = []

    def halves() -> list[dict[str, float]] | None:
        seen = [server.by_cache("memcachier_probe_success") for server in servers[:2]]
        union = set(seen[0]) | set(seen[1])
        failing = sum(v != 1 for half in seen for v in half.values())
        progress.append(f"{[len(h) for h in seen]} caches seen, {failing} failing")
        return seen if union == names and not failing else None

    try:
        seen = wait_for("both Prometheus servers to scrape every cache", halves, 120)
    finally:
        print("progress:", progress[-5:])
        for server in servers:
            status, body = get(f"{server.url}/api/v1/targets?state=active")
            targets = json.loads(body)["data"]["activeTargets"] if status == 200 else []
            errors = {t["lastError"] for t in targets if t["lastError"]}
            print(server.process.name, len(targets), "targets; errors:", sorted(errors)[:3])
    first, second = (set(half) for half in seen)
    assert first | second == names
    assert first & second == set()
    assert all(value == 1 for half in seen for value in half.values())
    # The split is the documented hash: shard_of(name, 2) is Prometheus' hashmod.
    assert first == {name for name in names if shard_of(name, SHARDS) == 0}

    # The values went through the API, the replica and Prometheus unchanged.
    caches = emulator.caches
    for server, half in zip(servers[:2], (first, second), strict=True):
        name = min(half)
        cache = caches[int(name.removeprefix("cache-"))]
        items = {
            r["metric"]["server"]: float(r["value"][1])
            for r in server.query(f'memcached_current_items{{cache="{name}"}}')
        }
        truth = {s.name: float(s.stats(0)["curr_items"]) for s in cache.servers}
        assert items == truth
        assert sum(truth.values()) > 0

    # The HA pair (the first server and its twin) probes replica 0 for the same half at the
    # same moments: the replica answers both, with about one API call per pair of probes.
    twin = servers[2]
    wait_for(
        "the twin to scrape its half",
        lambda: set(twin.by_cache("memcachier_probe_success")) == first,
        60,
    )
    before = [probe_counts(replica) for replica in replicas]
    time.sleep(3 * SCRAPE_INTERVAL)
    after = [probe_counts(replica) for replica in replicas]
    (pair_probes, pair_calls), (single_probes, single_calls) = (
        (a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)
    )
    print("replica 0 (HA pair):", pair_probes, "probes,", pair_calls, "API calls;")
    print("replica 1 (one Prometheus):", single_probes, "probes,", single_calls, "API calls")
    assert pair_probes >= 2 * 2 * len(first)  # both servers, at least 2 rounds each
    assert pair_calls <= 0.6 * pair_probes  # ~0.5: one call answers the pair
    assert pair_calls <= 4 * len(first)  # at most one per cache per interval (3, and an edge)
    assert single_calls >= 0.9 * single_probes  # alone, a probe is its own call

    # Every query of the dashboard parses and runs on the real engine.
    dashboard = json.loads(DASHBOARD.read_text())
    substitutions = {
        "$__rate_interval": "1m",
        "$exporter_job": "memcachier-exporter",
        "$job": "memcachier",
        "$cache": ".*",
        "$server": ".*",
    }
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            promql = target["expr"]
            for variable, replacement in substitutions.items():
                promql = promql.replace(variable, replacement)
            servers[1].query(promql)  # asserts status success
    build = servers[1].query('memcachier_exporter_build_info{job="memcachier-exporter"}')
    assert len(build) == 1

    # One replica stops: its Prometheus marks its half down, the other half stays up.
    replicas[0].stop()

    def split_up() -> tuple[dict[str, float], dict[str, float]] | None:
        down = servers[0].by_cache('up{job="memcachier"}')
        up = servers[1].by_cache('up{job="memcachier"}')
        if set(down) == first and set(down.values()) == {0} and set(up.values()) == {1}:
            return down, up
        return None

    down, up = wait_for("the stopped replica's caches to be down", split_up, 60)
    assert set(up) == second
    assert set(down.values()) == {0.0}
    assert set(up.values()) == {1.0}
