"""The emulator over TCP: a Starlette ASGI app served by uvicorn in a thread.

uvicorn runs on its own asyncio loop in a worker thread, so ``serve()``
works the same from asyncio and trio. Dropping a connection (the ``reset``
and ``act_then_drop`` faults) needs the socket, which ASGI does not expose:
the app finds the connection in uvicorn's server state by the client's
address and aborts it.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread

from ._http import API_PREFIX, Drop, RequestHandler

__all__ = ["serve"]

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_Abort = Callable[[Any, bool], bool]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def _require_server() -> Any:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "serving the emulator over TCP needs Starlette and uvicorn: "
            "python -m pip install 'memcachier-async[emulator]'"
        ) from exc
    return uvicorn


def build_app(emulator: RequestHandler, abort: _Abort) -> Callable[[_Scope, _Receive, _Send], Any]:
    """The ASGI app; ``abort(client, reset)`` drops the connection of ``client``."""
    from starlette.requests import Request
    from starlette.responses import Response

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        result = await emulator.handle(
            scope["method"], target, request.headers.get("authorization"), body
        )
        if isinstance(result, Drop):
            if abort(scope.get("client"), result.reset):
                # Wait until uvicorn has seen the connection go, so it does not
                # try to answer for us.
                with anyio.move_on_after(1.0):
                    while not await request.is_disconnected():  # noqa: ASYNC110 - polls uvicorn
                        await anyio.sleep(0.005)
                return
            # Not under our uvicorn: the closest we can do is fail the request.
            raise ConnectionAbortedError("fault: connection dropped")
        response = Response(
            result.body,
            status_code=result.status,
            headers=dict(result.headers),
            media_type=result.content_type,
        )
        await response(scope, receive, send)

    return app


def _abort_in(server: Any) -> _Abort:
    def abort(client: Any, reset: bool) -> bool:
        for connection in list(server.server_state.connections):
            if getattr(connection, "client", None) == tuple(client or ()):
                transport = connection.transport
                sock = transport.get_extra_info("socket")
                if reset and sock is not None:
                    # Linger 0: close() sends a TCP RST instead of a FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                return True
        return False

    return abort


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted
    # sockets that say TCP, and without it Nagle's algorithm and delayed ACKs
    # stall every answer by ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def serve(emulator: RequestHandler, host: str, port: int) -> AsyncIterator[str]:
    """Run the emulator on ``host:port`` (0: a free port); yields the base URL."""
    uvicorn = _require_server()
    sock = _bind(host, port)
    holder: dict[str, Any] = {}
    app = build_app(emulator, lambda client, reset: _abort_in(holder["server"])(client, reset))
    config = uvicorn.Config(
        app,
        lifespan="off",
        http="h11",
        ws="none",
        loop="asyncio",
        log_level="warning",
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )
    server = holder["server"] = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="memcachier-emulator", daemon=True
    )
    started_sampling = not emulator.running
    try:
        thread.start()
        with anyio.fail_after(_START_TIMEOUT):
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError("the emulator's server failed to start")
                await anyio.sleep(0.01)
        if started_sampling:
            emulator.start()
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound}{API_PREFIX}"
    finally:
        if started_sampling:
            await anyio.to_thread.run_sync(emulator.stop)
        server.should_exit = True
        await anyio.to_thread.run_sync(thread.join, _STOP_TIMEOUT)
        sock.close()
