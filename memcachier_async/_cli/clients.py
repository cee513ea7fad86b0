"""Clients of the caches a command works on: from the configuration, or an in-process emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

import httpx

from memcachier_async._client import DEFAULT_LIMITS, DEFAULT_TIMEOUT, AsyncAnalytics
from memcachier_async._transports.retry import RetryPolicy, RetryTransport

from .common import ConfigError, NamedClient, Selection
from .emulated import emulated_clients

__all__ = ["HttpBackend", "open_clients"]

HttpBackend = Literal["httpx", "aiohttp"]


def _shared_http_client(retry: RetryPolicy, backend: HttpBackend = "httpx") -> httpx.AsyncClient:
    # One pool for every cache of a command: many caches, one set of sockets.
    inner: httpx.AsyncBaseTransport
    if backend == "aiohttp":
        # Much less CPU per call than httpcore under concurrency (the exporter's
        # probes); asyncio only, which the command line always runs on.
        from memcachier_async._transports.aiohttp import AiohttpTransport

        inner = AiohttpTransport(limits=DEFAULT_LIMITS)
    else:
        inner = httpx.AsyncHTTPTransport(limits=DEFAULT_LIMITS)
    return httpx.AsyncClient(
        transport=RetryTransport(inner, retry),
        timeout=DEFAULT_TIMEOUT,
        limits=DEFAULT_LIMITS,
        follow_redirects=False,
    )


@contextlib.asynccontextmanager
async def open_clients(
    selection: Selection, *, multi: bool = False, http_backend: HttpBackend = "httpx"
) -> AsyncIterator[list[NamedClient]]:
    """Clients of the selected caches, closed on exit.

    Without ``multi`` the command works on one cache: a usage error when
    several are selected. With ``--emulator``, an emulator runs in this
    process (with simulated traffic) for as long as the clients are open.
    ``http_backend="aiohttp"`` sends through aiohttp (the ``aiohttp`` extra).
    """
    if selection.emulator:
        async with emulated_clients(
            selection.caches, multi=multi, retry=selection.retry
        ) as clients:
            yield clients
        return
    targets = selection.targets()
    if not multi and len(targets) > 1:
        names = ", ".join(t.name for t in targets)
        raise ConfigError(
            f"this command works on one cache; choose one with --cache NAME ({names})"
        )
    http = _shared_http_client(selection.retry, http_backend)
    async with http:
        try:
            clients = [
                NamedClient(
                    t.name,
                    AsyncAnalytics(
                        t.username,
                        t.password,
                        cache_id=t.cache_id,
                        base_url=t.base_url,
                        http_client=http,
                    ),
                )
                for t in targets
            ]
        except ValueError as exc:  # a refused base URL, ...
            raise ConfigError(str(exc)) from exc
        yield clients
