"""The emulator's parts: fault plans, simulated servers, traffic, history, persistence,
and the SDK against it in process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import pytest

from memcachier_async import (
    AuthenticationError,
    DecodeError,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
)
from memcachier_async.testing import (
    FAULT_KINDS,
    Emulator,
    FaultPlan,
    Faults,
    MemcachedServer,
    SimulatedServer,
    StatsSource,
    Traffic,
)

# --- FaultPlan ------------------------------------------------------------------


def _kinds(plan: FaultPlan, endpoint: str, n: int) -> list[str | None]:
    return [plan.decide(endpoint).kind for _ in range(n)]


def test_same_seed_same_faults() -> None:
    """Two plans with one seed serve the same faults in the same order."""
    rates = Faults(server_error=0.2, reset=0.2, rate_limit=0.1)
    first = _kinds(FaultPlan(seed=3, stats=rates), "stats", 200)
    second = _kinds(FaultPlan(seed=3, stats=rates), "stats", 200)
    other = _kinds(FaultPlan(seed=4, stats=rates), "stats", 200)
    assert first == second
    assert first != other


def test_each_endpoint_has_its_own_stream() -> None:
    """Calls of other endpoints in between do not change an endpoint's faults."""
    rates = Faults(server_error=0.5)
    alone = _kinds(FaultPlan(seed=1, default=rates), "stats", 50)
    mixed_plan = FaultPlan(seed=1, default=rates)
    mixed = []
    for _ in range(50):
        mixed_plan.decide("history")
        mixed.append(mixed_plan.decide("stats").kind)
    assert mixed == alone


def test_rates_are_honoured_and_counted() -> None:
    """Over many calls each kind appears at about its rate, and injected counts them."""
    plan = FaultPlan(seed=9, stats=Faults.transient(0.3))
    kinds = _kinds(plan, "stats", 10_000)
    faulty = sum(k is not None for k in kinds)
    assert 2_800 < faulty < 3_200
    assert set(kinds) - {None} == {
        "server_error",
        "bad_gateway",
        "unavailable",
        "rate_limit",
        "reset",
    }
    assert plan.count() == faulty
    assert plan.count("reset", "stats") == kinds.count("reset")


def test_scripted_faults_come_first() -> None:
    """Scripted faults are served in order before random draws; None means no fault."""
    plan = FaultPlan().script("flush", "partial", None, "server_error")
    assert _kinds(plan, "flush", 4) == ["partial", None, "server_error", None]


def test_latency_is_independent_of_kinds() -> None:
    """latency adds a delay to calls whatever their fault."""
    plan = FaultPlan(stats=Faults(latency=1.0, delay=0.2, server_error=1.0))
    fault = plan.decide("stats")
    assert (fault.kind, fault.delay) == ("server_error", 0.2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Faults(server_error=1.5), "between 0 and 1"),
        (lambda: Faults(server_error=0.6, reset=0.6), "add up"),
        (lambda: FaultPlan(nope=Faults()), "unknown endpoint"),
        (lambda: FaultPlan(login=Faults(partial=0.1)), "stats and flush"),
        (lambda: FaultPlan(flush=Faults(malformed=0.1)), "empty body"),
        (lambda: FaultPlan().script("stats", "explode"), "unknown fault kind"),
        (lambda: FaultPlan(retry_after=-1), "negative"),
    ],
)
def test_bad_plans_are_refused(make: object, message: str) -> None:
    """Impossible rates, endpoints and kinds raise ValueError with a clear message."""
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_transient_spreads_the_rate() -> None:
    """Faults.transient(r) splits r over 500, 502, 503, 429 and resets."""
    rates = Faults.transient(0.3).rates()
    assert set(rates) == {"server_error", "bad_gateway", "unavailable", "rate_limit", "reset"}
    assert sum(rates.values()) == pytest.approx(0.3)
    assert "reset" not in Faults.transient(0.3, over_tcp=False).rates()
    assert set(FAULT_KINDS) >= set(rates)


# --- simulated servers and traffic ------------------------------------------------


def test_simulated_server_counts_like_memcached() -> None:
    """Gets, sets, deletes and touches move the counters memcached has."""
    server = SimulatedServer("a.test:1")
    server.set("k", 100)
    assert server.get("k")
    assert not server.get("missing")
    assert server.touch("k")
    assert not server.touch("missing")
    assert server.delete("k")
    assert not server.delete("k")
    stats = server.stats(1_700_000_000.9)
    assert stats["cmd_get"] == stats["get_hits"] + stats["get_misses"] == 2
    assert stats["cmd_touch"] == 2
    assert stats["touch_hits"] == 1
    assert (stats["delete_hits"], stats["delete_misses"], stats["cmd_delete"]) == (1, 1, 2)
    assert (stats["cmd_set"], stats["total_items"], stats["curr_items"]) == (1, 1, 0)
    assert stats["time"] == 1_700_000_000


def test_simulated_server_evicts_when_full() -> None:
    """Sets past limit_maxbytes evict the least recently used items."""
    server = SimulatedServer("a.test:1", limit_maxbytes=10_000)
    for i in range(40):
        server.set(f"k{i}", 1_000)
    stats = server.stats(0)
    assert stats["evictions"] > 0
    assert stats["bytes"] <= 10_000
    assert stats["curr_items"] + stats["evictions"] == 40
    assert not server.get("k0")
    assert server.get("k39")


def test_simulated_flush_is_lazy() -> None:
    """After a flush, gets miss, but memory is reclaimed only as keys are touched."""
    server = SimulatedServer("a.test:1")
    server.set("a", 10)
    server.set("b", 10)
    server.flush()
    assert server.stats(0)["curr_items"] == 2
    assert not server.get("a")
    assert server.stats(0)["curr_items"] == 1


def test_traffic_is_seeded_and_realistic() -> None:
    """The same seed gives the same counters; a small memory evicts; hits and misses both occur."""

    def run(seed: int) -> list[dict[str, int]]:
        servers = [SimulatedServer(f"s{i}.test:1", limit_maxbytes=200_000) for i in range(3)]
        Traffic(servers, seed=seed).run(5_000)
        return [s.stats(0) for s in servers]

    first = run(1)
    assert first == run(1)
    assert first != run(2)
    total = {k: sum(s[k] for s in first) for k in first[0]}
    assert total["get_hits"] > 0
    assert total["get_misses"] > 0
    assert total["evictions"] > 0
    assert total["cmd_touch"] > 0
    assert total["cmd_delete"] > 0
    assert all(s["cmd_get"] > 0 for s in first)


def test_stats_sources_satisfy_the_protocol() -> None:
    """Both sources are StatsSource; a string server is a real memcached one."""
    emu = Emulator(servers=["127.0.0.1:1"])
    assert isinstance(emu.cache.servers[0], MemcachedServer)
    assert isinstance(SimulatedServer("a.test:1"), StatsSource)
    with pytest.raises(ValueError, match="host:port"):
        SimulatedServer("no-port")


# --- history ------------------------------------------------------------------


def test_history_is_bounded() -> None:
    """Only the last history_size samples are kept."""
    emu = Emulator(history_size=3)
    for t in range(5):
        emu.sample(now=1_000 + t)
    stamps = [r["timestamp"] for r in emu.cache.history()]
    assert stamps == [s for s in ("1002000", "1003000", "1004000") for _ in range(3)]


def test_history_can_drop_ports() -> None:
    """history_ports=False sends host names without ports, as some records do."""
    emu = Emulator(history_ports=False)
    emu.sample()
    assert {r["server"] for r in emu.cache.history()} == {
        s.name.rsplit(":", 1)[0] for s in emu.cache.servers
    }


def test_backfill_spaces_samples_by_the_interval() -> None:
    """backfill(n) records n samples history_interval apart, ending now, with traffic between."""
    emu = Emulator(history_interval=60, clock=lambda: 1_700_000_000.0)
    emu.backfill(4, ops_per_sample=200)
    history = emu.cache.history()
    stamps = sorted({int(r["timestamp"]) for r in history})
    assert stamps == [1_700_000_000_000 - 60_000 * i for i in (3, 2, 1, 0)]
    gets = [r["stats"]["cmd_get"] for r in history if r["server"] == emu.cache.servers[0].name]
    assert gets == sorted(gets)
    assert gets[0] < gets[-1]


def test_a_down_server_is_missing_from_its_sample() -> None:
    """A server that does not answer is left out of that sample only."""
    emu = Emulator()
    down = emu.cache.servers[0]
    assert isinstance(down, SimulatedServer)
    down.up = False
    emu.sample()
    assert len(emu.cache.history()) == 2


def _wait_for(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_running_emulator_samples_and_drives_traffic() -> None:
    """While running, history is sampled at the interval and background traffic flows."""
    emu = Emulator(history_interval=0.02, traffic=5_000)
    with emu:
        assert emu.running
        assert _wait_for(lambda: len({r["timestamp"] for r in emu.cache.history()}) >= 3)
    assert not emu.running
    assert sum(r["stats"]["cmd_get"] for r in emu.cache.history()[-3:]) > 0
    assert not any(t.name == "memcachier-emulator-ticker" for t in threading.enumerate())


def test_bad_emulator_settings_are_refused() -> None:
    """Non-positive intervals and sizes raise ValueError."""
    for kwargs in ({"history_interval": 0}, {"history_size": 0}, {"traffic": -1}):
        with pytest.raises(ValueError, match="must"):
            Emulator(**kwargs)  # type: ignore[arg-type]


# --- caches and credentials --------------------------------------------------------


def test_caches_and_credentials_are_managed_in_python() -> None:
    """add_cache and add_credential build state; duplicates are refused; passwords stay out
    of repr."""
    emu = Emulator(username="MAIN", password="main-secret")
    assert (emu.username, emu.password) == ("MAIN", "main-secret")
    second = emu.add_cache(2)
    assert second.cache_id == 1562
    assert second.memcachier_id == 12
    credential = second.add_credential("TWO", "two-secret", flush=False)
    assert "two-secret" not in repr(credential)
    with pytest.raises(ValueError, match="exists"):
        second.add_credential("MAIN")
    with pytest.raises(ValueError, match="exists"):
        emu.add_cache(cache_id=1562)
    second.remove_credential("TWO")
    with pytest.raises(KeyError):
        second.credential("TWO")
    assert Emulator(servers=None).caches == []


def test_set_servers_switches_the_cluster() -> None:
    """set_servers replaces the cache's servers: stats keys change."""
    emu = Emulator()
    emu.cache.set_servers([SimulatedServer("new.test:1")])
    emu.sample()
    assert [r["server"] for r in emu.cache.history()] == ["new.test:1"]


# --- persistence -----------------------------------------------------------------


@pytest.mark.anyio
async def test_sqlite_keeps_caches_and_credentials(tmp_path: Path) -> None:
    """A credential created through the API and a deactivation survive a restart."""
    db = tmp_path / "emulator.sqlite"
    first = Emulator(database=db, username="KEEP", password="keep-secret")
    async with first.client() as api:
        created = await api.create_credential()
        await api.update_credential(created, flush_capability=False)
    first.add_cache(1).active = False
    first.close()

    second = Emulator(database=db, username="IGNORED")
    assert [c.cache_id for c in second.caches] == [1561, 1562]
    assert second.caches[1].active is False
    assert second.username == "KEEP"
    restored = second.cache.credential(created.sasl_username)
    assert restored.flush_capability is False
    async with second.client(restored) as api:
        assert await api.login() == 1561
        third = await api.create_credential()
    assert third.sasl_username in [c.sasl_username for c in Emulator(database=db).cache.credentials]


@pytest.mark.anyio
async def test_sqlite_forgets_deleted_credentials(tmp_path: Path) -> None:
    """A credential deleted through the API is gone after a restart."""
    db = tmp_path / "emulator.sqlite"
    emu = Emulator(database=db)
    extra = emu.cache.add_credential("GONE")
    async with emu.client() as api:
        await api.delete_credential(extra.sasl_username)
    assert [c.sasl_username for c in Emulator(database=db).cache.credentials] == [emu.username]


# --- the SDK against the emulator, in process --------------------------------------


@pytest.mark.anyio
async def test_sdk_reads_everything_in_process() -> None:
    """The public client logs in, reads stats and history and manages credentials."""
    emu = Emulator(clock=lambda: 1_700_000_000.0)
    emu.backfill(3)
    async with emu.client() as api:
        assert await api.login() == 1561
        stats = await api.stats()
        assert set(stats) == {s.name for s in emu.cache.servers}
        assert len(await api.history()) == 9
        created = await api.create_credential()
        assert (await api.promote_credential(created)).primary
        assert len(await api.list_credentials()) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ("wrong-password", AuthenticationError),
        ("no-api", PermissionDeniedError),
        ("inactive", NotFoundError),
        ("server-error", ServerError),
        ("malformed", DecodeError),
    ],
)
async def test_sdk_maps_emulator_failures(setup: str, error: type[Exception]) -> None:
    """Each failure the emulator serves reaches the SDK caller as its documented exception."""
    emu = Emulator()
    credential = emu.credential
    if setup == "wrong-password":
        credential = attrs.evolve(credential, sasl_password="wrong")
    elif setup == "no-api":
        credential = emu.cache.add_credential(api=False)
    elif setup == "inactive":
        emu.cache.active = False
    elif setup == "server-error":
        emu.faults = FaultPlan().script("login", "server_error")
    else:
        emu.faults = FaultPlan().script("login", "malformed")
    async with emu.client(credential, retry=RetryPolicy.disabled()) as api:
        with pytest.raises(error):
            await api.login()


@pytest.mark.anyio
async def test_the_pytest_fixture(memcachier_emulator: Emulator) -> None:
    """The memcachier_emulator fixture gives a ready emulator with stats and one sample."""
    async with memcachier_emulator.client() as api:
        assert len(await api.stats()) == 3
        assert len(await api.history()) == 3


# --- the public surface ------------------------------------------------------------


def test_public_surface_of_testing() -> None:
    """memcachier_async.testing exports exactly these names, sorted."""
    import memcachier_async.testing as testing

    assert testing.__all__ == sorted(testing.__all__, key=lambda n: (not n.isupper(), n))
    assert set(testing.__all__) == {
        "FAULT_KINDS",
        "STATS_FIELDS",
        "EmulatedCache",
        "EmulatedCredential",
        "Emulator",
        "Fault",
        "FaultPlan",
        "Faults",
        "MemcachedServer",
        "MockAPI",
        "RequestRecord",
        "ServerUnavailable",
        "SimulatedServer",
        "StatsSource",
        "Traffic",
        "instant_retries",
        "mock_api",
    }


def test_in_process_use_imports_no_server_dependency() -> None:
    """The in-process emulator needs no extra: Starlette, uvicorn and pymemcache load lazily."""
    code = (
        "import sys, anyio\n"
        "from memcachier_async.testing import Emulator\n"
        "async def main():\n"
        "    async with Emulator().client() as api:\n"
        "        await api.stats()\n"
        "anyio.run(main)\n"
        "print(sorted({'starlette', 'uvicorn', 'pymemcache'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
