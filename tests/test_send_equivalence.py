"""One meaning for every send: the SDK's direct send and ``client.send`` put the same
bytes on the wire, whatever the user set on ``api.http_client``, on both backends
(the default's direct sender, and the aiohttp backend's sender that skips httpx's
models).

A loopback HTTP/1.1 server records each raw request; every scenario runs
twice on fresh clients, once as the SDK sends (direct when the client is as
the SDK made it) and once forced through ``httpx.AsyncClient.send``, and the
recorded bytes must match exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from memcachier_async import AsyncAnalytics, MemcachierError, RetryPolicy

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

SENDERS = {"httpx": "PoolSender", "aiohttp": "AiohttpSender"}


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("aiohttp runs on asyncio only")
    return str(request.param)


def _api(server: Recorder, backend: str) -> AsyncAnalytics:
    """A client of the recording server on ``backend``, without retries."""
    return AsyncAnalytics(
        "user",
        "pw",
        cache_id=14,
        base_url=f"http://127.0.0.1:{server.port}/api/v1",
        retry=RetryPolicy.disabled(),
        http_backend=backend,  # type: ignore[arg-type]
    )


async def calls(api: AsyncAnalytics) -> list[str]:
    """A few calls of each kind: GET, PATCH with a body, POST, DELETE."""
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


def nothing(api: AsyncAnalytics, server: Recorder) -> None:
    pass


def client_header(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.headers["X-Trace"] = "abc"


def client_params(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.params = {"tenant": "t1"}


def client_cookie(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.cookies.set("sticky", "node-1", domain="127.0.0.1")


def server_cookie(api: AsyncAnalytics, server: Recorder) -> None:
    server.set_cookie = b"lb=backend-2; Path=/"


def client_auth(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.auth = httpx.BasicAuth("someone", "else")


def client_timeout(api: AsyncAnalytics, server: Recorder) -> None:
    api.http_client.timeout = httpx.Timeout(7.0)


def request_hook(api: AsyncAnalytics, server: Recorder) -> None:
    async def hook(request: httpx.Request) -> None:
        request.headers["X-Hook"] = "1"

    api.http_client.event_hooks["request"].append(hook)


def response_hook(api: AsyncAnalytics, server: Recorder) -> None:
    async def hook(response: httpx.Response) -> None:
        await response.aread()

    api.http_client.event_hooks["response"].append(hook)


@pytest.mark.parametrize(
    "setup",
    [
        nothing,
        client_header,
        client_params,
        client_cookie,
        server_cookie,
        client_auth,
        client_timeout,
        request_hook,
        response_hook,
    ],
)
async def test_direct_and_client_send_put_the_same_bytes_on_the_wire(
    setup: Setup, backend: str
) -> None:
    """Same scenario, SDK send vs httpx.AsyncClient.send: identical raw requests and outcomes."""
    seen: dict[str, tuple[list[bytes], list[str], dict[str, str]]] = {}
    async with serving() as server:
        for mode in ("sdk", "client.send"):
            server.requests, server.set_cookie = [], None
            api = _api(server, backend)
            async with api:
                assert type(api._direct).__name__ == SENDERS[backend]
                if mode == "client.send":
                    api._direct = None  # the reference: every call through client.send
                setup(api, server)
                outcomes = await calls(api)
                cookies = dict(api.http_client.cookies)
            seen[mode] = (server.requests, outcomes, cookies)
    assert seen["sdk"][0] == seen["client.send"][0]
    assert seen["sdk"][1:] == seen["client.send"][1:]
    assert len(seen["sdk"][0]) == 5


async def test_a_cookie_the_server_sets_is_sent_back(backend: str) -> None:
    """A load balancer's Set-Cookie is stored on the client and sent with the next call."""
    async with serving() as server:
        server.set_cookie = b"lb=backend-2; Path=/"
        async with _api(server, backend) as api:
            await api.stats()
            await api.stats()
            assert api.http_client.cookies.get("lb") == "backend-2"
    assert b"cookie: lb=backend-2" not in server.requests[0].lower()
    assert b"cookie: lb=backend-2" in server.requests[1].lower()


async def test_a_header_removed_from_the_client_is_not_added_back(backend: str) -> None:
    """A request of the user's own on api.http_client, after Accept-Encoding and
    User-Agent were deleted from its headers, carries neither, on either backend
    (aiohttp adds its own unless told not to); the SDK's calls name all three."""
    async with serving() as server, _api(server, backend) as api:
        await api.stats()
        del api.http_client.headers["Accept-Encoding"]
        del api.http_client.headers["User-Agent"]
        await api.http_client.get(f"http://127.0.0.1:{server.port}/api/v1/14/stats")
    ours, theirs = (request.lower() for request in server.requests)
    assert b"\r\naccept-encoding: gzip, deflate\r\n" in ours
    assert b"\r\nuser-agent: memcachier-async/" in ours
    assert b"accept-encoding" not in theirs
    assert b"user-agent" not in theirs
    assert b"\r\naccept: */*\r\n" in theirs


def test_credentials_in_the_base_url_are_refused() -> None:
    """user:password@ in base_url is a ValueError: credentials go in username and password."""
    with pytest.raises(ValueError, match="credentials"):
        AsyncAnalytics(
            "user", "pw", base_url="https://other:secret@analytics.memcachier.com/api/v1"
        )
