"""The exporter's HTTP side: its ASGI app served by uvicorn, configured here, not written.

Every promise the exporter makes about HTTP is one of uvicorn's settings
(:class:`ServerSettings`, documented in ``docs/exporter.md``):

- a request head of at most 16 KiB (h11's ``max_incomplete_event_size``,
  uvicorn's ``h11_max_incomplete_event_size``), else 400;
- a request arriving while ``limit_concurrency`` connections are open (its
  own included) or as many requests run gets 503 at once;
- an idle keep-alive connection closes after ``timeout_keep_alive`` s;
- on shutdown, in-flight requests get ``timeout_graceful_shutdown`` s to
  finish, then are cancelled.

uvicorn runs on asyncio only, so the exporter does too. The application
(the ``export`` command) owns the process' signals: uvicorn's own handlers
are left out (:class:`_Server`), and the command asks for a graceful stop
by leaving :func:`serve_asgi`'s block.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import attrs
import uvicorn
from starlette.types import ASGIApp

__all__ = ["ServerSettings", "serve_asgi"]


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class ServerSettings:
    """uvicorn's limits, as the exporter sets them."""

    max_head: int = attrs.field(default=16 * 1024, validator=_positive)
    limit_concurrency: int = attrs.field(default=512, validator=_positive)
    timeout_keep_alive: int = attrs.field(default=120, validator=_positive)
    timeout_graceful_shutdown: int = attrs.field(default=10, validator=_positive)
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    #: One INFO line per request on the ``uvicorn.access`` logger.
    access_log: bool = False


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers, saying when it listens.

    ``uvicorn.Server.serve`` installs SIGINT/SIGTERM handlers for the time
    it runs; the exporter is also used in-process (tests, applications), and
    the ``export`` command handles the signals itself, so none are installed.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


def _config(app: ASGIApp, settings: ServerSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http="h11",  # the parser whose head limit is the one documented
        lifespan="off",
        log_config=None,  # leave the process' logging configuration alone
        access_log=settings.access_log,
        server_header=False,
        h11_max_incomplete_event_size=settings.max_head,
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.timeout_keep_alive,
        timeout_graceful_shutdown=settings.timeout_graceful_shutdown,
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
    )


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp, host: str, port: int, settings: ServerSettings | None = None
) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on ``host:port`` while the block runs; yields the bound port.

    Leaving the block stops the server gracefully: no new connections,
    in-flight requests finish within ``timeout_graceful_shutdown`` or are
    cancelled. Cancelled from outside, it stops at once. Raises
    :class:`ssl.SSLError` for a certificate or key that cannot be used,
    :class:`OSError` when the address cannot be bound, and
    :class:`RuntimeError` on an event loop other than asyncio.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("the exporter's HTTP server (uvicorn) runs on asyncio only") from None
    settings = settings or ServerSettings()
    config = _config(app, settings)
    config.load()  # here, so that a bad certificate raises ssl.SSLError itself
    server = _Server(config)
    listener = _listen(host, port)
    bound = int(listener.getsockname()[1])

    async def run() -> None:
        # Shielded: uvicorn stops when told (should_exit / force_exit), so that
        # it always closes its listener and connections, even when cancelled.
        with anyio.CancelScope(shield=True):
            await server.serve([listener])

    with listener:
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await server.listening.wait()
            try:
                yield bound
            except BaseException:
                server.force_exit = True  # cancelled or failed: no grace period
                raise
            finally:
                server.should_exit = True
