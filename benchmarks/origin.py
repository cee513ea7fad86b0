"""The benchmark origin: a minimal HTTP/1.1 keep-alive server on a raw asyncio protocol.

It must cost far less CPU per request than any client, so that the client
is what is measured: every response is prebuilt bytes written with one
``transport.write``, and the request parser only finds the request line and
the end of the headers (the clients send no bodies on the measured calls).
uvloop runs it when installed (``uvicorn[standard]`` in the ``bench`` extra
brings it).

Routes, under a scenario prefix that picks the deployment::

    /<scenario>/api/v1/login                -> {"cache_id": ...}
    /<scenario>/api/v1/<id>/stats           -> stats of 4 servers ("s4", "slow")
                                               or 64 servers ("s64")
    /<scenario>/api/v1/<id>/history         -> 1,000 history records
    /<scenario>/api/v1/<id>/credentials     -> a list of credentials
    /_origin                                -> {"requests": n, "cpu": seconds}

Scenario ``slow`` answers after ``--delay-ms`` (20 ms): the latency-bound
regime. Usage: ``python benchmarks/origin.py PORT_FILE [--delay-ms 20]``;
the chosen port is written to ``PORT_FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bodies import bodies


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


NOT_FOUND = _response("404 Not Found", b'"No route."')


class Routes:
    def __init__(self, delay: float) -> None:
        found, _ = bodies()
        self.delay = delay
        self.requests = 0
        self.table: dict[tuple[str, str], bytes] = {}
        for scenario, stats in (("s4", "stats4"), ("s64", "stats64"), ("slow", "stats4")):
            for name, body in (
                ("stats", found[stats]),
                ("history", found["history1k"]),
                ("credentials", found["credentials"]),
            ):
                self.table[(scenario, name)] = _response("200 OK", body)
            self.table[(scenario, "login")] = _response("200 OK", found["login"])

    def find(self, target: bytes) -> tuple[bytes, bool]:
        """(response bytes, whether to delay it) for a request target."""
        self.requests += 1
        parts = target.decode("latin-1").split("?", 1)[0].split("/")
        # ['', scenario, 'api', 'v1', ('login' | id, name)]
        if len(parts) >= 5:
            scenario, last = parts[1], parts[-1]
            found = self.table.get((scenario, last))
            if found is not None:
                return found, scenario == "slow"
        if parts[1:2] == ["_origin"]:
            self.requests -= 1
            body = json.dumps({"requests": self.requests, "cpu": time.process_time()}).encode()
            return _response("200 OK", body), False
        return NOT_FOUND, False


class HTTPProtocol(asyncio.Protocol):
    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            rest = buffer[end + 4 :]
            length = _content_length(head)
            if len(rest) < length:
                break
            buffer = rest[length:]
            target = head.split(b" ", 2)[1]
            response, delayed = self.routes.find(target)
            if delayed:
                asyncio.get_running_loop().call_later(self.routes.delay, self._write, response)
            else:
                self._write(response)
        self.buffer = buffer

    def _write(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    line_end = head.find(b"\r\n", at + 2)
    value = head[at + 17 : line_end if line_end >= 0 else len(head)]
    return int(value.strip() or 0)


def _write_port(port_file: str, port: int) -> None:
    # Written whole, then renamed: the parent polls for the file.
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(port_file + ".tmp", port_file)


async def serve(port_file: str, delay: float) -> None:
    routes = Routes(delay)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HTTPProtocol(routes), "127.0.0.1", 0, backlog=4096, reuse_address=True
    )
    _write_port(port_file, server.sockets[0].getsockname()[1])
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port_file")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    runner(serve(args.port_file, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
