"""A recording HTTP proxy and a TLS origin on loopback (for tests/test_proxy.py).

The proxy keeps every request head it receives and every byte a client
sends through a CONNECT tunnel, so a test can assert that no credential
ever reached it in clear text. A CONNECT is tunnelled to ``tunnel_to``
(a loopback port), whatever host it names; anything else is answered 502
and never forwarded.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that records what it is sent."""

    def __init__(self, tunnel_to: int | None = None, connect_status: str = "200") -> None:
        self.tunnel_to = tunnel_to
        self.connect_status = connect_status
        self.heads: list[bytes] = []
        self.tunnelled = bytearray()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def authorization_headers(self) -> int:
        """How many request heads carried an Authorization header."""
        return sum(
            1
            for head in self.heads
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"authorization:")
        )

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            head, _, rest = data.partition(b"\r\n\r\n")
            with self._lock:
                self.heads.append(head)
            if not head.startswith(b"CONNECT ") or self.tunnel_to is None:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            if self.connect_status != "200":
                conn.sendall(
                    f"HTTP/1.1 {self.connect_status} No\r\nContent-Length: 0\r\n\r\n".encode()
                )
                return
            with socket.create_connection(("127.0.0.1", self.tunnel_to)) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    self._record(rest)
                    upstream.sendall(rest)
                back = threading.Thread(target=self._pipe, args=(upstream, conn, False))
                back.start()
                self._pipe(conn, upstream, True)
                back.join(timeout=5)

    def _record(self, data: bytes) -> None:
        with self._lock:
            self.tunnelled += data

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if record:
                    self._record(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()


class TLSOrigin:
    """A loopback HTTPS server answering ``body`` (after ``statuses``, one per request)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        body: bytes,
        host: str = "127.0.0.1",
        statuses: list[str] | None = None,
    ) -> None:
        self.context = context
        self.body = body
        self.statuses = list(statuses or [])
        self.heads: list[bytes] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, 0), family=family)
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                self.heads.append(data.partition(b"\r\n\r\n")[0])
                status = self.statuses.pop(0) if self.statuses else "200 OK"
                conn.sendall(
                    b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                    % (status.encode(), len(self.body), self.body)
                )
        except (OSError, ssl.SSLError):
            return

    def close(self) -> None:
        self._sock.close()
