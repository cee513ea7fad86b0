"""The exporter's routes over loopback TCP: /probe, /sd, /-/healthy, /-/ready, /, /metrics, 404.

Probes run against the emulator over TCP; the bound on concurrent probes
is pinned with a gated mock transport, so no test depends on timing but
for the deadlines it names.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest
from _gate import Gate, wait_until
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async import AsyncAnalytics, RetryPolicy
from memcachier_async._cli.exporter import Exporter, Mode, parse_shard, shard_of
from memcachier_async._cli.probe import ProbeBusy, Prober, probe_timeout
from memcachier_async._version import __version__
from memcachier_async.testing import Emulator, SimulatedServer

TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


@pytest.fixture
def anyio_backend() -> str:
    """The exporter's server is uvicorn, which runs on asyncio only (the Prober runs on
    both: tests/test_exporter_sharing.py)."""
    return "asyncio"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def caches_in(samples: Samples) -> set[str]:
    return {dict(labels)["cache"] for _, labels in samples if "cache" in dict(labels)}


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, dict[str, tuple[str, str]]]]:
    """Two caches (web: 3 servers, sessions: 2) with traffic, and their credentials."""
    emu = Emulator(servers=None, history_interval=3600)
    credentials = {}
    for name, count in (("web", 3), ("sessions", 2)):
        cache = emu.add_cache(
            [SimulatedServer(f"mc{i}.{name}.test:11211") for i in range(1, count + 1)]
        )
        credential = cache.add_credential(primary=True)
        credentials[name] = (credential.sasl_username, credential.sasl_password)
    emu.drive_traffic(2000)
    yield emu, credentials
    emu.close()


class Served:
    """An exporter served on loopback, and a client for its routes."""

    def __init__(self, emulator: Emulator, exporter: Exporter, root: str) -> None:
        self.emulator = emulator
        self.exporter = exporter
        self.root = root
        self.http = httpx.AsyncClient(base_url=root, timeout=10)

    async def get(self, path: str, **headers: str) -> httpx.Response:
        return await self.http.get(path, headers=headers)

    async def probe(self, cache: str, scrape_timeout: str = "5") -> tuple[httpx.Response, Samples]:
        response = await self.http.get(
            "/probe", params={"cache": cache}, headers={TIMEOUT_HEADER: scrape_timeout}
        )
        samples = parse(response.text) if response.status_code == 200 else {}
        return response, samples


@pytest.fixture
async def served(
    emulator: tuple[Emulator, dict[str, tuple[str, str]]], request: pytest.FixtureRequest
) -> AsyncIterator[Served]:
    """The emulator over TCP and an exporter (probe mode unless marked) serving both caches."""
    emu, credentials = emulator
    mode: Mode = getattr(request, "param", "probe")
    async with AsyncExitStack() as stack:
        base_url = await stack.enter_async_context(emu.serve())
        shared = await stack.enter_async_context(httpx.AsyncClient())
        clients = [
            (name, AsyncAnalytics(user, pw, base_url=base_url, http_client=shared))
            for name, (user, pw) in credentials.items()
        ]
        exporter = Exporter(clients, interval=60, mode=mode)
        root = await stack.enter_async_context(exporter.serve("127.0.0.1", 0))
        served = Served(emu, exporter, root)
        stack.push_async_callback(served.http.aclose)
        yield served


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# --- /probe ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_probe_returns_that_cache_only_with_the_emulators_values(served: Served) -> None:
    """/probe?cache=web: success 1, a duration, web's servers up with the emulator's values, no other cache."""
    response, samples = await served.probe("web")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert value(samples, "memcachier_probe_success") == 1
    duration = value(samples, "memcachier_probe_duration_seconds")
    assert duration is not None
    assert duration > 0
    assert caches_in(samples) == {"web"}
    assert value(samples, "memcachier_up", cache="web") == 1
    web = served.emulator.caches[0]
    assert value(samples, "memcachier_servers", cache="web") == len(web.servers)
    for server in web.servers:
        labels = {"cache": "web", "server": server.name}
        truth = server.stats(0)
        assert value(samples, "memcached_up", **labels) == 1
        assert value(samples, "memcached_current_items", **labels) == truth["curr_items"]
        assert value(samples, "memcached_current_bytes", **labels) == truth["bytes"]
        hits = value(samples, "memcached_commands_total", command="get", status="hit", **labels)
        assert hits == truth["get_hits"]
    assert truth["get_hits"] > 0  # traffic moved the counters: real numbers, not zeros
    # Poll-mode families are not a probe's business.
    assert not any(name.startswith("memcachier_poll") for name, _ in samples)


@pytest.mark.anyio
async def test_a_failing_cache_fails_its_probe_only(served: Served) -> None:
    """A cache with a server down: its probe is 200 with success 0 and memcached_up 0; the other cache's probe succeeds."""
    broken = served.emulator.caches[1].servers[0]
    assert isinstance(broken, SimulatedServer)
    broken.up = False
    (bad, bad_samples), (good, good_samples) = await gather(
        served.probe("sessions"), served.probe("web")
    )
    assert bad.status_code == good.status_code == 200
    assert value(bad_samples, "memcachier_probe_success") == 0
    assert value(bad_samples, "memcachier_up", cache="sessions") == 0
    assert value(bad_samples, "memcached_up", cache="sessions", server=broken.name) == 0
    assert (
        value(bad_samples, "memcachier_server_unavailable", cache="sessions", server=broken.name)
        == 1
    )
    # No stale or partial server values for a failed probe.
    assert {name for name, _ in bad_samples if name.startswith("memcached_")} == {"memcached_up"}
    assert value(good_samples, "memcachier_probe_success") == 1
    assert caches_in(good_samples) == {"web"}


async def gather(*calls: Any) -> list[Any]:
    """Run awaitables concurrently; their results in order."""
    results: list[Any] = [None] * len(calls)

    async def one(index: int, call: Any) -> None:
        results[index] = await call

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(one, index, call)
    return results


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "Give one cache"),
        ("?cache=", "Give one cache"),
        ("?cache=web&cache=sessions", "Give one cache"),
        ("?target=web", "Give one cache"),
        ("?cache=nope", "Unknown cache 'nope'"),
        ("?cache=%0Aweb", "Unknown cache '\\nweb'"),
    ],
)
async def test_a_probe_without_one_known_cache_is_a_400_with_a_one_line_reason(
    served: Served, query: str, reason: str
) -> None:
    """Missing, repeated or unknown names get 400 and one line saying why; credentials never come from the URL."""
    response = await served.get("/probe" + query)
    assert response.status_code == 400
    assert response.text.startswith(reason)
    assert response.text.count("\n") == 1
    assert served.emulator.calls["stats"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["abc", "0", "-1", "nan", "inf", ""])
async def test_a_bad_scrape_timeout_header_is_a_400(served: Served, header: str) -> None:
    """X-Prometheus-Scrape-Timeout-Seconds must be a positive finite number."""
    response = await served.get("/probe?cache=web", **{TIMEOUT_HEADER: header})
    assert response.status_code == 400
    assert TIMEOUT_HEADER.lower() in response.text


@pytest.mark.parametrize(
    ("header", "cap", "expected"),
    [
        (None, 30.0, 30.0),  # no header (curl): the exporter's --timeout
        ("10", 30.0, 9.5),  # a margin of 10 %, at most 0.5 s
        ("1", 30.0, 0.9),
        ("2.5", 30.0, 2.25),
        ("60", 30.0, 30.0),  # capped by --timeout
    ],
)
def test_probe_timeout_follows_prometheus_less_a_margin_capped(
    header: str | None, cap: float, expected: float
) -> None:
    """The probe's time: the scrape timeout less min(10 %, 0.5 s), at most --timeout."""
    assert probe_timeout(header, cap) == pytest.approx(expected)


@pytest.mark.anyio
async def test_a_probe_gives_up_at_the_scrape_timeout_less_the_margin() -> None:
    """An API that never answers: the probe answers 200 with success 0 once its time (0.5 s less 10 %) is up."""
    gate = anyio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(500)

    api = AsyncAnalytics(
        "u", "p", cache_id=1, transport=httpx.MockTransport(never), retry=RetryPolicy.disabled()
    )
    exporter = Exporter([("slow", api)], mode="probe", timeout=30)
    async with exporter.serve("127.0.0.1", 0) as root, httpx.AsyncClient(base_url=root) as http:
        with anyio.fail_after(5):  # a bound on the test, not a measurement
            response = await http.get("/probe?cache=slow", headers={TIMEOUT_HEADER: "0.5"})
    samples = parse(response.text)
    assert response.status_code == 200
    assert value(samples, "memcachier_probe_success") == 0
    duration = value(samples, "memcachier_probe_duration_seconds")
    assert duration is not None
    assert duration >= 0.45  # the whole of its time, never cut short
    assert exporter.prober.results == {"failure": 1}
    await api.aclose()


# --- the bound on concurrent probes --------------------------------------------------


@pytest.mark.anyio
async def test_a_probe_over_the_bound_waits_for_a_slot_within_its_time() -> None:
    """With one slot taken, the next probe waits and then runs; never two calls at once."""
    gate = Gate()
    prober = Prober({"a": gate.client(), "b": gate.client()}, max_concurrent=1)
    results: dict[str, Any] = {}

    async def probe(cache: str) -> None:
        results[cache] = await prober.probe(cache, within=10)

    async with anyio.create_task_group() as group:
        group.start_soon(probe, "a")
        await wait_until(lambda: gate.in_flight == 1)
        group.start_soon(probe, "b")
        await wait_until(lambda: prober.waiting == 1)
        assert gate.calls == 1  # b waits for the slot, not in the API
        gate.open.set()
    assert results["a"].success
    assert results["b"].success
    assert gate.most == 1
    assert prober.results == {"success": 2}


@pytest.mark.anyio
async def test_a_probe_that_gets_no_slot_in_its_time_is_busy_and_over_http_a_503() -> None:
    """All slots taken for the whole of a probe's time: ProbeBusy, served as 503 with one line."""
    gate = Gate()
    exporter = Exporter(
        [("a", gate.client()), ("b", gate.client())], mode="probe", max_probes=1, timeout=30
    )
    async with exporter.serve("127.0.0.1", 0) as root, httpx.AsyncClient(base_url=root) as http:
        async with anyio.create_task_group() as group:
            group.start_soon(http.get, "/probe?cache=a")
            await wait_until(lambda: gate.in_flight == 1)
            with anyio.fail_after(5):
                busy = await http.get("/probe?cache=b", headers={TIMEOUT_HEADER: "0.3"})
            gate.open.set()
        metrics = parse((await http.get("/metrics")).text)
    assert busy.status_code == 503
    assert busy.text.startswith("Busy: 1 probes in flight (--max-concurrent-probes)")
    assert gate.calls == 1
    assert value(metrics, "memcachier_exporter_probes_total", result="busy") == 1
    assert value(metrics, "memcachier_exporter_probes_total", result="success") == 1


@pytest.mark.anyio
async def test_the_prober_raises_busy_and_frees_the_slot_after() -> None:
    """Prober.probe raises ProbeBusy when no slot frees in time; the slot is usable again once released."""
    gate = Gate()
    prober = Prober({"a": gate.client(), "b": gate.client()}, max_concurrent=1)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: prober.probe("a", within=10))
        await wait_until(lambda: gate.in_flight == 1)
        with pytest.raises(ProbeBusy, match="Busy: 1 probes in flight"):
            await prober.probe("b", within=0.05)
        gate.open.set()
    assert (await prober.probe("b", within=10)).success
    assert prober.results == {"success": 2, "busy": 1}
    assert prober.in_flight == 0


@pytest.mark.anyio
async def test_probes_of_a_cache_share_its_client_login_and_pool(served: Served) -> None:
    """Many concurrent probes of one cache: one login for the process, one stats call
    (shared, tests/test_exporter_sharing.py), all 200."""
    responses = await gather(*(served.probe("web") for _ in range(8)))
    assert all(response.status_code == 200 for response, _ in responses)
    assert served.emulator.calls["login"] == 1
    assert served.emulator.calls["stats"] == 1


# --- /sd, health, landing page, 404 ---------------------------------------------------


@pytest.mark.anyio
async def test_sd_lists_every_cache_in_prometheus_http_sd_format(served: Served) -> None:
    """/sd: one target group per cache, the name as target and as the cache label."""
    response = await served.get("/sd")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [
        {"targets": ["web"], "labels": {"cache": "web"}},
        {"targets": ["sessions"], "labels": {"cache": "sessions"}},
    ]


@pytest.mark.anyio
async def test_healthy_and_ready_in_probe_mode(served: Served) -> None:
    """Probe mode: healthy and ready as soon as it serves (the config is loaded)."""
    assert (await served.get("/-/healthy")).status_code == 200
    ready = await served.get("/-/ready")
    assert (ready.status_code, ready.text) == (200, "Ready.\n")


@pytest.mark.anyio
@pytest.mark.parametrize("served", ["poll"], indirect=True)
async def test_poll_mode_is_ready_after_its_first_round(served: Served) -> None:
    """Poll mode: /-/ready is 503 until the first round is done, then 200; /-/healthy is 200 throughout."""
    before = await served.get("/-/ready")
    assert before.status_code == 503
    assert before.text == "Not ready: the first poll round is not done.\n"
    assert (await served.get("/-/healthy")).status_code == 200
    await served.exporter.poll()
    assert (await served.get("/-/ready")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("served", ["poll", "probe"], indirect=True)
async def test_metrics_carry_build_info_process_and_platform(served: Served) -> None:
    """/metrics: memcachier_exporter_build_info{version}, process_*, python_info, probe counts."""
    response = await served.get("/metrics")
    assert response.status_code == 200
    samples = parse(response.text)
    names = {name for name, _ in samples}
    assert value(samples, "memcachier_exporter_build_info", version=__version__) == 1
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert any(name == "python_info" for name in names)
    assert value(samples, "memcachier_exporter_probes_in_flight") == 0
    # Probe mode polls nothing: no cache series on /metrics.
    if served.exporter.mode == "probe":
        assert not any(name.startswith(("memcached_", "memcachier_up")) for name in names)


@pytest.mark.anyio
async def test_the_landing_page_links_every_route(served: Served) -> None:
    """/ is an HTML page linking /metrics, a probe of a configured cache, /sd and the health routes."""
    response = await served.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for href in ("/metrics", "/probe?cache=web", "/sd", "/-/healthy", "/-/ready"):
        assert f'href="{href}"' in response.text
    assert "probe mode" in response.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path", ["/nope", "/metrics/", "/probe/web", "/sd.json", "/-/", "/index.html"]
)
async def test_any_other_path_is_a_404(served: Served, path: str) -> None:
    """Only the listed routes exist: anything else is 404 with the list."""
    response = await served.get(path)
    assert response.status_code == 404
    assert response.text.startswith("Not found. Routes: /, /metrics, /probe?cache=NAME, /sd")


# --- sharding ----------------------------------------------------------------------


def test_shard_of_is_prometheus_hashmod() -> None:
    """shard_of: MD5's last 8 bytes, big-endian, modulo N; every name in one shard.

    The values are pinned; tests/test_prometheus_scaling.py checks the same
    function against a real Prometheus' hashmod split of 200 caches.
    """
    assert [shard_of(f"cache-{i}", 2) for i in range(8)] == [1, 1, 0, 0, 0, 0, 1, 1]
    assert [shard_of(f"cache-{i}", 3) for i in range(8)] == [2, 0, 0, 0, 2, 0, 1, 2]
    assert shard_of("web", 7) == int.from_bytes(hashlib.md5(b"web").digest()[8:], "big") % 7
    names = [f"c{i}" for i in range(200)]
    for n in (1, 2, 3, 5):
        assert {shard_of(name, n) for name in names} == set(range(n))


@pytest.mark.parametrize(("text", "parsed"), [("0/1", (0, 1)), ("1/2", (1, 2)), ("3/4", (3, 4))])
def test_parse_shard_accepts_i_of_n(text: str, parsed: tuple[int, int]) -> None:
    """--shard I/N with 0 <= I < N."""
    assert parse_shard(text) == parsed


@pytest.mark.parametrize("text", ["1", "2/2", "-1/2", "a/b", "1/0", "0/", "/2", "1.0/2"])
def test_parse_shard_refuses_anything_else(text: str) -> None:
    """Anything but I/N with 0 <= I < N is refused with a reason."""
    with pytest.raises(ValueError, match=r"I/N|below N"):
        parse_shard(text)


@pytest.mark.anyio
async def test_a_poll_mode_shard_polls_its_caches_only() -> None:
    """shard=(i, n): each cache is polled by exactly one of the n replicas; /sd lists them all."""
    emu = Emulator(servers=None, history_interval=3600)
    clients = []
    for i in range(12):
        credential = emu.add_cache(1).add_credential(primary=True)
        api = AsyncAnalytics(
            credential.sasl_username, credential.sasl_password, transport=emu.transport()
        )
        clients.append((f"cache-{i}", api))
    polled: list[str] = []
    for index in range(3):
        exporter = Exporter(clients, interval=60, shard=(index, 3))
        await exporter.poll()
        view = exporter.state.view()
        assert all(shard_of(name, 3) == index for name in view.caches)
        assert all(view.samples[name].up for name in view.caches)
        polled += view.caches
        assert len(exporter.caches) == 12
    assert sorted(polled) == sorted(name for name, _ in clients)
    assert emu.calls["stats"] == 12
    for _, api in clients:
        await api.aclose()
    emu.close()


def test_sd_payload_is_valid_json_for_names_needing_escapes() -> None:
    """Names with quotes, slashes or non-ASCII come out of /sd as valid JSON, unchanged."""
    names = ['we"b', "a/b", "café"]
    exporter = Exporter([(name, object()) for name in names], mode="probe")  # type: ignore[misc]

    async def sd() -> Any:
        transport = httpx.ASGITransport(app=exporter.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as http:
            return (await http.get("/sd")).json()

    assert [group["labels"]["cache"] for group in anyio.run(sd)] == names
