"""A server that misbehaves on purpose: every case ends in a typed outcome, in bounded
memory and time, without stalling the event loop.

The server (``tests/hostile_server.py``) runs in its own process on
127.0.0.1, so its buffers and CPU never count in what is measured here. For
each misbehaviour, on asyncio and trio with the httpx backend and on asyncio
with the aiohttp backend, a call is made under a deadline while a ticker
task measures the longest event-loop stall, and the peak RSS growth of this
process is read from the kernel. The bounds are generous (the machine may
be loaded): they catch a bomb, an unbounded buffer or a blocked loop, not a
few milliseconds. ``HOSTILE_REPORT=path`` writes the measured figures as JSON.

The cases that need the response size limit (bombs, endless and huge
bodies), error-body scrubbing and the proxy policy are at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

from memcachier_async import (
    APIError,
    AsyncAnalytics,
    DecodeError,
    MemcachierError,
    ResponseTooLargeError,
    RetryPolicy,
    ServerError,
    TransportError,
)

pytestmark = pytest.mark.unmeasured  # coverage tracing would distort the stall measurements

HERE = Path(__file__).parent
MIB = 1024 * 1024
DEADLINE = 3.0  # seconds, for every call
READ_TIMEOUT = 2.0

Outcome = type[BaseException] | str  # an exception class, "ok" or "deadline"


@attrs.frozen
class Expect:
    outcome: Outcome
    rss_mib: float = 64.0  # peak RSS growth allowed
    stall: float = 0.5  # longest event-loop stall allowed, seconds
    call: str = "stats"


# Every misbehaviour of hostile_server.py that needs no size limit, and what it must give.
CASES: dict[str, Expect] = {
    # bodies the JSON layer refuses
    "deep-array": Expect(DecodeError),
    "deep-object": Expect(DecodeError),
    "utf16": Expect(DecodeError),
    "latin1": Expect(DecodeError),
    "bom": Expect(DecodeError),
    "nan": Expect(DecodeError),
    "html-200": Expect(DecodeError),
    "empty-200": Expect(DecodeError),
    # numbers outside the wire's range, duplicate keys
    "huge-number": Expect(DecodeError),
    "very-long-number": Expect(DecodeError),
    "negative": Expect(DecodeError),
    "float": Expect(DecodeError),
    "duplicate-keys": Expect(DecodeError),
    "extreme-valid": Expect("ok"),
    "esc-server-name": Expect("ok"),
    # connections failing at every stage
    "reset-at-once": Expect(TransportError),
    "reset-in-status": Expect(TransportError),
    "reset-in-headers": Expect(TransportError),
    "reset-in-body": Expect(TransportError),
    "close-in-body": Expect(TransportError),
    "garbage-status": Expect(TransportError),
    "bad-chunk": Expect(TransportError),
    "huge-header": Expect(TransportError),
    "silent": Expect(TransportError),  # the read timeout, before the deadline
    # slow drips: bytes keep coming, so only the caller's deadline ends them
    "slow-headers": Expect("deadline"),
    "slow-body": Expect("deadline"),
    "redirect-away": Expect(APIError),  # never followed
    # big but valid: decoded in a worker thread, the loop keeps running
    "big-history": Expect("ok", rss_mib=400.0, call="history"),
    "gzip-small": Expect("ok"),
}

BACKENDS = [
    pytest.param(("asyncio", "httpx"), id="asyncio-httpx"),
    pytest.param(("trio", "httpx"), id="trio-httpx"),
    pytest.param(("asyncio", "aiohttp"), id="asyncio-aiohttp"),
]

_FIGURES: list[dict[str, Any]] = []


# --- the server and the measurements -----------------------------------------------------


@contextlib.contextmanager
def _hostile_server() -> Iterator[int]:
    """``hostile_server.py`` in a process of its own; its free loopback port."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "hostile_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        yield int(process.stdout.readline())
    finally:
        process.stdin.close()  # the server stops when its stdin closes
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture(scope="session")
def hostile_port() -> Iterator[int]:
    """The hostile server, in a process of its own, on a free loopback port."""
    with _hostile_server() as port:
        yield port
    report = os.environ.get("HOSTILE_REPORT")
    if report:
        Path(report).write_text(json.dumps(_FIGURES, indent=1))


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        return None
    return None  # pragma: no cover


class PeakRSS:
    """Peak resident memory growth of this process over a block, in MiB.

    On Linux, writing 5 to /proc/self/clear_refs resets the peak (VmHWM),
    so the peak of this block alone is read. Elsewhere ru_maxrss only
    grows, which gives a lower bound.
    """

    def __enter__(self) -> PeakRSS:
        self.exact = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
        except OSError:  # pragma: no cover - not Linux, or not allowed
            pass
        now = _status_kib("VmRSS")
        self.before = now if now is not None else self._maxrss()
        self.growth = 0.0
        return self

    @staticmethod
    def _maxrss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def __exit__(self, *exc: object) -> None:
        peak = _status_kib("VmHWM") if self.exact else None
        after = peak if peak is not None else self._maxrss()
        self.growth = max(0, after - self.before) / 1024


@attrs.define
class Measured:
    outcome: Outcome
    error: BaseException | None
    elapsed: float
    stall: float
    rss_mib: float


async def measure(call: Callable[[], Awaitable[Any]], deadline: float = DEADLINE) -> Measured:
    """Run ``call`` under ``deadline`` with a ticker task watching the event loop."""
    longest = 0.0
    tick = 0.002

    async def ticker() -> None:
        nonlocal longest
        while True:
            before = time.perf_counter()
            await anyio.sleep(tick)
            longest = max(longest, time.perf_counter() - before - tick)

    outcome: Outcome = "deadline"
    error: BaseException | None = None
    with PeakRSS() as rss:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(tick * 2)
            started = time.perf_counter()
            with anyio.move_on_after(deadline):
                try:
                    await call()
                    outcome = "ok"
                except Exception as exc:
                    outcome, error = type(exc), exc
            elapsed = time.perf_counter() - started
            tg.cancel_scope.cancel()
    return Measured(outcome, error, elapsed, longest, rss.growth)


def client(port: int, case: str, http_backend: str) -> AsyncAnalytics:
    return AsyncAnalytics(
        "hostile-user",
        "hostile-secret-pw",
        cache_id=1,
        base_url=f"http://127.0.0.1:{port}/{case}",
        retry=RetryPolicy.disabled(),
        http_backend=http_backend,  # type: ignore[arg-type]
        http_timeout=httpx.Timeout(READ_TIMEOUT, connect=READ_TIMEOUT),
    )


def record(case: str, backend: str, http_backend: str, got: Measured) -> None:
    outcome = got.outcome if isinstance(got.outcome, str) else got.outcome.__name__
    _FIGURES.append(
        {
            "case": case,
            "backend": f"{backend}-{http_backend}",
            "outcome": outcome,
            "elapsed": round(got.elapsed, 3),
            "deadline": DEADLINE,
            "stall_ms": round(got.stall * 1000, 1),
            "rss_mib": round(got.rss_mib, 1),
        }
    )


def check(expect: Expect, got: Measured) -> None:
    """The outcome's type, then memory, stall and time against their bounds."""
    if isinstance(expect.outcome, str):
        assert got.outcome == expect.outcome, got.error
    else:
        assert isinstance(got.outcome, type), got.outcome
        assert issubclass(got.outcome, expect.outcome), got.error
    if got.error is not None:
        # Typed, one of ours, and never the password.
        assert isinstance(got.error, MemcachierError)
        assert "hostile-secret-pw" not in str(got.error)
    assert got.rss_mib < expect.rss_mib, got
    assert got.stall < expect.stall, got
    assert got.elapsed < DEADLINE + 1.0, got


# --- the cases ----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backends(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(backends: tuple[str, str]) -> str:
    return backends[0]


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(CASES))
async def test_misbehaving_server(case: str, backends: tuple[str, str], hostile_port: int) -> None:
    """Each misbehaviour ends in its typed outcome, within memory, stall and deadline bounds."""
    backend, http_backend = backends
    expect = CASES[case]
    api = client(hostile_port, case, http_backend)
    try:
        got = await measure(getattr(api, expect.call))
    finally:
        with anyio.CancelScope(shield=True):
            await api.aclose()
    record(case, backend, http_backend, got)
    check(expect, got)


@pytest.mark.anyio
async def test_a_bad_number_names_its_field(backends: tuple[str, str], hostile_port: int) -> None:
    """The DecodeError of an out-of-range counter names the field path, not the digits."""
    api = client(hostile_port, "huge-number", backends[1])
    async with api:
        with pytest.raises(DecodeError) as caught:
            await api.stats()
    assert caught.value.path is not None
    assert caught.value.path.endswith(".get_hits")
    assert "9999999999" not in str(caught.value)


# --- bounded by the response size limit ---------------------------------------------------

LIMIT = 64 * MIB  # the default max_response_size
# Peak RSS below 3x the limit, and no stall over 100 ms on a quiet machine (0.5 s allowed
# here, for a loaded one): the done-when for bombs and endless bodies.
LIMIT_CASES: dict[str, Expect] = {
    "gzip-bomb": Expect(ResponseTooLargeError, rss_mib=3 * LIMIT / MIB),
    "deflate-bomb": Expect(ResponseTooLargeError, rss_mib=3 * LIMIT / MIB),
    "endless-chunked": Expect(ResponseTooLargeError, rss_mib=3 * LIMIT / MIB),
    "huge-content-length": Expect(ResponseTooLargeError, rss_mib=3 * LIMIT / MIB),
    "echo-headers": Expect(ServerError),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(LIMIT_CASES))
async def test_misbehaving_server_past_the_size_limit(
    case: str, backends: tuple[str, str], hostile_port: int
) -> None:
    """Bombs and endless bodies stop at the limit, in memory and time; echoed credentials are cut."""
    backend, http_backend = backends
    expect = LIMIT_CASES[case]
    api = client(hostile_port, case, http_backend)
    try:
        got = await measure(getattr(api, expect.call))
    finally:
        with anyio.CancelScope(shield=True):
            await api.aclose()
    record(case, backend, http_backend, got)
    check(expect, got)
    if case == "echo-headers":
        assert isinstance(got.error, ServerError)
        token = base64.b64encode(b"hostile-user:hostile-secret-pw").decode()
        for text in (str(got.error), got.error.body, repr(got.error)):
            assert token not in text
            assert "hostile-secret-pw" not in text


@pytest.fixture(scope="session")
def proxy_port() -> Iterator[int]:
    """A second hostile server, used as the proxy: it records every request it gets."""
    with _hostile_server() as port:
        yield port


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_recording_proxy_never_gets_the_credentials(
    host: str,
    backends: tuple[str, str],
    hostile_port: int,
    proxy_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY and ALL_PROXY set: a loopback http:// base URL is reached directly, and the
    proxy records no Authorization header (none at all: nothing goes through it)."""
    proxy = f"http://127.0.0.1:{proxy_port}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def proxied() -> list[dict[str, str]]:
        async with httpx.AsyncClient(trust_env=False) as http:
            return (await http.get(f"{proxy}/_requests")).json()  # type: ignore[no-any-return]

    before = len(await proxied())
    api = AsyncAnalytics(
        "hostile-user",
        "hostile-secret-pw",
        cache_id=1,
        base_url=f"http://{host}:{hostile_port}/extreme-valid",
        retry=RetryPolicy.disabled(),
        http_backend=backends[1],  # type: ignore[arg-type]
    )
    async with api:
        await api.stats()
    # Every request the proxy got, minus our own reads of its record.
    seen = [r for r in (await proxied())[before:] if "/_requests" not in r["line"]]
    assert [r for r in seen if "authorization" in r["headers"].lower()] == []
    assert seen == []
