"""A loopback HTTP server that misbehaves on purpose, one misbehaviour per path prefix.

Run as a script (``python tests/hostile_server.py``) it listens on
127.0.0.1 (port 0: a free one), prints the port and serves until stdin
closes. The first path segment names the case: a client with base URL
``http://127.0.0.1:PORT/<case>`` hits it on every call. It runs in its own
process so that its buffers and its CPU time never count in the client's
memory or event-loop measurements.

``GET /_requests`` answers with the requests received so far (request line
and headers, as JSON): what a recording proxy saw.

Loopback only: it binds 127.0.0.1 and nothing else.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import socketserver
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent / "samples"
MIB = 1024 * 1024

Handler = Callable[[socket.socket, bytes], None]

_STATS = json.loads((SAMPLES / "stats_two_servers.json").read_text())
_SERVER = next(iter(_STATS))
_RECORD = json.loads((SAMPLES / "history.json").read_text())[0]


def _stats_with(**fields: Any) -> bytes:
    return json.dumps({_SERVER: {**_STATS[_SERVER], **fields}}).encode()


def _raw_stats(field: str, literal: bytes) -> bytes:
    """A stats body whose ``field`` is the raw JSON ``literal`` (a number json.dumps cannot write)."""
    body = _stats_with(**{field: 424242424242})
    return body.replace(b"424242424242", literal, 1)


def _response(
    body: bytes,
    *,
    status: str = "200 OK",
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close() sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _send(data: bytes) -> Handler:
    def handle(sock: socket.socket, request: bytes) -> None:
        sock.sendall(data)

    return handle


def _send_then_reset(data: bytes) -> Handler:
    def handle(sock: socket.socket, request: bytes) -> None:
        if data:
            sock.sendall(data)
            time.sleep(0.05)
        _reset(sock)

    return handle


def _send_then_close(data: bytes) -> Handler:
    def handle(sock: socket.socket, request: bytes) -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    return handle


def _drip(data: bytes, every: float) -> Handler:
    """``data`` one byte at a time, then the same again forever (until the client leaves)."""

    def handle(sock: socket.socket, request: bytes) -> None:
        while True:
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(every)

    return handle


def _silent(sock: socket.socket, request: bytes) -> None:
    # Accept, read the request, answer nothing until the client gives up.
    sock.settimeout(60)
    with contextlib.suppress(OSError):
        sock.recv(1)


def _endless_chunked(sock: socket.socket, request: bytes) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" + b"1," * (64 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    while True:
        sock.sendall(frame)


def _huge_content_length(sock: socket.socket, request: bytes) -> None:
    """Content-Length of 300 MB, body sent as fast as the client reads."""
    size = 300 * 1000 * 1000
    sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
    block = b" " * MIB
    sent = 0
    while sent < size:
        sock.sendall(block)
        sent += len(block)


def _echo_headers(sock: socket.socket, request: bytes) -> None:
    """An error page that shows the request it got, Authorization included."""
    body = b"<html><body><pre>Bad gateway. You sent:\n" + request + b"</pre></body></html>"
    sock.sendall(
        _response(body, status="502 Bad Gateway", headers=(("Content-Type", "text/html"),))
    )


def _bomb(encoding: str, inflated: int) -> bytes:
    """``inflated`` bytes of JSON whitespace, compressed (about 1,000:1).

    Compressing 1,000 MiB takes about 4.5 s, and every test session starts
    two of these servers (CI runs five sessions): the bytes never change,
    so they are kept in the temporary directory and made once per machine.
    """
    name = f"memcachier-hostile-{encoding}-{inflated}-zlib{zlib.ZLIB_RUNTIME_VERSION}.bin"
    cached = Path(tempfile.gettempdir()) / name
    with contextlib.suppress(OSError):
        return cached.read_bytes()
    body = _compress_whitespace(encoding, inflated)
    with contextlib.suppress(OSError):
        # Written aside and renamed: a server started meanwhile reads all or nothing.
        partial = cached.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(body)
        os.replace(partial, cached)
    return body


def _compress_whitespace(encoding: str, inflated: int) -> bytes:
    block = b" " * MIB
    if encoding == "gzip":
        out = zlib.compressobj(9, zlib.DEFLATED, 31)
    else:
        out = zlib.compressobj(9, zlib.DEFLATED, 15)
    parts = [out.compress(block) for _ in range(inflated // MIB)]
    parts.append(out.flush())
    return b"".join(parts)


def _compressed(encoding: str, body: bytes) -> Handler:
    return _send(
        _response(
            body,
            headers=(("Content-Type", "application/json"), ("Content-Encoding", encoding)),
        )
    )


def _big_history(records: int) -> bytes:
    return json.dumps([_RECORD] * records).encode()


def cases() -> dict[str, Handler]:
    """Every misbehaviour, by name (the path prefix)."""
    esc_name = "\x1b]8;;http://evil.example\x1b\\mc1\x1b[2J\x1b[31m[bold]x[/bold]:11211"
    return {
        # --- bodies the JSON layer refuses
        "deep-array": _send(_response(b"[" * 100_000)),
        "deep-object": _send(_response(b'{"a":' * 50_000)),
        "utf16": _send(_response(_stats_with().decode().encode("utf-16"))),
        "latin1": _send(_response(_stats_with().replace(b"11211", b"\xe9\xe9"))),
        "bom": _send(_response(b"\xef\xbb\xbf" + _stats_with())),
        "nan": _send(_response(_raw_stats("get_hits", b"NaN"))),
        "html-200": _send(
            _response(b"<html>maintenance</html>", headers=(("Content-Type", "text/html"),))
        ),
        "empty-200": _send(_response(b"")),
        # --- numbers out of the wire's range
        "huge-number": _send(_response(_raw_stats("get_hits", b"9" * 400))),
        "very-long-number": _send(_response(_raw_stats("get_hits", b"9" * 100_000))),
        "negative": _send(_response(_stats_with(bytes=-1))),
        "float": _send(_response(_stats_with(evictions=1.5))),
        "duplicate-keys": _send(
            _response(_stats_with()[:-2] + b', "get_hits": -7}}')  # the last one wins: refused
        ),
        "extreme-valid": _send(
            _response(_stats_with(bytes=2**64 - 1, limit_maxbytes=1, get_hits=2**64 - 1))
        ),
        "esc-server-name": _send(_response(json.dumps({esc_name: _STATS[_SERVER]}).encode())),
        # --- connections that fail at every stage
        "reset-at-once": _send_then_reset(b""),
        "reset-in-status": _send_then_reset(b"HTTP/1.1 20"),
        "reset-in-headers": _send_then_reset(b"HTTP/1.1 200 OK\r\nContent-Ty"),
        "reset-in-body": _send_then_reset(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + _stats_with()[:100]
        ),
        "close-in-body": _send_then_close(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + _stats_with()[:100]
        ),
        "garbage-status": _send_then_close(b"HTTP/1.1 abc nonsense\r\n\r\n"),
        "bad-chunk": _send_then_close(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        ),
        "huge-header": _send_then_close(
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
        ),
        "silent": _silent,
        "slow-headers": _drip(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000, every=0.05),
        "slow-body": _drip(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 100_000, every=0.05
        ),
        "redirect-away": _send(
            _response(
                b"",
                status="302 Found",
                headers=(("Location", "http://127.0.0.1:9/steal"),),
            )
        ),
        # --- big and bigger (some need the size limit of the limits11 work)
        "big-history": _send(_response(_big_history(12_000))),
        "gzip-bomb": _compressed("gzip", _bomb("gzip", 1000 * MIB)),
        "deflate-bomb": _compressed("deflate", _bomb("deflate", 1000 * MIB)),
        "gzip-small": _compressed("gzip", gzip.compress(_stats_with())),
        "endless-chunked": _endless_chunked,
        "huge-content-length": _huge_content_length,
        "echo-headers": _echo_headers,
    }


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    handlers: dict[str, Handler]
    requests: list[dict[str, Any]]
    lock: threading.Lock


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        head = b""
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in head and len(head) < 64 * 1024:
                data = sock.recv(65536)
                if not data:
                    return
                head += data
            request_line, _, headers = head.partition(b"\r\n")
            parts = request_line.decode("latin-1").split(" ")
            target = parts[1] if len(parts) > 1 else "/"
            with self.server.lock:
                self.server.requests.append(
                    {
                        "line": request_line.decode("latin-1"),
                        "headers": headers.split(b"\r\n\r\n")[0].decode("latin-1"),
                    }
                )
            if target.startswith("/_requests"):
                with self.server.lock:
                    body = json.dumps(self.server.requests[:-1]).encode()
                sock.sendall(_response(body))
                return
            # An absolute URI (a proxy request) or a path: the case is the first segment.
            path = target.split("://", 1)[-1]
            path = path[path.find("/") :] if "://" in target else path
            case = path.strip("/").split("/", 1)[0]
            handler = self.server.handlers.get(case)
            if handler is None:
                sock.sendall(_response(b"no such case", status="404 Not Found"))
                return
            handler(sock, head)
        except OSError:
            pass  # the client left: that is what most cases are about


def serve() -> None:
    handlers = cases()
    with _Server(("127.0.0.1", 0), _Connection) as server:
        server.handlers = handlers
        server.requests = []
        server.lock = threading.Lock()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(server.server_address[1], flush=True)
        sys.stdin.read()  # until the test process closes our stdin
        server.shutdown()


if __name__ == "__main__":
    serve()
