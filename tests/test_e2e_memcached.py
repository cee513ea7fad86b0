"""End to end over real sockets: three memcached processes, the emulator on
loopback TCP, and the SDK.

Skipped when the memcached binary is missing, unless
``MEMCACHIER_REQUIRE_MEMCACHED=1`` (CI sets it), which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from memcachier_async import AsyncAnalytics, PermissionDeniedError, RetryPolicy, ServerError
from memcachier_async.testing import EmulatedCredential, Emulator

pytestmark = pytest.mark.memcached

MEMCACHED = shutil.which("memcached")
SERVERS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"memcached on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"memcached on port {port} did not start")


class Memcached:
    """One memcached process on a free loopback port."""

    def __init__(self) -> None:
        assert MEMCACHED is not None
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # memcached refuses to run as root unless told which user to be.
        user = ["-u", "root"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [MEMCACHED, *user, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        # SIGKILL: nothing to keep, and a graceful stop takes memcached ~0.7 s.
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def memcached() -> Iterator[list[Memcached]]:
    """Three fresh memcached processes, stopped after the test."""
    if MEMCACHED is None:
        message = "the memcached binary is not installed"
        if os.environ.get("MEMCACHIER_REQUIRE_MEMCACHED") == "1":
            pytest.fail(message + " (MEMCACHIER_REQUIRE_MEMCACHED=1)")
        pytest.skip(message)
    servers = [Memcached() for _ in range(SERVERS)]
    try:
        for server in servers:
            _wait_until_listening(server.port, server.process)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def emulator(memcached: list[Memcached]) -> Iterator[Emulator]:
    emu = Emulator(servers=[m.address for m in memcached], history_interval=0.05)
    yield emu
    emu.close()


@asynccontextmanager
async def sdk(
    emulator: Emulator, credential: EmulatedCredential | None = None, **kwargs: Any
) -> AsyncIterator[AsyncAnalytics]:
    """The SDK, logged in as ``credential`` (default: the primary), against the emulator on TCP."""
    credential = credential or emulator.credential
    async with (
        emulator.serve() as base_url,
        AsyncAnalytics(
            credential.sasl_username, credential.sasl_password, base_url=base_url, **kwargs
        ) as api,
    ):
        yield api


def _hash_client(memcached: list[Memcached]) -> HashClient:
    return HashClient([("127.0.0.1", m.port) for m in memcached], connect_timeout=2, timeout=2)


@pytest.mark.anyio
async def test_counters_sum_to_the_traffic_driven(
    memcached: list[Memcached], emulator: Emulator
) -> None:
    """100 sets, 60 hits and 40 misses through pymemcache show up exactly in the SDK's stats."""
    client = _hash_client(memcached)
    for i in range(100):
        assert client.set(f"key-{i}", b"x" * 100, noreply=False)
    for i in range(60):
        assert client.get(f"key-{i}") == b"x" * 100
    for i in range(40):
        assert client.get(f"absent-{i}") is None
    client.close()

    async with sdk(emulator) as api:
        stats = await api.stats()

    assert sorted(stats) == sorted(m.address for m in memcached)
    assert sum(s.cmd_set for s in stats.values()) == 100
    assert sum(s.get_hits for s in stats.values()) == 60
    assert sum(s.get_misses for s in stats.values()) == 40
    assert sum(s.cmd_get for s in stats.values()) == 100
    assert sum(s.curr_items for s in stats.values()) == 100
    for server in stats.values():
        assert server.cmd_get == server.get_hits + server.get_misses
        assert server.limit_maxbytes == 16 * 1024 * 1024
    assert sum(1 for s in stats.values() if s.cmd_set) >= 2  # keys really were sharded


@pytest.mark.anyio
async def test_flush_empties_the_real_servers(
    memcached: list[Memcached], emulator: Emulator
) -> None:
    """flush() through the SDK runs flush_all on every server: every get misses afterwards."""
    client = _hash_client(memcached)
    for i in range(30):
        client.set(f"key-{i}", b"v", noreply=False)
    async with sdk(emulator) as api:
        await api.flush()
        stats = await api.stats()
    assert all(client.get(f"key-{i}") is None for i in range(30))
    client.close()
    assert [s.cmd_flush for s in stats.values()] == [1, 1, 1]


@pytest.mark.anyio
async def test_a_stopped_server_is_named_and_the_others_are_flushed(
    memcached: list[Memcached], emulator: Emulator
) -> None:
    """With one memcached down, stats and flush raise ServerError naming it; the rest flushed."""
    alive = [Client(("127.0.0.1", m.port)) for m in memcached[1:]]
    for client in alive:
        client.set("kept", b"1", noreply=False)
    memcached[0].stop()
    async with sdk(emulator, retry=RetryPolicy.disabled()) as api:
        with pytest.raises(ServerError) as stats_error:
            await api.stats()
        with pytest.raises(ServerError) as flush_error:
            await api.flush()
    assert stats_error.value.servers == (memcached[0].address,)
    assert flush_error.value.servers == (memcached[0].address,)
    for client in alive:
        assert client.get("kept") is None
        client.close()


@pytest.mark.anyio
async def test_history_samples_the_real_servers(
    memcached: list[Memcached], emulator: Emulator
) -> None:
    """Over TCP, history grows with samples of every real server, each with its own clock."""
    async with sdk(emulator) as api:
        with anyio.fail_after(10):
            # Polling the API is the point: history is only visible through it.
            while len({r.timestamp for r in await api.history()}) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        records = await api.history()
    assert {r.server for r in records} == {m.address for m in memcached}
    assert {r.memcachier_id for r in records} == {11}
    assert all(r.stats.time.year >= 2024 for r in records)


@pytest.mark.anyio
async def test_credential_lifecycle_over_tcp(emulator: Emulator) -> None:
    """Create, use, update, promote and delete a credential, end to end."""
    original = emulator.username
    async with sdk(emulator) as api:
        created = await api.create_credential()
        async with AsyncAnalytics(
            created.sasl_username, created.sasl_password, base_url=api.base_url
        ) as fresh:
            assert await fresh.login() == emulator.cache.cache_id
            assert len(await fresh.stats()) == SERVERS
        caps = await api.update_credential(created, flush_capability=False)
        assert caps.flush_capability is False
        assert caps.api_capability is True
        assert (await api.promote_credential(created)).primary
        await api.promote_credential(original)
        await api.delete_credential(created)
        names = [c.sasl_username for c in await api.list_credentials()]
    assert names == [original]


@pytest.mark.anyio
async def test_a_credential_without_api_capability_is_denied(emulator: Emulator) -> None:
    """A credential without the API capability gets PermissionDeniedError over TCP."""
    limited = emulator.cache.add_credential(api=False)
    async with sdk(emulator, limited) as api:
        with pytest.raises(PermissionDeniedError):
            await api.login()
        with pytest.raises(PermissionDeniedError):
            await api.stats()
