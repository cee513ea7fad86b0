"""The Prometheus exporter: metric mapping, counter semantics, and scrapes over loopback TCP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async import (
    AsyncAnalytics,
    AuthenticationError,
    RetryPolicy,
    ServerError,
    Stats,
    TransportError,
)
from memcachier_async._cli.exporter import Exporter
from memcachier_async._cli.metrics import ExporterState, StatsCollector, error_kind
from memcachier_async._convert import structure
from memcachier_async.testing import Emulator, SimulatedServer

SAMPLES = Path(__file__).parent / "samples"
# The exporter's server is uvicorn, on asyncio only; polling runs on both.
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])

# (command, status) → the stats fields whose value it carries.
EXPECTED_COMMANDS = {
    ("get", "hit"): "get_hits",
    ("get", "miss"): "get_misses",
    ("delete", "hit"): "delete_hits",
    ("delete", "miss"): "delete_misses",
    ("incr", "hit"): "incr_hits",
    ("incr", "miss"): "incr_misses",
    ("decr", "hit"): "decr_hits",
    ("decr", "miss"): "decr_misses",
    ("cas", "hit"): "cas_hits",
    ("cas", "miss"): "cas_misses",
    ("cas", "badval"): "cas_badval",
    ("touch", "hit"): "touch_hits",
    ("touch", "miss"): "touch_misses",
    ("flush", "hit"): "cmd_flush",
}
ONE_FIELD = {
    "memcached_current_bytes": "bytes",
    "memcached_limit_bytes": "limit_maxbytes",
    "memcached_current_items": "curr_items",
    "memcached_current_connections": "curr_connections",
    "memcached_items_total": "total_items",
    "memcached_items_evicted_total": "evictions",
    "memcached_connections_total": "total_connections",
    "memcached_read_bytes_total": "bytes_read",
    "memcached_written_bytes_total": "bytes_written",
}


def load_stats(name: str) -> Stats:
    return structure(json.loads((SAMPLES / name).read_text()), Stats, "stats")


def stats_of(values: dict[str, dict[str, int]]) -> Stats:
    return structure(values, Stats, "stats")


def scrape(state: ExporterState) -> dict[str, Any]:
    """Samples by (name, frozen labels) from the collector's text exposition."""
    registry = CollectorRegistry()
    registry.register(StatsCollector(state))
    return parse(generate_latest(registry).decode())


def parse(text: str) -> dict[str, Any]:
    samples: dict[str, Any] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    samples["__types__"] = types
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float | None:
    result: float | None = samples.get((name, frozenset(labels.items())))
    return result


def test_every_server_field_maps_to_its_memcached_exporter_name() -> None:
    """Each server of a cache gets memcached_exporter's families, labelled cache and server."""
    stats = load_stats("stats_two_servers.json")
    state = ExporterState(["web"])
    state.record_success("web", stats)
    state.record_round(0.25)
    samples = scrape(state)
    for server, s in stats.items():
        labels = {"cache": "web", "server": server}
        for (command, status), field in EXPECTED_COMMANDS.items():
            got = value(
                samples, "memcached_commands_total", command=command, status=status, **labels
            )
            assert got == getattr(s, field), (server, command, status)
        for name, field in ONE_FIELD.items():
            assert value(samples, name, **labels) == getattr(s, field), (server, name)
        assert value(samples, "memcached_time_seconds", **labels) == s.time.timestamp()
    assert value(samples, "memcachier_up", cache="web") == 1
    assert value(samples, "memcachier_last_poll_duration_seconds") == 0.25
    assert value(samples, "memcachier_servers", cache="web") == 2
    types = samples["__types__"]
    assert types["memcached_commands"] == "counter"
    assert types["memcached_current_bytes"] == "gauge"
    assert types["memcached_items_evicted"] == "counter"


def test_sets_exclude_cas_as_memcached_exporter_counts_them() -> None:
    """set/hit is cmd_set minus CAS commands (memcached counts CAS in cmd_set), never negative."""
    (name, fields), *_ = json.loads((SAMPLES / "stats_reference.json").read_text()).items()
    normal = {**fields, "cmd_set": 100, "cas_hits": 5, "cas_misses": 3, "cas_badval": 2}
    odd = {**fields, "cmd_set": 1, "cas_hits": 5, "cas_misses": 0, "cas_badval": 0}
    state = ExporterState(["a", "b"])
    state.record_success("a", stats_of({name: normal}))
    state.record_success("b", stats_of({name: odd}))
    samples = scrape(state)
    labels = {"server": name, "command": "set", "status": "hit"}
    assert value(samples, "memcached_commands_total", cache="a", **labels) == 90
    assert value(samples, "memcached_commands_total", cache="b", **labels) == 0


def test_a_restarted_server_shows_a_counter_reset_not_a_negative_value() -> None:
    """Counters are exported as the server reports them, so a drop reads as a reset."""
    fields = json.loads((SAMPLES / "stats_reference.json").read_text())
    (name, server), *_ = fields.items()
    state = ExporterState(["web"])
    state.record_success("web", stats_of({name: {**server, "get_hits": 5000}}))
    before = scrape(state)
    state.record_success("web", stats_of({name: {**server, "get_hits": 12}}))
    after = scrape(state)
    labels = {"cache": "web", "server": name, "command": "get", "status": "hit"}
    assert value(before, "memcached_commands_total", **labels) == 5000
    assert value(after, "memcached_commands_total", **labels) == 12


def test_a_failed_poll_drops_server_metrics_and_counts_the_error() -> None:
    """After a failure: up 0, no stale server values, the error counted by kind, servers named."""
    state = ExporterState(["web", "never"])
    state.record_success("web", load_stats("stats_two_servers.json"))
    error = ServerError(
        "500", status_code=500, method="GET", url="u", body="", servers=["mc1.example.com:11211"]
    )
    state.record_failure("web", error)
    samples = scrape(state)
    assert value(samples, "memcachier_up", cache="web") == 0
    assert value(samples, "memcachier_up", cache="never") == 0  # not polled yet
    assert value(samples, "memcachier_polls_total", cache="web") == 2
    assert value(samples, "memcachier_poll_errors_total", cache="web", kind="server") == 1
    assert (
        value(samples, "memcachier_server_unavailable", cache="web", server="mc1.example.com:11211")
        == 1
    )
    assert value(samples, "memcachier_last_success_timestamp_seconds", cache="web") is not None
    # The named server is down for memcached_up; no other server value, stale or not.
    assert value(samples, "memcached_up", cache="web", server="mc1.example.com:11211") == 0
    server_series = [
        key for key in samples if key != "__types__" and key[0].startswith("memcached_")
    ]
    assert server_series == [
        ("memcached_up", frozenset({("cache", "web"), ("server", "mc1.example.com:11211")}))
    ]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (AuthenticationError("x", status_code=401, method="GET", url="u", body=""), "auth"),
        (ServerError("x", status_code=503, method="GET", url="u", body=""), "server"),
        (TransportError("x"), "transport"),
        (TimeoutError(), "timeout"),
        (RuntimeError(), "other"),
    ],
)
def test_error_kinds(error: BaseException, kind: str) -> None:
    """Poll errors are counted under a short kind label."""
    assert error_kind(error) == kind


# --- end to end: the emulator over TCP, scraped over TCP ---------------------------


def two_cache_emulator() -> tuple[Emulator, dict[str, tuple[str, str]]]:
    emulator = Emulator(servers=None, history_interval=3600)
    credentials = {}
    for name, count in (("web", 3), ("sessions", 2)):
        cache = emulator.add_cache(
            [SimulatedServer(f"mc{i}.{name}.test:11211") for i in range(1, count + 1)]
        )
        credential = cache.add_credential(primary=True)
        credentials[name] = (credential.sasl_username, credential.sasl_password)
    emulator.drive_traffic(2000)
    return emulator, credentials


@pytest.fixture
def emulator_and_credentials() -> Iterator[tuple[Emulator, dict[str, tuple[str, str]]]]:
    emulator, credentials = two_cache_emulator()
    yield emulator, credentials
    emulator.close()


async def scrape_url(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
async def served(
    emulator_and_credentials: tuple[Emulator, dict[str, tuple[str, str]]],
) -> AsyncIterator[tuple[Emulator, Exporter, str]]:
    emulator, credentials = emulator_and_credentials
    async with emulator.serve() as base_url:
        clients = [
            (
                name,
                AsyncAnalytics(user, pw, base_url=base_url, retry=RetryPolicy.disabled()),
            )
            for name, (user, pw) in credentials.items()
        ]
        exporter = Exporter(clients, interval=60)
        try:
            async with exporter.serve("127.0.0.1", 0) as root:
                yield emulator, exporter, root + "metrics"
        finally:
            for _, api in clients:
                await api.aclose()


@pytest.mark.anyio
@ASYNCIO_ONLY
async def test_scrape_over_tcp_matches_the_emulator(
    served: tuple[Emulator, Exporter, str],
) -> None:
    """Polled over TCP and scraped over TCP, every server's values equal the emulator's state."""
    emulator, exporter, url = served
    assert url.startswith("http://127.0.0.1:")
    await exporter.poll()
    samples = await scrape_url(url)
    for name, cache in zip(("web", "sessions"), emulator.caches, strict=True):
        assert value(samples, "memcachier_up", cache=name) == 1
        assert value(samples, "memcachier_servers", cache=name) == len(cache.servers)
        for server in cache.servers:
            truth = server.stats(0)
            labels = {"cache": name, "server": server.name}
            for (command, status), field in EXPECTED_COMMANDS.items():
                got = value(
                    samples, "memcached_commands_total", command=command, status=status, **labels
                )
                assert got == truth[field], (name, server.name, command, status)
            for metric, field in ONE_FIELD.items():
                assert value(samples, metric, **labels) == truth[field], (server.name, metric)
    # Traffic moved the counters: the test compares real numbers, not zeros.
    assert sum(s.stats(0)["cmd_get"] for s in emulator.caches[0].servers) > 1000


@pytest.mark.anyio
@ASYNCIO_ONLY
async def test_a_failing_cache_is_down_while_the_other_stays_up(
    served: tuple[Emulator, Exporter, str],
) -> None:
    """One cache whose server stops answering shows memcachier_up 0; the other keeps 1."""
    emulator, exporter, url = served
    await exporter.poll()
    broken = emulator.caches[1].servers[0]
    assert isinstance(broken, SimulatedServer)
    broken.up = False
    await exporter.poll()
    samples = await scrape_url(url)
    assert value(samples, "memcachier_up", cache="web") == 1
    assert value(samples, "memcachier_up", cache="sessions") == 0
    assert value(samples, "memcachier_poll_errors_total", cache="sessions", kind="server") == 1
    assert (
        value(samples, "memcachier_server_unavailable", cache="sessions", server=broken.name) == 1
    )
    assert value(samples, "memcachier_polls_total", cache="web") == 2
    sessions_series = [
        key for key in samples if key != "__types__" and ("cache", "sessions") in key[1]
    ]
    assert {name for name, _ in sessions_series if name.startswith("memcached_")} == {
        "memcached_up"
    }
    assert value(samples, "memcached_up", cache="sessions", server=broken.name) == 0
    # It comes back on the next poll.
    broken.up = True
    await exporter.poll()
    assert value(await scrape_url(url), "memcachier_up", cache="sessions") == 1


@pytest.mark.anyio
async def test_run_polls_the_given_number_of_rounds(
    emulator_and_credentials: tuple[Emulator, dict[str, tuple[str, str]]],
) -> None:
    """run(rounds=n) polls every cache n times on its cadence, then returns."""
    emulator, credentials = emulator_and_credentials
    user, pw = credentials["web"]
    async with AsyncAnalytics(user, pw, transport=emulator.transport()) as api:
        exporter = Exporter([("web", api)], interval=0.01)
        await exporter.run(rounds=3)
    assert exporter.rounds == 3
    # A round that finds the previous call still running skips the cache
    # (counted), so under load there can be fewer calls than rounds.
    assert 1 <= emulator.calls["stats"] <= 3
    assert exporter.state.view().samples["web"].up


def test_interval_must_be_positive() -> None:
    """A zero interval would poll in a busy loop: refused."""
    with pytest.raises(ValueError, match="interval"):
        Exporter([], interval=0)


def test_render_writes_what_generate_latest_writes() -> None:
    """The fast renderer's bytes equal prometheus-client's, escapes, counters and collectors included."""
    from prometheus_client import PlatformCollector, ProcessCollector

    from memcachier_async._cli.metrics import Families, render

    fields = json.loads((SAMPLES / "stats_reference.json").read_text())
    (_, server), *_ = fields.items()
    odd = 'we"b\\cache\nnext ünïcode'
    state = ExporterState(["web", odd, "never"])
    state.record_success("web", load_stats("stats_two_servers.json"))
    state.record_success(odd, stats_of({'host"1\\:11211': server}))
    state.record_failure(
        "never",
        ServerError("x", status_code=500, method="GET", url="u", body="", servers=["a:1"]),
    )
    state.record_round(1.5)
    registry = CollectorRegistry()
    registry.register(StatsCollector(state))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    families = list(registry.collect())  # once: process values move between collections
    expected = generate_latest(Families(families))
    assert render(families) == expected
    assert b'cache="we\\"b\\\\cache\\nnext' in expected
