"""The ``stats`` and ``history`` commands."""

from __future__ import annotations

import anyio
import click

from memcachier_async._insight import Insight, history_series, insight

from . import render as r
from .clients import open_clients
from .common import (
    Selection,
    emit_json,
    epilog,
    json_option,
    make_console,
    run_async,
    target_options,
)

# --- stats -----------------------------------------------------------------------


@click.command(
    epilog=epilog(
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
        console = make_console()
        console.print(r.stats_table(client.name, cache_id, first, width=console.width))
        if change is not None:
            console.print(r.rates_table(change, width=console.width))

    run_async(main)


# --- history ---------------------------------------------------------------------


@click.command(
    epilog=epilog(
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
        console = make_console()
        if not series:
            console.print(
                f"Cache {r.safe(client.name)}: not enough history yet (it needs two samples)."
            )
            return
        console.print(r.history_table(client.name, series, width=console.width))

    run_async(main)


def register(group: click.Group) -> None:
    """Add this module's commands to the ``memcachier-analytics`` group."""
    for command in (
        stats,
        history,
    ):
        group.add_command(command)
