"""Size limits enforced while reading: bombs and endless bodies stop at the limit, on every backend.

A small loopback server (``tests/_limits_server.py``) sends what a hostile
or broken server would. The done-when figures of issue 11 (a 1,000 MiB
gzip bomb and an endless body against the default 64 MiB limit: the
limit's error within the deadline, peak RSS growth below 3x the limit, no
event-loop stall over 100 ms of the loop's own work) are measured in a fresh process each
(``tests/_limits_probe.py``), so an earlier test's peak cannot hide one.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _limits_server import (
    LoopbackServer,
    MiB,
    big,
    bomb,
    echo_headers,
    endless,
    plain,
)
from docs_examples import page_code

from memcachier_async import (
    DEFAULT_MAX_RESPONSE_SIZE,
    APIError,
    AsyncAnalytics,
    AuthenticationError,
    DecodeError,
    ResponseTooLargeError,
    RetryPolicy,
    RetryTransport,
    ServerError,
)
from memcachier_async._errors import ERROR_BODY_LIMIT
from memcachier_async._transports.body import ERROR_BODY_READ_LIMIT, read_body
from memcachier_async._transports.rules import MAX_RESPONSE_SIZE_EXTENSION

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
STATS = (HERE / "samples" / "stats_two_servers.json").read_bytes()
PASSWORD = "s3cret-Pa55word-limits"
TOKEN = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
FAST_RETRY = RetryPolicy(initial_backoff=0.0, max_backoff=0.0, deadline=30.0, budget=None)


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("aiohttp runs on asyncio only")
    return str(request.param)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[LoopbackServer] = []

    def start(behaviour: Any) -> LoopbackServer:
        server = LoopbackServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def client(server: LoopbackServer, backend: str, **kwargs: Any) -> AsyncAnalytics:
    kwargs.setdefault("retry", RetryPolicy.disabled())
    return AsyncAnalytics(
        "user",
        PASSWORD,
        cache_id=1,
        base_url=server.url(),
        http_backend=backend,  # type: ignore[arg-type]
        **kwargs,
    )


# --- the done-when figures, in a process of their own ----------------------


@pytest.mark.unmeasured
@pytest.mark.parametrize(
    ("case", "http_backend", "loop"),
    [
        (case, http_backend, loop)
        for case in ("gzip-bomb", "endless")
        for http_backend, loop in (("httpx", "asyncio"), ("httpx", "trio"), ("aiohttp", "asyncio"))
    ],
)
def test_bomb_and_endless_body_stop_at_the_default_limit(
    case: str, http_backend: str, loop: str
) -> None:
    """A 1,000 MiB gzip bomb or an endless body: the limit's error before the deadline,
    RSS growth below 3x the 64 MiB limit, no event-loop stall over 100 ms of work."""
    if not Path("/proc/self/statm").exists():
        pytest.skip("measures resident memory through /proc")
    deadline = 20.0
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "_limits_probe.py"),
            case,
            http_backend,
            loop,
            "64",
            str(deadline),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] == "ResponseTooLargeError"
    assert result["limit"] == DEFAULT_MAX_RESPONSE_SIZE
    assert result["elapsed"] < deadline
    assert result["rss_growth"] < 3 * DEFAULT_MAX_RESPONSE_SIZE
    # The loop's own work between two ticks; the wall-clock gap may also hold
    # time a loaded machine gave to other processes, so it gets a wider bound.
    assert result["stall_cpu"] < 0.1
    assert result["stall"] < 0.5
    if case == "gzip-bomb":
        # Stopped at the limit: about 64 KiB of the bomb's 1 MB came over the wire.
        assert result["sent"] < 1 * MiB


# --- bombs and endless bodies, in process with a small limit --------------


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_compression_bomb_stops_at_the_limit(serve: Any, backend: str, coding: str) -> None:
    """A 100 MiB bomb against a 1 MiB limit: ResponseTooLargeError naming the limit, once."""
    server = serve(bomb(coding, mib=100))
    async with client(server, backend, max_response_size=MiB, retry=FAST_RETRY) as api:
        with pytest.raises(ResponseTooLargeError) as caught:
            await api.stats()
    error = caught.value
    assert error.limit == MiB
    assert "1,048,576 bytes" in str(error)
    assert "\x00" not in str(error)
    assert [a.outcome for a in error.attempts] == ["ResponseTooLargeError"]
    assert len(server.requests) == 1  # never retried


async def test_endless_body_stops_at_the_limit(serve: Any, backend: str) -> None:
    """A chunked body that never ends stops at the limit, body content not quoted."""
    server = serve(endless(block=b"[hostile]" * 1000))
    async with client(server, backend, max_response_size=MiB, retry=FAST_RETRY) as api:
        with pytest.raises(ResponseTooLargeError) as caught:
            await api.stats()
    assert "hostile" not in str(caught.value)
    assert len(server.requests) == 1


async def test_endless_body_stops_without_a_deadline(serve: Any, backend: str) -> None:
    """With deadline=None the size limit alone ends an endless body."""
    server = serve(endless())
    policy = RetryPolicy(max_attempts=1, deadline=None, budget=None)
    async with client(server, backend, max_response_size=MiB, retry=policy) as api:
        with pytest.raises(ResponseTooLargeError):
            await api.stats()


async def test_declared_length_past_the_limit_is_refused_unread(serve: Any, backend: str) -> None:
    """A Content-Length above the limit is refused before the body is read."""
    server = serve(plain("200 OK", b"{}", content_length=10 * 2**30))
    async with client(server, backend, max_response_size=MiB) as api:
        with pytest.raises(ResponseTooLargeError):
            await api.stats()


@pytest.mark.parametrize("size", [MiB, MiB + 1])
async def test_limit_is_exact(serve: Any, backend: str, size: int) -> None:
    """A body of exactly the limit is read; one byte more is refused."""
    body = b"[" + b" " * (size - 2) + b"]"
    server = serve(plain("200 OK", body, "Content-Type: application/json"))
    async with client(server, backend, max_response_size=MiB) as api:
        if size > MiB:
            with pytest.raises(ResponseTooLargeError):
                await api.list_credentials()
        else:
            assert await api.list_credentials() == []


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "gzip, gzip"])
async def test_compressed_bodies_still_decode(serve: Any, backend: str, coding: str) -> None:
    """gzip, zlib deflate, raw deflate and a gzip-in-gzip body decode as before."""
    data = STATS
    header = coding
    if coding == "gzip":
        data = gzip.compress(data)
    elif coding == "deflate":
        data = zlib.compress(data)
    elif coding == "raw-deflate":
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = z.compress(data) + z.flush()
        header = "deflate"
    else:
        data = gzip.compress(gzip.compress(data))
    server = serve(
        plain("200 OK", data, "Content-Type: application/json", f"Content-Encoding: {header}")
    )
    async with client(server, backend) as api:
        stats = await api.stats()
    assert len(stats) == 2


@pytest.mark.parametrize(
    ("coding", "body"),
    [("gzip", b"not gzip at all"), ("br", b"\x1b\x00"), ("gzip, gzip, gzip, gzip", b"")],
)
async def test_undecodable_success_body_is_a_decode_error(
    serve: Any, backend: str, coding: str, body: bytes
) -> None:
    """A corrupt or unsupported encoding is a DecodeError naming the endpoint, not retried."""
    server = serve(plain("200 OK", body, f"Content-Encoding: {coding}"))
    async with client(server, backend, retry=FAST_RETRY) as api:
        with pytest.raises(DecodeError) as caught:
            await api.stats()
    assert caught.value.endpoint == "stats"
    assert len(caught.value.attempts) == 1
    assert len(server.requests) == 1


def test_max_response_size_is_validated() -> None:
    """Zero, negatives, bools and floats are refused; None is an explicit choice."""
    for bad in (0, -1, True, 1.5, "1"):
        with pytest.raises(ValueError, match="max_response_size"):
            AsyncAnalytics("u", "p", max_response_size=bad)  # type: ignore[arg-type]
    AsyncAnalytics("u", "p", max_response_size=None)


async def test_the_limit_travels_with_each_request() -> None:
    """Each request carries the client's limit (the default, or None when chosen)."""
    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions.get(MAX_RESPONSE_SIZE_EXTENSION, "absent"))
        return httpx.Response(200, json=[])

    for kwargs in ({}, {"max_response_size": None}, {"max_response_size": 5}):
        transport = httpx.MockTransport(handler)
        async with AsyncAnalytics("u", "p", cache_id=1, transport=transport, **kwargs) as api:
            await api.list_credentials()
    assert seen == [DEFAULT_MAX_RESPONSE_SIZE, None, 5]


async def test_unbounded_by_choice_reads_past_a_limit() -> None:
    """max_response_size=None reads a body that a small limit refuses."""
    body = b"[" + b" " * 600_000 + b"]"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=gzip.compress(body), headers={"Content-Encoding": "gzip"}
        )

    transport = httpx.MockTransport(handler)
    async with AsyncAnalytics(
        "u", "p", cache_id=1, transport=transport, max_response_size=1000
    ) as api:
        with pytest.raises(ResponseTooLargeError):
            await api.list_credentials()
    async with AsyncAnalytics(
        "u", "p", cache_id=1, transport=transport, max_response_size=None
    ) as api:
        assert await api.list_credentials() == []


async def test_user_http_client_is_bounded_too(serve: Any, anyio_backend: str) -> None:
    """With the user's own httpx client (no SDK transport), the limit still applies."""
    server = serve(bomb("gzip", mib=100))
    async with httpx.AsyncClient() as http:
        api = AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=server.url(),
            http_client=http,
            max_response_size=MiB,
        )
        with pytest.raises(ResponseTooLargeError):
            await api.stats()


async def test_user_client_with_a_mock_transport_is_bounded() -> None:
    """A user's client whose transport hands back bytes in memory: the limit still applies."""
    body = b"[" + b" " * 2000 + b"]"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        api = AsyncAnalytics("u", "p", cache_id=1, http_client=http, max_response_size=1000)
        with pytest.raises(ResponseTooLargeError):
            await api.list_credentials()
        api = AsyncAnalytics("u", "p", cache_id=1, http_client=http, max_response_size=3000)
        assert await api.list_credentials() == []


async def test_in_memory_bomb_from_a_mock_transport_is_bounded() -> None:
    """A compressed body handed over in memory (a mock's) is inflated within the limit too."""
    bomb_body = gzip.compress(bytes(16 * MiB), compresslevel=1)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bomb_body, headers={"Content-Encoding": "gzip"})

    transport = httpx.MockTransport(handler)
    async with AsyncAnalytics(
        "u", "p", cache_id=1, transport=transport, max_response_size=MiB
    ) as api:
        with pytest.raises(ResponseTooLargeError):
            await api.stats()


async def test_retry_transport_hands_back_decoded_bodies() -> None:
    """Through RetryTransport a compressed body comes back decoded, without Content-Encoding."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=gzip.compress(b'{"a": 1}'), headers={"Content-Encoding": "gzip"}
        )

    transport = RetryTransport(httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.get("https://example.test/")
    assert response.json() == {"a": 1}
    assert "content-encoding" not in response.headers


# --- error bodies: read in part, kept short, scrubbed ------------------------


async def test_huge_error_body_is_not_downloaded_on_each_retry(serve: Any, backend: str) -> None:
    """A 500 with a 256 MiB body, retried: each attempt reads a prefix and drops the connection."""
    server = serve(big("500 Internal Server Error", 256 * MiB))
    async with client(server, backend, retry=FAST_RETRY) as api:
        with pytest.raises(ServerError) as caught:
            await api.stats()
    error = caught.value
    assert len(error.attempts) == 4 == len(server.requests)
    assert len(error.body) <= ERROR_BODY_LIMIT
    # Socket buffers hold a few MiB that the server counts as sent; nothing like 256 MiB.
    assert max(server.sent) < 32 * MiB


async def test_error_page_echoing_the_request_does_not_leak_credentials(
    serve: Any, backend: str
) -> None:
    """An error page quoting the Authorization header: no token, no password in the error."""
    server = serve(echo_headers())
    async with client(server, backend) as api:
        with pytest.raises(AuthenticationError) as caught:
            await api.stats()
    error = caught.value
    assert TOKEN.encode() in server.requests[0]
    texts = [str(error), repr(error), error.body, error.message, repr(error.args)]
    for text in texts:
        assert TOKEN not in text
        assert PASSWORD not in text
    assert "[REDACTED]" in error.body


async def test_error_body_is_cut_to_a_few_kib(serve: Any, backend: str) -> None:
    """A long error page is kept to ERROR_BODY_LIMIT characters, the message shorter still."""
    server = serve(plain("403 Forbidden", b"denied " * 20_000))
    async with client(server, backend) as api:
        with pytest.raises(APIError) as caught:
            await api.stats()
    assert caught.value.status_code == 403
    assert caught.value.body.startswith("denied denied")
    assert len(caught.value.body) == ERROR_BODY_LIMIT
    assert len(str(caught.value)) < 1000


async def test_compressed_error_bodies_decode_and_broken_ones_keep_the_status(
    serve: Any, backend: str
) -> None:
    """A gzip error page is read as text; a corrupt one still raises the status's error."""
    good = gzip.compress(b"Server error: a.example:11211,b.example:11211")
    server = serve(plain("500 Internal Server Error", good, "Content-Encoding: gzip"))
    async with client(server, backend) as api:
        with pytest.raises(ServerError) as caught:
            await api.stats()
    assert caught.value.servers == ("a.example:11211", "b.example:11211")
    broken = serve(plain("502 Bad Gateway", b"garbage", "Content-Encoding: gzip"))
    async with client(broken, backend) as api:
        with pytest.raises(ServerError) as caught:
            await api.stats()
    assert caught.value.status_code == 502


# --- the reader itself ------------------------------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**9])
async def test_reader_decodes_whatever_the_chunk_boundaries(chunk: int) -> None:
    """gzip split at any byte boundary inflates to the same body."""
    body = bytes(range(256)) * 2000 + bytes(300_000)
    request = httpx.Request("GET", "https://example.test/")
    out, whole = await read_body(
        _chunks(gzip.compress(body), chunk),
        status_code=200,
        content_encoding="gzip",
        content_length=None,
        request=request,
    )
    assert whole
    assert out == body


async def test_reader_cuts_an_error_body_and_says_so() -> None:
    """An error body past ERROR_BODY_READ_LIMIT comes back cut, flagged as not whole."""
    request = httpx.Request("GET", "https://example.test/")
    out, whole = await read_body(
        _chunks(gzip.compress(bytes(10 * MiB)), 65536),
        status_code=503,
        content_encoding="gzip",
        content_length=None,
        request=request,
    )
    assert not whole
    assert len(out) == ERROR_BODY_READ_LIMIT


async def test_limits_page_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limits page's examples: a 16 MiB bound that reports a body past it; transport options."""
    monkeypatch.setenv("MEMCACHIER_USERNAME", "u")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "p")
    code = page_code("limits.md")
    assert code["api"]._max_response_size == 16 * MiB
    assert code["corporate"]._headers["X-Team"] == "payments"
    body = gzip.compress(bytes(17 * MiB), compresslevel=1)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})

    transport = httpx.MockTransport(handler)
    async with AsyncAnalytics(
        "u", "p", cache_id=1, transport=transport, max_response_size=16 * MiB
    ) as api:
        assert await code["stats_or_none"](api) is None
    assert capsys.readouterr().out == "the answer was larger than 16,777,216 bytes\n"
