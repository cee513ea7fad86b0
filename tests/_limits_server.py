"""A small loopback HTTP/1.1 server that misbehaves on purpose (for tests/test_limits.py).

Each connection is served by a thread: the request head is read, then the
behaviour's generator gives the bytes to send, which are sent until the
client goes away. Every request head and the bytes sent for it are kept,
so tests can check what reached the server and how much was downloaded.
"""

from __future__ import annotations

import socket
import threading
import zlib
from collections.abc import Callable, Iterator

Behaviour = Callable[[bytes], Iterator[bytes]]

MiB = 2**20
_ZEROS = bytes(MiB)


def head(status: str, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def compressed_zeros(mib: int, wbits: int) -> Iterator[bytes]:
    """``mib`` MiB of zeros, compressed as they are sent (a bomb, made lazily)."""
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    for _ in range(mib):
        out = z.compress(_ZEROS)
        if out:
            yield out
    yield z.flush()


def bomb(coding: str = "gzip", mib: int = 1000, status: str = "200 OK") -> Behaviour:
    """A body of ``mib`` MiB of zeros, gzip (or deflate) compressed, chunked."""
    wbits = 31 if coding == "gzip" else 15

    def run(request: bytes) -> Iterator[bytes]:
        yield head(
            status,
            "Content-Type: application/json",
            f"Content-Encoding: {coding}",
            "Transfer-Encoding: chunked",
        )
        for block in compressed_zeros(mib, wbits):
            yield chunked(block)
        yield b"0\r\n\r\n"

    return run


def endless(status: str = "200 OK", block: bytes = b"[" * 65536) -> Behaviour:
    """A chunked body that never ends."""

    def run(request: bytes) -> Iterator[bytes]:
        yield head(status, "Content-Type: application/json", "Transfer-Encoding: chunked")
        piece = chunked(block)
        while True:
            yield piece

    return run


def plain(status: str, body: bytes, *headers: str, content_length: int | None = None) -> Behaviour:
    """One fixed answer (``content_length`` may lie about the body)."""
    length = len(body) if content_length is None else content_length

    def run(request: bytes) -> Iterator[bytes]:
        yield head(status, *headers, f"Content-Length: {length}") + body

    return run


def big(status: str, size: int) -> Behaviour:
    """A body of ``size`` bytes with a true Content-Length, sent 64 KiB at a time."""
    block = b"x" * 65536

    def run(request: bytes) -> Iterator[bytes]:
        yield head(status, "Content-Type: text/plain", f"Content-Length: {size}")
        left = size
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)

    return run


def echo_headers(status: str = "401 Unauthorized") -> Behaviour:
    """An error page that quotes the request head back (as some proxies' pages do)."""

    def run(request: bytes) -> Iterator[bytes]:
        body = b"<html><pre>Your request:\n" + request + b"</pre></html>"
        yield head(status, "Content-Type: text/html", f"Content-Length: {len(body)}") + body

    return run


class LoopbackServer:
    """Serves ``behaviour`` on ``host`` (loopback only) until closed."""

    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, 0), family=family)
        self.port: int = self._sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.sent: list[int] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "/api/v1") -> str:
        host = self._sock.getsockname()[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                try:
                    got = conn.recv(65536)
                except OSError:
                    return
                if not got:
                    return
                data += got
            request = data.partition(b"\r\n\r\n")[0]
            with self._lock:
                self.requests.append(request)
                index = len(self.sent)
                self.sent.append(0)
            try:
                for piece in self.behaviour(request):
                    conn.sendall(piece)
                    with self._lock:
                        self.sent[index] += len(piece)
                    if self._closed:
                        return
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
