"""The ``watch`` command: live rates of many caches, round after round."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from functools import partial
from typing import Any

import anyio
import click
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from memcachier_async._client import AsyncAnalytics
from memcachier_async._fanout import CacheResult, fan_out
from memcachier_async._insight import Baseline, Insight
from memcachier_async._models import Stats

from . import render as r
from .clients import open_clients
from .common import (
    EXIT_API,
    CliError,
    NamedClient,
    Selection,
    describe_error,
    epilog,
    json_option,
    make_console,
    run_until_stopped,
    target_options,
)

# --- watch -----------------------------------------------------------------------


class _CacheView:
    """What ``watch`` remembers of one cache: one baseline snapshot, not a history."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.baseline = Baseline()
        self.latest: Stats | None = None
        self.change: Insight | None = None
        self.error: str | None = None
        self.failures = 0

    def update(self, result: CacheResult[Stats]) -> None:
        if result.error is not None or result.value is None:
            self._fail(result.error or RuntimeError("no stats"))
            return
        finished = anyio.current_time()
        try:
            result.value.memory()  # the table needs it: fail here, for this cache only
            change = self.baseline.advance(result.value, finished - result.elapsed, finished)
        except Exception as exc:  # one cache's failure is its row, never the table's
            self.baseline.reset()
            self._fail(exc)
            return
        self.error = None
        self.change = change if change is not None else self.change
        self.latest = result.value

    def _fail(self, error: BaseException) -> None:
        self.failures += 1
        self.error = describe_error(error)

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


_WATCH_COLUMNS = ("Servers", "Requests", "Hit rate", "Memory", "Fullest", "Evictions", "Errors")
# As the width shrinks, these columns go, in this order (errors stay in the caption).
_WATCH_DROPPED = ("Errors", "Servers", "Evictions")


def _watch_table(views: list[_CacheView], round_number: int, interval: float, width: int) -> Table:
    """The round's table, with as many columns as fit ``width`` (numbers are never cut)."""
    steps = [_WATCH_DROPPED[:n] for n in range(len(_WATCH_DROPPED) + 1)]
    return r.fit(width, (partial(_watch_table_of, views, round_number, interval, d) for d in steps))


def _watch_cells(view: _CacheView) -> dict[str, Text | str]:
    data = view.json()
    usage, fullest = data["memory_usage"], data["fullest_usage"]
    return {
        "Servers": r.DASH if data["servers"] is None else str(data["servers"]),
        "Requests": r.fmt_rate(data["request_rate"]),
        "Hit rate": r.fmt_percent(data["hit_rate"]),
        "Memory": Text(r.fmt_percent(usage), style=r.usage_style(usage)),
        "Fullest": Text(r.fmt_percent(fullest), style=r.usage_style(fullest)),
        "Evictions": r.fmt_rate(data["eviction_rate"]),
        "Errors": r.fmt_count(view.failures),
    }


def _watch_table_of(
    views: list[_CacheView], round_number: int, interval: float, dropped: tuple[str, ...]
) -> Table:
    table = Table(
        title=f"Round {round_number}, every {interval:g} s (Ctrl-C to stop)", title_justify="left"
    )
    table.add_column("Cache", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    columns = [header for header in _WATCH_COLUMNS if header not in dropped]
    for header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for view in views:
        status = Text("ok", style="green") if view.error is None else Text("error", style="red")
        cells = _watch_cells(view)
        table.add_row(r.plain(view.name), status, *(cells[header] for header in columns))
    errors = [f"{r.safe(v.name)}: {r.safe(v.error)}" for v in views if v.error is not None]
    if errors:
        table.caption = "\n".join(errors)
        table.caption_justify = "left"
    return table


@click.command(
    epilog=epilog(
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

    run_until_stopped(main)


async def _watch(
    clients: list[NamedClient], interval: float, rounds: int, limit: float, as_json: bool
) -> None:
    views = [_CacheView(c.name) for c in clients]
    apis = [c.api for c in clients]
    console = make_console()
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
            # Wall-clock time of the round, for the JSON lines (logs, charts).
            taken_at = datetime.now(timezone.utc)
            if interactive:
                live.update(
                    Group(_watch_table(views, number - 1, interval, console.width), progress)
                )
            # Results arrive as each cache answers: the bar moves, and a
            # slow cache holds back nobody else's numbers.
            async with fan_out(apis, AsyncAnalytics.stats, timeout=limit) as results:
                async for result in results:
                    views[result.index].update(result)
                    progress.advance(task)
            if as_json:
                caches = [v.json() for v in views]
                click.echo(
                    _json_line({"round": number, "time": taken_at.isoformat(), "caches": caches})
                )
            elif interactive:
                live.update(_watch_table(views, number, interval, console.width))
            else:
                console.print(_watch_table(views, number, interval, console.width))
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


def register(group: click.Group) -> None:
    """Add this module's commands to the ``memcachier-analytics`` group."""
    for command in (watch,):
        group.add_command(command)
