"""One road: every request of every call goes through ``send()`` of ``api.http_client``.

So whatever a user sets on that client (headers, params, cookies, auth,
event hooks) reaches the wire, and whatever hooks into httpx (respx with
either mocker, OpenTelemetry's ``instrument_client``, a patch of
``httpx.AsyncClient.send``) sees every request, on both engines; and the
SDK's own client keeps no cookie a server sets, so in a fan-out one cache's
cookie never reaches another cache's request.

A loopback HTTP/1.1 server records each raw request (and sets a cookie when
asked); every test runs on asyncio and trio, the aiohttp engine on asyncio.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import respx

from memcachier_async import AsyncAnalytics, CacheCredentials, MemcachierError, RetryPolicy, fan_out

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "samples"
BODIES = {
    b"GET /api/v1/14/stats": (SAMPLES / "stats_reference.json").read_bytes(),
    b"PATCH /api/v1/14/credentials/bob": (SAMPLES / "capabilities.json").read_bytes(),
    b"POST /api/v1/14/credentials": (SAMPLES / "credential_created.json").read_bytes(),
}


class Recorder:
    """Records raw requests; answers each with a sample body (and a cookie, when asked)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.set_cookie: bytes | None = None
        self.port = 0

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        buffer = b""
        try:
            async with stream:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buffer) < length:
                        buffer += await stream.receive()
                    body, buffer = buffer[:length], buffer[length:]
                    self.requests.append(head + b"\r\n\r\n" + body)
                    await stream.send(self.reply(head))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def reply(self, head: bytes) -> bytes:
        method, target, _ = head.split(b"\r\n")[0].split(b" ")
        key = method + b" " + target.split(b"?")[0]
        body = BODIES.get(key, b"{}")
        extra = b"" if self.set_cookie is None else b"Set-Cookie: " + self.set_cookie + b"\r\n"
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + extra
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )


@asynccontextmanager
async def serving() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    recorder.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, recorder.handle)
        yield recorder
        tg.cancel_scope.cancel()


Setup = Callable[[AsyncAnalytics, Recorder], None]


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("aiohttp runs on asyncio only")
    return str(request.param)


def _api(server: Recorder, backend: str, username: str = "user") -> AsyncAnalytics:
    """A client of the recording server on ``backend``, without retries."""
    return AsyncAnalytics(
        username,
        "pw",
        cache_id=14,
        base_url=f"http://127.0.0.1:{server.port}/api/v1",
        retry=RetryPolicy.disabled(),
        http_backend=backend,  # type: ignore[arg-type]
    )


async def calls(api: AsyncAnalytics) -> list[str]:
    """A few calls of each kind: GET, PATCH with a body, POST, DELETE, GET."""
    outcomes: list[str] = []
    for call in (
        api.stats,
        lambda: api.update_credential(
            "bob", write_capability=True, flush_capability=False, api_capability=True
        ),
        api.create_credential,
        lambda: api.delete_credential("bob"),
        api.stats,
    ):
        try:
            outcomes.append(type(await call()).__name__)
        except MemcachierError as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


def heads(server: Recorder) -> list[bytes]:
    return [request.partition(b"\r\n\r\n")[0].lower() for request in server.requests]


def client_header(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.headers["X-Trace"] = "abc"


def client_params(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.params = {"tenant": "t1"}


def client_cookie(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.cookies.set("sticky", "node-1", domain="127.0.0.1")


def client_auth(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.auth = httpx.BasicAuth("someone", "else")


def request_hook(api: AsyncAnalytics, server: Recorder) -> None:
    async def hook(request: httpx.Request) -> None:
        request.headers["X-Hook"] = "1"

    api.http_client.event_hooks["request"].append(hook)


SOMEONE = base64.b64encode(b"someone:else")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (client_header, b"\r\nx-trace: abc"),
        (client_params, b"?tenant=t1 http/1.1"),
        (client_cookie, b"\r\ncookie: sticky=node-1"),
        (client_auth, b"\r\nauthorization: basic " + SOMEONE.lower()),
        (request_hook, b"\r\nx-hook: 1"),
    ],
)
async def test_what_the_user_sets_on_http_client_reaches_every_request(
    setup: Setup, expected: bytes, backend: str
) -> None:
    """A header, params, a cookie, auth or a request hook set on api.http_client is
    on the wire in every request of every kind of call, on both engines."""
    async with serving() as server, _api(server, backend) as api:
        setup(api, server)
        outcomes = await calls(api)
    assert len(server.requests) == 5
    assert all(expected in head for head in heads(server)), heads(server)
    assert outcomes[0] == "Stats"


async def test_a_cookie_the_server_sets_is_not_kept(backend: str) -> None:
    """A load balancer's Set-Cookie is not stored: no later request carries a Cookie."""
    async with serving() as server:
        server.set_cookie = b"lb=backend-2; Path=/"
        async with _api(server, backend) as api:
            assert await calls(api) == [
                "Stats",
                "Capabilities",
                "NewCredential",
                "NoneType",
                "Stats",
            ]
            assert len(api.http_client.cookies) == 0
    assert len(server.requests) == 5
    assert not any(b"\r\ncookie:" in head for head in heads(server))


async def test_no_cache_s_cookie_reaches_another_cache_in_a_fan_out(backend: str) -> None:
    """fan_out over four credential sets on one shared client, a server setting a
    cookie on every answer: no request carries a Cookie header."""
    async with serving() as server:
        server.set_cookie = b"session=tenant-secret; Path=/"
        targets = [CacheCredentials(f"user{i}", "pw", cache_id=14) for i in range(4)]
        for _ in range(2):
            async with fan_out(
                targets,
                AsyncAnalytics.stats,
                base_url=f"http://127.0.0.1:{server.port}/api/v1",
                http_backend=backend,  # type: ignore[arg-type]
                concurrency=2,
            ) as results:
                assert [r.ok async for r in results] == [True] * 4
    assert len(server.requests) == 8
    assert not any(b"\r\ncookie:" in head for head in heads(server))


async def test_an_event_hook_sees_every_request_before_and_after_a_set_cookie(
    backend: str,
) -> None:
    """Request and response hooks on api.http_client fire once per request, also
    after the server set a cookie (which once moved calls to another road)."""
    seen: list[str] = []

    async def on_request(request: httpx.Request) -> None:
        seen.append(f"> {request.method} {request.url.path}")

    async def on_response(response: httpx.Response) -> None:
        seen.append(f"< {response.status_code}")

    async with serving() as server, _api(server, backend) as api:
        api.http_client.event_hooks["request"].append(on_request)
        api.http_client.event_hooks["response"].append(on_response)
        await api.stats()
        server.set_cookie = b"lb=backend-2; Path=/"
        await api.stats()
        await api.create_credential()
        await api.stats()
    assert seen == [
        "> GET /api/v1/14/stats",
        "< 200",
        "> GET /api/v1/14/stats",
        "< 200",
        "> POST /api/v1/14/credentials",
        "< 200",
        "> GET /api/v1/14/stats",
        "< 200",
    ]
    assert len(server.requests) == 4


async def test_a_patch_of_async_client_send_sees_every_call(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How tracing and error-monitoring integrations hook httpx: a wrapper around
    httpx.AsyncClient.send sees each request, for the client and for a fan-out."""
    sent: list[str] = []
    real = httpx.AsyncClient.send

    async def send(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        return await real(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    async with serving() as server:
        async with _api(server, backend) as api:
            await calls(api)
        async with fan_out(
            [CacheCredentials(f"u{i}", "pw", cache_id=14) for i in range(3)],
            AsyncAnalytics.stats,
            base_url=f"http://127.0.0.1:{server.port}/api/v1",
            http_backend=backend,  # type: ignore[arg-type]
        ) as results:
            assert [r.ok async for r in results] == [True] * 3
    assert sent == [
        "GET /api/v1/14/stats",
        "PATCH /api/v1/14/credentials/bob",
        "POST /api/v1/14/credentials",
        "DELETE /api/v1/14/credentials/primary/bob",
        "GET /api/v1/14/stats",
        *["GET /api/v1/14/stats"] * 3,
    ]
    assert len(server.requests) == 8


@pytest.mark.parametrize("using", ["httpcore", "httpx"])
async def test_respx_sees_every_call_with_either_mocker(using: str) -> None:
    """respx.mock(using="httpcore") and using="httpx" both answer every call of the
    default engine: login, a GET, a POST; nothing reaches a socket."""
    base = "https://analytics.memcachier.com/api/v1"
    with respx.mock(using=using, assert_all_called=True) as mock:
        login = mock.get(f"{base}/login").respond(json={"cache_id": 14})
        stats = mock.get(f"{base}/14/stats").respond(content=BODIES[b"GET /api/v1/14/stats"])
        create = mock.post(f"{base}/14/credentials").respond(
            content=BODIES[b"POST /api/v1/14/credentials"]
        )
        async with AsyncAnalytics("user", "pw") as api:
            await api.stats()
            await api.stats()
            await api.create_credential()
    assert (login.call_count, stats.call_count, create.call_count) == (1, 2, 1)
