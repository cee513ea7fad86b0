"""The emulator over real TCP: what a client sees on the socket."""

from __future__ import annotations

import socket

import httpx
import pytest

from memcachier_async.testing import Emulator, FaultPlan

pytestmark = pytest.mark.anyio


async def test_serve_answers_on_loopback() -> None:
    """serve() listens on a free loopback port and answers the API under /api/v1."""
    emulator = Emulator()
    async with emulator.serve() as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api/v1")
        async with httpx.AsyncClient(auth=(emulator.username, emulator.password)) as client:
            response = await client.get(base_url + "/login")
    assert response.json() == {"cache_id": 1561}
    assert not emulator.running  # the sampler serve() started is stopped


async def test_serve_on_ipv6_loopback() -> None:
    """serve("::1") gives a bracketed IPv6 base URL that works."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    emulator = Emulator()
    try:
        serving = emulator.serve("::1")
        base_url = await serving.__aenter__()
    except OSError:
        pytest.skip("IPv6 loopback is not available here")
    try:
        assert base_url.startswith("http://[::1]:")
        async with httpx.AsyncClient(auth=(emulator.username, emulator.password)) as client:
            assert (await client.get(base_url + "/login")).status_code == 200
    finally:
        await serving.__aexit__(None, None, None)


async def test_reset_is_a_real_connection_reset() -> None:
    """A reset fault resets the TCP connection (ECONNRESET), and the call is not carried out."""
    emulator = Emulator(faults=FaultPlan().script("create_credential", "reset"))
    async with (
        emulator.serve() as base_url,
        httpx.AsyncClient(auth=(emulator.username, emulator.password)) as client,
    ):
        with pytest.raises(httpx.ReadError):
            await client.post(base_url + "/1561/credentials")
        # The server keeps serving other connections.
        assert (await client.get(base_url + "/login")).status_code == 200
    assert len(emulator.cache.credentials) == 1


async def test_act_then_drop_closes_without_an_answer() -> None:
    """act_then_drop creates the credential, then closes the connection before answering."""
    emulator = Emulator(faults=FaultPlan().script("create_credential", "act_then_drop"))
    async with (
        emulator.serve() as base_url,
        httpx.AsyncClient(auth=(emulator.username, emulator.password)) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(base_url + "/1561/credentials")
    assert len(emulator.cache.credentials) == 2


async def test_a_port_in_use_is_reported() -> None:
    """serve() on a port that is taken raises OSError at once."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            async with Emulator().serve(port=port):
                pass  # pragma: no cover - never reached


async def test_drop_outside_our_server_fails_the_request() -> None:
    """Mounted under another ASGI server, a drop fault cannot reach the socket: it raises."""
    from memcachier_async._emulator._server import build_app

    emulator = Emulator(faults=FaultPlan().script("login", "reset"))
    app = build_app(emulator, lambda client, reset: False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, auth=(emulator.username, emulator.password)
    ) as client:
        with pytest.raises(ConnectionAbortedError):
            await client.get("http://testserver/api/v1/login")
