"""The ``advise`` command: capacity advice from history, for one cache or a fleet."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from memcachier_async._capacity import capacity
from memcachier_async._client import AsyncAnalytics
from memcachier_async._fanout import fan_out
from memcachier_async._models import Capacity, HistoryRecord, ServerCapacity
from memcachier_async._serialize import to_dict

from . import render as r
from .clients import open_clients
from .common import (
    CliError,
    NamedClient,
    Selection,
    describe_error,
    emit_json,
    epilog,
    exit_code_for,
    json_option,
    make_console,
    run_async,
    target_options,
)

__all__ = ["advise", "fmt_duration", "projection", "register"]

_BARS = "▁▂▃▄▅▆▇█"
_YEAR = 365 * 86400.0


def fmt_duration(seconds: float | None) -> str:
    """``"full now"``, ``"45s"``, ``"15m 30s"``, ``"3h 20m"``, ``"2d 4h"``, ``"> 1 year"``;
    a dash when the server is not filling (``None``)."""
    if seconds is None:
        return r.DASH
    if seconds <= 0:
        return "full now"
    if seconds >= _YEAR:
        return "> 1 year"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _fill(rate: float) -> str:
    if rate == 0:
        return "0 B/s"
    sign = "+" if rate > 0 else "-"
    return f"{sign}{r.fmt_bytes(abs(rate))}/s"


def _usage(server: ServerCapacity) -> float | None:
    return server.used_bytes / server.limit_bytes if server.limit_bytes else None


def _short_names(names: Sequence[str]) -> tuple[dict[str, str], str]:
    """Names without the domain they all share (``mc1`` of ``mc1.x.example:11211``), and it."""
    if not names:
        return {}, ""
    # One server: its domain is the part after its first label.
    suffix = names[0] if len(names) > 1 else names[0][names[0].find(".") :]
    for name in names[1:]:
        while not name.endswith(suffix):
            suffix = suffix[1:]
    cut = suffix.find(".")
    if cut < 0 or "." not in names[0]:
        return {n: n for n in names}, ""
    shared = suffix[cut:]
    return {n: n[: len(n) - len(shared)] for n in names}, shared


# --- one cache -------------------------------------------------------------------


def _bar(value: float, limit: float) -> str:
    share = min(1.0, max(0.0, value / limit)) if limit > 0 else 1.0
    return _BARS[round(share * (len(_BARS) - 1))]


def projection(samples: Sequence[tuple[datetime, int]], server: ServerCapacity, width: int) -> Text:
    """The server's ``bytes`` over the window as bars scaled to its limit, then (dim) the
    straight line of its fill rate until it reaches the limit."""
    if not samples or width < 2:
        return Text("")
    start, end = samples[0][0], samples[-1][0]
    past = max((end - start).total_seconds(), 1.0)
    until = server.seconds_until_full
    ahead = until if until is not None and 0 < until < math.inf else 0.0
    # The history keeps at least half the line, however far away the limit is.
    history_cells = width if ahead == 0 else max(width // 2, round(width * past / (past + ahead)))
    history_cells = min(history_cells, width)
    line = Text()
    index = 0
    offsets = [(moment - start).total_seconds() for moment, _ in samples]
    for cell in range(history_cells):
        moment = (cell + 1) / history_cells * past
        while index + 1 < len(samples) and offsets[index + 1] <= moment:
            index += 1
        line.append(_bar(samples[index][1], server.limit_bytes), style="cyan")
    cells = width - history_cells
    for cell in range(cells):
        later = (cell + 1) / cells * ahead
        projected = server.used_bytes + server.fill_rate * later
        line.append(_bar(projected, server.limit_bytes), style="dim")
    return line


def server_table(name: str, advice: Capacity) -> Table:
    """One row per server: memory, fill rate, time until full, evictions and memory needed."""
    names, shared = _short_names(sorted(advice.servers))
    count = len(advice.servers)
    title = f"Cache {r.safe(name)}: {count} server{'' if count == 1 else 's'}"
    if shared:
        title += f" (…{r.safe(shared)})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # A name longer than this is cut (with an ellipsis) rather than squeezing the numbers.
    table.add_column("Server", no_wrap=True, max_width=24)
    for header in ("Used", "Limit", "Use", "Fill", "Full in", "Evicted", "Needs"):
        table.add_column(header, justify="right", no_wrap=True)
    for server_name in sorted(advice.servers):
        server = advice.servers[server_name]
        usage = _usage(server)
        fullest = advice.fullest is not None and advice.fullest.server == server_name
        table.add_row(
            r.plain(names[server_name] + (" *" if fullest else "")),
            r.fmt_bytes(server.used_bytes),
            r.fmt_bytes(server.limit_bytes),
            Text(r.fmt_percent(usage), style=r.usage_style(usage)),
            _fill(server.fill_rate),
            fmt_duration(server.seconds_until_full),
            f"{server.evictions:,}",
            r.fmt_bytes(server.needed_bytes),
        )
    start, end = advice.window
    table.caption = f"* the fullest. History {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC."
    table.caption_justify = "left"
    return table


def _summary(advice: Capacity) -> str:
    fullest = advice.fullest
    if fullest is None:
        return "No history yet: nothing to advise."
    lines = []
    until = advice.seconds_until_full
    if until == 0:
        lines.append(f"{fullest.server} is full now.")
    elif until is not None:
        lines.append(
            f"{fullest.server} fills first: full in {fmt_duration(until)} "
            f"at {_fill(fullest.fill_rate)}."
        )
    else:
        lines.append(f"{fullest.server} is the fullest; no server is filling.")
    if advice.suggested_limit_bytes is not None:
        lines.append(
            f"Evictions in the window: a plan of {r.fmt_bytes(advice.suggested_limit_bytes)} "
            f"({len(advice.servers)} × the most a server needed) would have held them."
        )
    elif not advice.evicting:
        lines.append("No evictions in the window.")
    return "\n".join(r.safe(line) for line in lines)


def _chart_title(server: ServerCapacity) -> str:
    until = server.seconds_until_full
    title = f"Memory of {server.server}, on a scale to its limit"
    if until is not None and until > 0:
        title += f"; dim: at {_fill(server.fill_rate)}, the limit in {fmt_duration(until)}"
    return title + ":"


def one_cache(name: str, records: Sequence[HistoryRecord], advice: Capacity, width: int) -> Group:
    """The table per server, the fullest server's bytes with its projection, and the advice."""
    parts: list[Any] = []
    if advice.servers:
        parts.append(server_table(name, advice))
    fullest = advice.fullest
    if fullest is not None:
        samples = sorted(
            (record.timestamp, record.stats.bytes)
            for record in records
            if record.server == fullest.server
        )
        parts.append(r.plain(_chart_title(fullest)))
        parts.append(projection(samples, fullest, max(10, min(width, 100) - 1)))
    parts.append(Text.from_markup(_summary(advice)))
    return Group(*parts)


# --- a fleet ---------------------------------------------------------------------


def _order(entry: dict[str, Any]) -> tuple[Any, ...]:
    advice: Capacity | None = entry["advice"]
    if advice is None:
        return (3, 0.0, 0.0, entry["cache"])
    until = advice.seconds_until_full
    usage = (_usage(advice.fullest) or 0.0) if advice.fullest is not None else 0.0
    rank = 0 if advice.evicting else 1 if until is not None else 2
    return (rank, until if until is not None else 0.0, -usage, entry["cache"])


def fleet_table(entries: Sequence[dict[str, Any]]) -> Table:
    """One row per cache, the most urgent first: evicting, then by time until full."""
    table = Table(
        title="Capacity: the cache that runs out first on top",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("Cache", no_wrap=True, max_width=20)
    for header in ("Servers", "Fullest", "Fill", "Full in", "Evicting", "Suggested"):
        table.add_column(header, justify="right", no_wrap=True)
    for entry in entries:
        advice: Capacity | None = entry["advice"]
        if advice is None:
            table.add_row(r.plain(entry["cache"]), Text("error", style="red"), *[r.DASH] * 5)
            continue
        fullest = advice.fullest
        usage = _usage(fullest) if fullest is not None else None
        table.add_row(
            r.plain(entry["cache"]),
            str(len(advice.servers)),
            Text(r.fmt_percent(usage), style=r.usage_style(usage)),
            _fill(fullest.fill_rate) if fullest is not None else r.DASH,
            fmt_duration(advice.seconds_until_full),
            Text("yes", style="bold red") if advice.evicting else Text("no"),
            r.fmt_bytes(advice.suggested_limit_bytes),
        )
    errors = [f"{r.safe(e['cache'])}: {r.safe(e['error'])}" for e in entries if e["error"]]
    if errors:
        table.caption = "\n".join(errors)
        table.caption_justify = "left"
    return table


def _json(entry: dict[str, Any]) -> dict[str, Any]:
    advice = entry["advice"]
    return {
        "cache": entry["cache"],
        "ok": advice is not None,
        "error": entry["error"],
        "capacity": to_dict(advice) if advice is not None else None,
    }


async def _fleet(clients: Sequence[NamedClient]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [
        {"cache": c.name, "advice": None, "error": None} for c in clients
    ]
    failures: list[BaseException] = []
    async with fan_out([c.api for c in clients], AsyncAnalytics.capacity) as results:
        async for result in results:
            entry = entries[result.index]
            if result.error is not None:
                entry["error"] = describe_error(result.error)
                failures.append(result.error)
            else:
                entry["advice"] = result.value
    if failures and len(failures) == len(entries):
        first = failures[0]
        raise CliError(f"no cache answered: {describe_error(first)}", exit_code_for(first))
    return sorted(entries, key=_order)


@click.command(
    epilog=epilog(
        "memcachier-analytics advise --emulator --cache web",
        "memcachier-analytics advise --config caches.toml",
        "memcachier-analytics advise --config caches.toml --json | jq '.caches[0]'",
    )
)
@target_options
@json_option
def advise(selection: Selection, as_json: bool) -> None:
    """Capacity advice from history: which server fills up next, when, what size would do.

    For one cache: a row per server (memory used, fill rate over the history,
    time until full, evictions in the window, memory that would have held
    them) and the fullest server's memory with its projection to the limit.
    For several (--config): a row per cache, evicting caches first, then by
    time until full. Exits 0 whatever the advice.
    """

    async def main() -> None:
        async with open_clients(selection, multi=True) as clients:
            if len(clients) == 1:
                (client,) = clients
                records = await client.api.history()
                entries: list[dict[str, Any]] = [
                    {"cache": client.name, "advice": capacity(records), "error": None}
                ]
            else:
                records = []
                entries = await _fleet(clients)
        if as_json:
            emit_json({"caches": [_json(e) for e in entries]})
            return
        console = make_console()
        if len(entries) == 1:
            (entry,) = entries
            console.print(one_cache(entry["cache"], records, entry["advice"], console.width))
        else:
            console.print(fleet_table(entries))

    run_async(main)


def register(group: click.Group) -> None:
    """Add ``advise`` to the ``memcachier-analytics`` group."""
    group.add_command(advise)
