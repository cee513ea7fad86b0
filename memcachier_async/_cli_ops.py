"""The ``memcachier-analytics`` commands that work on caches.

stats, history, flush, credentials, watch and export. Each takes the
target options of :mod:`._cli_common` (flags, environment, ``--config``
file, or ``--emulator``) and ``--json``. :func:`register` adds them to the
command group.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from . import _cli_render as r
from ._cli_common import (
    EXIT_API,
    EXIT_USAGE,
    CliError,
    NamedClient,
    Selection,
    describe_error,
    emit_json,
    open_clients,
    run_async,
    target_options,
)
from ._client import AsyncAnalytics
from ._errors import ServerError
from ._fanout import CacheResult, fan_out
from ._insight import Insight, history_series, insight, next_baseline
from ._models import Stats

__all__ = ["register"]

F = TypeVar("F", bound=Callable[..., Any])

_EXIT_CODES = (
    "Exit codes: 0 ok, 2 usage or configuration, 3 credentials refused (401/403), "
    "4 other API failure (incl. a partial flush), 5 no answer (network, timeout)."
)


def json_option(function: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables."
    )(function)


# Width of output that is not a terminal (a pipe, a file): wide enough that
# tables are not cut, since nothing wraps it.
_PIPE_WIDTH = 160


def _console() -> Console:
    # Created per command, so output goes to the stdout of the moment (CliRunner's).
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH
    return console


def _epilog(*examples: str) -> str:
    lines = "\n".join(f"  {example}" for example in examples)
    return f"\b\nExamples:\n{lines}\n\n{_EXIT_CODES}"


# --- stats -----------------------------------------------------------------------


@click.command(
    epilog=_epilog(
        "memcachier-analytics stats --emulator",
        "MEMCACHIER_USERNAME=... MEMCACHIER_PASSWORD=... memcachier-analytics stats --interval 10",
        "memcachier-analytics stats --config caches.toml --cache web --json",
    )
)
@target_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Read the stats twice, SECONDS apart, and show rates and hit rates over that time.",
)
@json_option
def stats(selection: Selection, interval: float | None, as_json: bool) -> None:
    """Per-server stats of a cache, its total and memory use.

    The fullest server is marked: shards fill unevenly and evictions start
    there. With --interval, also requests, hits and evictions per second.
    """

    async def main() -> None:
        async with open_clients(selection) as (client,):
            first = await client.api.stats()
            change: Insight | None = None
            if interval is not None:
                await anyio.sleep(interval)
                latest = await client.api.stats()
                change = insight(first, latest)
                first = latest
            cache_id = client.api.cache_id
        if as_json:
            emit_json(r.stats_json(client.name, cache_id, first, change))
            return
        console = _console()
        console.print(r.stats_table(client.name, cache_id, first))
        if change is not None:
            console.print(r.rates_table(change))

    run_async(main)


# --- history ---------------------------------------------------------------------


@click.command(
    epilog=_epilog(
        "memcachier-analytics history --emulator",
        "memcachier-analytics history --emulator --json | jq '.points[-1].hit_rate'",
    )
)
@target_options
@json_option
def history(selection: Selection, as_json: bool) -> None:
    """Sparklines of a cache's history: hit rate, requests/s, memory, evictions/s.

    The history holds samples of every server; each point is one interval
    between two samples, for the whole cache. --json prints every metric
    of every point.
    """

    async def main() -> None:
        async with open_clients(selection) as (client,):
            records = await client.api.history()
        series = history_series(records)
        if as_json:
            emit_json(r.history_json(client.name, series))
            return
        console = _console()
        if not series:
            console.print(f"Cache {client.name}: not enough history yet (it needs two samples).")
            return
        # Leave room for the metric name and the three value columns.
        width = max(10, min(console.width, 120) - 50)
        console.print(r.history_table(client.name, series, width=width))

    run_async(main)


# --- flush -----------------------------------------------------------------------


@click.command(
    epilog=_epilog(
        "memcachier-analytics flush --emulator --yes",
        "memcachier-analytics flush --config caches.toml --cache web",
    )
)
@target_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def flush(selection: Selection, yes: bool, as_json: bool) -> None:
    """Remove every item from a cache (the credential needs the flush capability).

    If some servers do not answer, the others may have been flushed: their
    names are reported and the exit code is 4.
    """

    async def main() -> None:
        async with open_clients(selection) as (client,):
            if not yes:
                click.confirm(f"Flush every item of cache {client.name}?", abort=True, err=True)
            try:
                await client.api.flush()
            except ServerError as error:
                if not error.servers:
                    raise
                _partial_flush(client.name, error.servers, as_json)
        if as_json:
            emit_json({"cache": client.name, "flushed": True, "failed_servers": []})
        else:
            _console().print(f"Flushed cache {client.name}.")

    run_async(main)


def _partial_flush(cache: str, servers: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        emit_json({"cache": cache, "flushed": False, "failed_servers": list(servers)})
    raise CliError(
        f"flush of cache {cache} failed on {len(servers)} server(s): {', '.join(servers)}; "
        "the other servers may have been flushed",
        EXIT_API,
    )


# --- credentials -----------------------------------------------------------------


@click.group(
    epilog=_epilog(
        "memcachier-analytics credentials list --emulator",
        "memcachier-analytics credentials create --emulator",
        "memcachier-analytics credentials update USERNAME --no-flush --write",
        "memcachier-analytics credentials promote USERNAME",
        "memcachier-analytics credentials delete USERNAME --yes",
    )
)
def credentials() -> None:
    """List, create, update, promote and delete a cache's credentials."""


@credentials.command("list")
@target_options
@json_option
def credentials_list(selection: Selection, as_json: bool) -> None:
    """Every credential of the cache and its capabilities."""

    async def main() -> None:
        async with open_clients(selection) as (client,):
            found = await client.api.list_credentials()
        if as_json:
            emit_json([r.credential_json(c) for c in found])
        else:
            _console().print(r.credentials_table(found))

    run_async(main)


@credentials.command("create")
@target_options
@json_option
def credentials_create(selection: Selection, as_json: bool) -> None:
    """Create a credential and print its password: the only time it is shown."""

    async def main() -> None:
        async with open_clients(selection) as (client,):
            created = await client.api.create_credential()
        if as_json:
            emit_json(r.credential_json(created))
            return
        console = _console()
        console.print(
            r.mapping_rows(
                {
                    "username": created.sasl_username,
                    "password": created.sasl_password,
                    "write": r.yes_no(created.write_capability),
                    "flush": r.yes_no(created.flush_capability),
                    "api": r.yes_no(created.api_capability),
                }
            )
        )
        console.print(
            Text("Store the password now: the API never shows it again.", style="bold yellow")
        )

    run_async(main)


def _flag(name: str, what: str) -> Callable[[F], F]:
    return click.option(
        f"--{name}/--no-{name}",
        default=None,
        help=f"Allow or deny {what} (unchanged when not given).",
    )


@credentials.command(
    "update",
    epilog=_epilog(
        "memcachier-analytics credentials update 4A1B2C --no-flush",
        "memcachier-analytics credentials update 4A1B2C --write --api --no-flush",
    ),
)
@click.argument("credential", metavar="USERNAME")
@_flag("write", "writing to the cache")
@_flag("flush", "flushing the cache")
@_flag("api", "this API")
@target_options
@json_option
def credentials_update(
    selection: Selection,
    credential: str,
    write: bool | None,
    flush: bool | None,
    api: bool | None,
    as_json: bool,
) -> None:
    """Change what credential USERNAME may do; the other capabilities are kept."""
    if write is None and flush is None and api is None:
        raise click.UsageError(
            "give at least one of --write/--no-write, --flush/--no-flush, --api/--no-api"
        )

    async def main() -> None:
        async with open_clients(selection) as (client,):
            now = await client.api.update_credential(
                credential, write_capability=write, flush_capability=flush, api_capability=api
            )
        if as_json:
            emit_json({"sasl_username": credential, **r.capabilities_json(now)})
        else:
            _console().print(r.capabilities_table(credential, now))

    run_async(main)


@credentials.command("promote")
@click.argument("credential", metavar="USERNAME")
@target_options
@json_option
def credentials_promote(selection: Selection, credential: str, as_json: bool) -> None:
    """Make credential USERNAME the cache's primary one."""

    async def main() -> None:
        async with open_clients(selection) as (client,):
            promoted = await client.api.promote_credential(credential)
        if as_json:
            emit_json(r.credential_json(promoted))
        else:
            _console().print(f"{promoted.sasl_username} is now the primary credential.")

    run_async(main)


@credentials.command("delete")
@click.argument("credential", metavar="USERNAME")
@target_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def credentials_delete(selection: Selection, credential: str, yes: bool, as_json: bool) -> None:
    """Delete credential USERNAME (applications using it lose access)."""

    async def main() -> None:
        async with open_clients(selection) as (client,):
            if not yes:
                click.confirm(
                    f"Delete credential {credential} of cache {client.name}?", abort=True, err=True
                )
            await client.api.delete_credential(credential)
        if as_json:
            emit_json({"sasl_username": credential, "deleted": True})
        else:
            _console().print(f"Deleted credential {credential}.")

    run_async(main)


# --- watch -----------------------------------------------------------------------


class _CacheView:
    """What ``watch`` remembers of one cache: one baseline snapshot, not a history."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.baseline: Stats | None = None
        self.latest: Stats | None = None
        self.change: Insight | None = None
        self.error: str | None = None
        self.failures = 0

    def update(self, result: CacheResult[Stats]) -> None:
        if result.error is not None or result.value is None:
            self.failures += 1
            self.error = describe_error(result.error or RuntimeError("no stats"))
            return
        self.error = None
        if self.baseline is not None:
            self.change = insight(self.baseline, result.value)
        self.baseline = next_baseline(self.baseline, result.value)
        self.latest = result.value

    def json(self) -> dict[str, Any]:
        change = self.change.total if self.change is not None else None
        memory = self.latest.memory() if self.latest is not None else None
        return {
            "cache": self.name,
            "ok": self.error is None,
            "error": self.error,
            "failures": self.failures,
            "servers": len(self.latest) if self.latest is not None else None,
            "request_rate": change.request_rate if change else None,
            "hit_rate": change.hit_rate if change else None,
            "eviction_rate": change.eviction_rate if change else None,
            "memory_used": memory.used if memory else None,
            "memory_limit": memory.limit if memory else None,
            "memory_usage": memory.usage if memory else None,
            "fullest_usage": memory.fullest.usage if memory and memory.fullest else None,
        }


def _watch_table(views: list[_CacheView], round_number: int, interval: float) -> Table:
    table = Table(
        title=f"Round {round_number}, every {interval:g} s (Ctrl-C to stop)", title_justify="left"
    )
    table.add_column("Cache", no_wrap=True)
    table.add_column("Status")
    for header in ("Servers", "Requests", "Hit rate", "Memory", "Fullest", "Evictions", "Errors"):
        table.add_column(header, justify="right")
    for view in views:
        data = view.json()
        status = Text("ok", style="green") if view.error is None else Text("error", style="red")
        usage, fullest = data["memory_usage"], data["fullest_usage"]
        table.add_row(
            view.name,
            status,
            r.DASH if data["servers"] is None else str(data["servers"]),
            r.fmt_rate(data["request_rate"]),
            r.fmt_percent(data["hit_rate"]),
            Text(r.fmt_percent(usage), style=r.usage_style(usage)),
            Text(r.fmt_percent(fullest), style=r.usage_style(fullest)),
            r.fmt_rate(data["eviction_rate"]),
            str(view.failures),
        )
    errors = [f"{v.name}: {v.error}" for v in views if v.error is not None]
    if errors:
        table.caption = "\n".join(errors)
        table.caption_justify = "left"
    return table


@click.command(
    epilog=_epilog(
        "memcachier-analytics watch --emulator",
        "memcachier-analytics watch --config caches.toml --interval 30",
        "memcachier-analytics watch --emulator --rounds 3 --json",
    )
)
@target_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Time between rounds.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=0,
    help="Stop after this many rounds (0: run until interrupted).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up on a cache's stats after this long (default: the interval, at least 10 s).",
)
@json_option
def watch(
    selection: Selection, interval: float, rounds: int, timeout: float | None, as_json: bool
) -> None:
    """A live table of one or many caches: rates, hit rate, memory and errors.

    Every cache of --config is watched (or those chosen with --cache). A
    round reads every cache at once; rates cover the time since the
    previous round. --json prints one JSON object per round.
    """

    async def main() -> None:
        async with open_clients(selection, multi=True) as clients:
            await _watch(clients, interval, rounds, timeout or max(interval, 10.0), as_json)

    with contextlib.suppress(KeyboardInterrupt):
        run_async(main)


async def _watch(
    clients: list[NamedClient], interval: float, rounds: int, limit: float, as_json: bool
) -> None:
    views = [_CacheView(c.name) for c in clients]
    apis = [c.api for c in clients]
    console = _console()
    progress = Progress(
        TextColumn("polling"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    )
    task = progress.add_task("round", total=len(clients))
    live = Live(console=console, auto_refresh=True, refresh_per_second=8)
    interactive = console.is_terminal and not as_json
    started = time.monotonic()
    number = 0

    if interactive:
        live.start()
    try:
        while rounds == 0 or number < rounds:
            number += 1
            progress.reset(task, total=len(clients))
            if interactive:
                live.update(Group(_watch_table(views, number - 1, interval), progress))
            # Results arrive as each cache answers: the bar moves, and a
            # slow cache holds back nobody else's numbers.
            async with fan_out(apis, AsyncAnalytics.stats, timeout=limit) as results:
                async for result in results:
                    views[result.index].update(result)
                    progress.advance(task)
            if as_json:
                click.echo(_json_line({"round": number, "caches": [v.json() for v in views]}))
            elif interactive:
                live.update(_watch_table(views, number, interval))
            else:
                console.print(_watch_table(views, number, interval))
            if rounds and number >= rounds:
                break
            # A fixed cadence: the next round starts on the interval's grid,
            # however long this one took.
            next_start = (
                started + math.floor((time.monotonic() - started) / interval + 1) * interval
            )
            await anyio.sleep(max(0.0, next_start - time.monotonic()))
    finally:
        if interactive:
            live.stop()
    failing = [v for v in views if v.error is not None]
    if failing and len(failing) == len(views):
        raise CliError(f"no cache answered in the last round: {failing[0].error}", EXIT_API)


def _json_line(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


# --- export ----------------------------------------------------------------------


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command(
    epilog=_epilog(
        "memcachier-analytics export --emulator",
        "memcachier-analytics export --config caches.toml --listen 127.0.0.1:9151 --interval 30",
        "curl -s http://127.0.0.1:9151/metrics | grep memcachier_up",
    )
)
@target_options
@click.option(
    "--listen",
    default="127.0.0.1:9151",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve /metrics (loopback by default; port 0 picks a free one).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Time between polls of every cache.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up on a cache's stats after this long (default: the interval, at least 10 s).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=0,
    help="Stop after this many polls (0: serve until interrupted).",
)
def export(
    selection: Selection, listen: str, interval: float, timeout: float | None, rounds: int
) -> None:
    """Serve Prometheus metrics of every configured cache on /metrics.

    Metric names follow memcached_exporter (memcached_commands_total,
    memcached_current_bytes, ...; labels cache and server), plus
    memcachier_up{cache}, poll durations and error counts. Needs the
    prometheus extra: pip install 'memcachier-async[prometheus]'.
    """
    try:
        from ._exporter import Exporter
    except ImportError as exc:
        raise CliError(
            f"export needs prometheus-client ({exc}): pip install 'memcachier-async[prometheus]'",
            EXIT_USAGE,
        ) from None
    host, port = _listen_address(listen)

    async def main() -> None:
        async with open_clients(selection, multi=True) as clients:
            exporter = Exporter(
                [(c.name, c.api) for c in clients], interval=interval, timeout=timeout
            )
            with exporter.serve(host, port) as url:
                click.echo(f"Serving metrics of {len(clients)} cache(s) on {url}", err=True)
                await exporter.run(rounds=rounds or None)

    try:
        run_async(main)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise CliError(f"cannot listen on {listen}: {exc.strerror or exc}", EXIT_USAGE) from None


def register(group: click.Group) -> None:
    """Add the commands of this module to the ``memcachier-analytics`` group."""
    for command in (stats, history, flush, credentials, watch, export):
        group.add_command(command)
