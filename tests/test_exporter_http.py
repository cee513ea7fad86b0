"""The exporter's HTTP side, served by uvicorn: every promise docs/exporter.md makes holds.

Raw bytes over loopback sockets where what a client may send (garbage,
huge heads, idleness, too many connections) is the point; httpx elsewhere.
uvicorn runs on asyncio only, so these tests do too.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from _gate import Gate, wait_until
from click.testing import CliRunner
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from memcachier_async._cli import main
from memcachier_async._cli.exporter import Exporter
from memcachier_async._cli.serving import ServerSettings

TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def root() -> AsyncIterator[str]:
    exporter = Exporter([("web", Gate().client())], mode="probe")
    settings = ServerSettings(timeout_keep_alive=1)
    async with exporter.serve("127.0.0.1", 0, settings) as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


async def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes; everything the server answers until it closes (or 3 s pass)."""
    received = b""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        with anyio.move_on_after(3):
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.anyio
async def test_get_and_head_on_one_keep_alive_connection(root: str) -> None:
    """GET answers; HEAD answers the same headers without a body, on the same connection."""
    async with httpx.AsyncClient(base_url=root) as http:
        got = await http.get("/-/healthy")
        head = await http.head("/-/healthy")
    assert (got.status_code, got.text) == (200, "Healthy.\n")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len("Healthy.\n"))
    assert "server" not in head.headers  # no version advertised


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
async def test_any_method_but_get_and_head_is_a_405_with_allow(root: str, method: str) -> None:
    """Other methods: 405, one line, Allow: GET, HEAD."""
    async with httpx.AsyncClient(base_url=root) as http:
        response = await http.request(method, "/metrics")
    assert response.status_code == 405
    assert response.text == f"Method not allowed: {method}. Use GET.\n"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        b"Content-Length: 3\r\n\r\nabc",
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"Content-Length: 50000000\r\n\r\n" + b"x" * 100_000,  # and more never sent
    ],
    ids=["content-length", "chunked", "huge"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_request_with_a_body_is_a_413_and_the_connection_closes_unread(
    root: str, method: str, body: bytes
) -> None:
    """No route takes a body: 413 with one line, and the connection closes rather than reading
    the body for as long as the client sends it."""
    request = f"{method} /metrics HTTP/1.1\r\nHost: x\r\n".encode() + body
    answer = await exchange(port_of(root), request)
    assert status_of(answer) == 413
    head, _, text = answer.partition(b"\r\n\r\n")
    assert text == b"Request bodies are not accepted.\n"
    assert b"connection: close" in head.lower()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n",
    ],
    ids=["garbage", "non-ascii target", "huge head"],
)
async def test_a_malformed_or_oversized_head_is_a_400_and_the_connection_closes(
    root: str, request_bytes: bytes
) -> None:
    """Not HTTP/1.1, or a head over 16 KiB: 400 from uvicorn, the connection closed; the
    client's bytes are not echoed."""
    answer = await exchange(port_of(root), request_bytes)
    assert status_of(answer) == 400
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert b"GARBAGE" not in body
    assert b"\xff" not in body
    assert b"aaaa" not in body


@pytest.mark.anyio
async def test_a_huge_head_is_refused_before_it_is_all_read(root: str) -> None:
    """A head that never ends is cut off at 16 KiB, not buffered: 400 while the client still sends."""
    async with await anyio.connect_tcp("127.0.0.1", port_of(root)) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000)
        with anyio.fail_after(5):
            answer = await stream.receive()
    assert status_of(answer) == 400


@pytest.mark.anyio
async def test_an_idle_keep_alive_connection_is_closed(root: str) -> None:
    """After an answer, a connection idle for timeout_keep_alive (1 s here) is closed by the server."""
    async with await anyio.connect_tcp("127.0.0.1", port_of(root)) as stream:
        await stream.send(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(await stream.receive()) == 200
        with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
            await stream.receive()


class Broken(Collector):
    """A collector that fails once armed (registering collects once, to describe it)."""

    armed = False

    def collect(self) -> Iterable[Metric]:
        if self.armed:
            raise RuntimeError("a bug in a collector")
        return ()


@pytest.mark.anyio
async def test_a_route_that_raises_gets_a_one_line_500_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug behind /metrics: 500 with one line that does not quote the error, logged; the next
    request on the same server is answered."""
    exporter = Exporter([("web", Gate().client())], mode="probe")
    broken = Broken()
    exporter.registry.register(broken)
    broken.armed = True
    async with exporter.serve("127.0.0.1", 0) as root, httpx.AsyncClient(base_url=root) as http:
        boom = await http.get("/metrics")
        after = await http.get("/sd")
    assert boom.status_code == 500
    assert boom.text == "Internal error; see the exporter's log.\n"
    assert after.status_code == 200
    assert any("a bug in a collector" in str(record.exc_info) for record in caplog.records)


@pytest.mark.anyio
async def test_connections_over_the_limit_get_503_and_the_others_still_work() -> None:
    """limit_concurrency=3: with two connections open, a request on a third (uvicorn counts
    it too) gets 503 at once; the open ones still answer."""
    exporter = Exporter([("web", Gate().client())], mode="probe")
    streams: list[anyio.abc.SocketStream] = []
    async with exporter.serve("127.0.0.1", 0, ServerSettings(limit_concurrency=3)) as root:
        port = port_of(root)
        try:
            for _ in range(2):
                stream = await anyio.connect_tcp("127.0.0.1", port)
                streams.append(stream)
                await stream.send(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
                assert status_of(await stream.receive()) == 200
            refused = await exchange(port, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(refused) == 503
            await streams[0].send(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(await streams[0].receive()) == 200
        finally:
            for stream in streams:
                await stream.aclose()


@pytest.mark.anyio
async def test_leaving_serve_lets_a_probe_in_flight_finish() -> None:
    """Graceful stop: a probe in flight when the block ends still gets its 200; new
    connections are refused meanwhile."""
    gate = Gate()
    exporter = Exporter([("web", gate.client())], mode="probe")
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=10) as http, anyio.create_task_group() as group:

        async def probe(root: str) -> None:
            answers.append(await http.get(root + "probe?cache=web"))

        settings = ServerSettings(timeout_graceful_shutdown=5)
        async with exporter.serve("127.0.0.1", 0, settings) as root:
            group.start_soon(probe, root)
            await wait_until(lambda: gate.in_flight == 1)
            # Released only once the server is stopping.
            group.start_soon(_release_later, gate)
        with pytest.raises(httpx.ConnectError):
            await http.get(root + "-/healthy")
    assert [a.status_code for a in answers] == [200]
    assert "memcachier_probe_success 1.0" in answers[0].text


async def _release_later(gate: Gate) -> None:
    await anyio.sleep(0.3)
    gate.open.set()


@pytest.mark.anyio
async def test_a_probe_that_outlives_the_shutdown_timeout_is_cancelled() -> None:
    """Graceful stop is bounded: a probe still running after timeout_graceful_shutdown (1 s)
    is cancelled (uvicorn answers 500 for it), and the serve block ends."""
    gate = Gate()
    exporter = Exporter([("web", gate.client())], mode="probe", timeout=60)
    outcome: list[int] = []
    async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as group:

        async def probe(root: str) -> None:
            outcome.append((await http.get(root + "probe?cache=web")).status_code)

        with anyio.fail_after(10):  # a bound on the test, not a measurement
            async with exporter.serve(
                "127.0.0.1", 0, ServerSettings(timeout_graceful_shutdown=1)
            ) as root:
                group.start_soon(probe, root)
                await wait_until(lambda: gate.in_flight == 1)
            await wait_until(lambda: gate.in_flight == 0)  # the call was cancelled
            await wait_until(lambda: bool(outcome))
    assert outcome == [500]


@pytest.mark.anyio
async def test_https_with_the_given_certificate(tmp_path: Path) -> None:
    """--tls-cert-file / --tls-key-file: uvicorn serves HTTPS with them."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    settings = ServerSettings(tls_certfile=str(cert_file), tls_keyfile=str(key_file))
    exporter = Exporter([("web", Gate().client())], mode="probe")
    async with exporter.serve("127.0.0.1", 0, settings) as root:
        assert root.startswith("https://127.0.0.1:")
        verify = ssl.create_default_context(cafile=str(ca_file))
        async with httpx.AsyncClient(verify=verify) as http:
            response = await http.get(root + "-/healthy")
    assert (response.status_code, response.text) == (200, "Healthy.\n")


@pytest.mark.anyio
async def test_serving_needs_asyncio_and_says_so() -> None:
    """On trio, serve() refuses with a clear error instead of failing deep inside uvicorn."""
    import trio

    exporter = Exporter([("web", Gate().client())], mode="probe")

    async def on_trio() -> None:
        async with exporter.serve("127.0.0.1", 0):
            pass  # pragma: no cover - never reached

    with pytest.raises(RuntimeError, match="runs on asyncio only"):
        await anyio.to_thread.run_sync(lambda: trio.run(on_trio))


@pytest.mark.parametrize(
    "field", ["max_head", "limit_concurrency", "timeout_keep_alive", "timeout_graceful_shutdown"]
)
def test_server_settings_are_checked_when_given(field: str) -> None:
    """A zero or negative limit is refused at once, naming the setting."""
    with pytest.raises(ValueError, match=field):
        ServerSettings(**{field: 0})  # type: ignore[arg-type]


def test_the_access_log_and_a_graceful_sigterm_from_the_command(tmp_path: Path) -> None:
    """export --access-log: one line per request on stderr (client, request line, status);
    SIGTERM stops it with exit code 0 and no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCACHIER_")}
    command = [sys.executable, "-m", "memcachier_async._cli", "export", "--emulator"]
    command += ["--mode", "probe", "--access-log", "--listen", f"127.0.0.1:{port}"]
    log = tmp_path / "stderr.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, env=env)
    try:
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(root + "/-/healthy", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(root + "/nope", timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(20)
    output = log.read_text()
    assert code == 0, output
    assert '"GET /-/healthy HTTP/1.1" 200' in output
    assert '"GET /nope HTTP/1.1" 404' in output
    assert "Traceback" not in output


@pytest.mark.anyio
async def test_cancelled_from_outside_the_server_stops_at_once_and_closes_its_port() -> None:
    """A cancelled serve block ends without the grace period, and nothing listens after."""
    gate = Gate()
    exporter = Exporter([("web", gate.client())], mode="probe")
    with anyio.fail_after(5):  # a bound on the test, not a measurement
        with anyio.move_on_after(0.2):
            async with exporter.serve("127.0.0.1", 0) as root:
                await anyio.sleep_forever()
    with pytest.raises(OSError, match=r"refused|connect"):
        await anyio.connect_tcp("127.0.0.1", port_of(root))


def test_a_port_in_use_is_a_usage_error_naming_the_address() -> None:
    """--listen on a busy port: exit code 2 and one line saying why, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = CliRunner().invoke(main, ["export", "--emulator", "--listen", address])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on {address}" in result.output
    assert "Traceback" not in result.output


def test_tls_needs_both_files(tmp_path: Path) -> None:
    """--tls-cert-file without --tls-key-file (or the reverse) is refused, naming both."""
    pem = tmp_path / "cert.pem"
    pem.write_text("not used")
    for flag in ("--tls-cert-file", "--tls-key-file"):
        result = CliRunner().invoke(main, ["export", "--emulator", flag, str(pem)])
        assert result.exit_code == 2, result.output
        assert "--tls-cert-file and --tls-key-file go together" in result.output


def test_a_certificate_that_cannot_be_used_is_a_usage_error(tmp_path: Path) -> None:
    """Files that are not a PEM certificate and key: exit code 2 naming the flags, no traceback."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    flags = ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    result = CliRunner().invoke(main, ["export", "--emulator", "--listen", "127.0.0.1:0", *flags])
    assert result.exit_code == 2, result.output
    assert "--tls-cert-file/--tls-key-file cannot be used" in result.output
    assert "Traceback" not in result.output
