"""Clients of the caches a command works on: from the configuration, or an in-process emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from memcachier_async._client import DEFAULT_BASE_URL, client_on_stack
from memcachier_async._stack import StackOptions, build_stack

from .common import EXIT_USAGE, CacheTarget, CliError, ConfigError, NamedClient, Selection
from .emulated import emulated_clients, selected_names

__all__ = ["HttpBackend", "one_cache_name", "open_clients"]

HttpBackend = Literal["httpx", "aiohttp"]


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
    if not multi:
        _only_one(targets)
    # One stack for every cache of a command (many caches, one set of
    # sockets), built as AsyncAnalytics builds its own.
    try:
        stack = build_stack(
            StackOptions(retry=selection.retry, http_backend=http_backend),
            base_url=targets[0].base_url if targets else DEFAULT_BASE_URL,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        try:
            clients = [
                NamedClient(
                    t.name,
                    client_on_stack(
                        stack, t.username, t.password, cache_id=t.cache_id, base_url=t.base_url
                    ),
                )
                for t in targets
            ]
        except ValueError as exc:  # a refused base URL, ...
            raise ConfigError(str(exc)) from exc
        yield clients
    finally:
        await stack.aclose()


def _only_one(targets: list[CacheTarget]) -> None:
    if len(targets) > 1:
        names = ", ".join(t.name for t in targets)
        raise ConfigError(
            f"this command works on one cache; choose one with --cache NAME ({names})"
        )


def one_cache_name(selection: Selection) -> str:
    """The name of the one cache a command works on, before anything is opened: for a
    question asked before the event loop runs (where Ctrl-C is a plain KeyboardInterrupt)."""
    try:
        if selection.emulator:
            return selected_names(selection.caches, multi=False)[0]
        targets = selection.targets()
        _only_one(targets)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return targets[0].name
