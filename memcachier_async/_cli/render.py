"""How the commands show things: rich tables for people, plain dicts for ``--json``.

Pure functions from models to renderables or JSON-ready values; no I/O.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import attrs
from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from memcachier_async import to_dict
from memcachier_async._insight import Insight, MemoryUsage, ProcessedStats, ServerMemory
from memcachier_async._models import Capabilities, Credential, ServerStats, Stats

__all__ = [
    "DASH",
    "HISTORY_METRICS",
    "capabilities_json",
    "capabilities_table",
    "credential_json",
    "credentials_table",
    "demo_history_table",
    "demo_stats_table",
    "escape_controls",
    "fit",
    "fmt_bytes",
    "fmt_count",
    "fmt_percent",
    "fmt_rate",
    "history_json",
    "history_table",
    "insight_json",
    "mapping_rows",
    "plain",
    "plural",
    "rates_table",
    "safe",
    "server_stats_json",
    "short_names",
    "sparkline",
    "stats_json",
    "stats_table",
    "usage_style",
    "yes_no",
]

# Usage above these is shown in yellow, then red.
_WARN_USAGE = 0.80
_ALERT_USAGE = 0.95
DASH = "–"

# --- text from the server ---------------------------------------------------------

# C0 and C1 controls (ESC starts terminal sequences: colours, OSC 8 links, clearing
# the screen), bidirectional overrides (text that reads differently than it is),
# and lone surrogates (which a terminal cannot encode).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape (ESC as ``\\x1b``)."""
    return _UNSAFE.sub(_escaped, text)


def safe(text: object) -> str:
    """Server-supplied text for rich: controls escaped, and ``[...]`` shown, not read as markup."""
    return escape(escape_controls(str(text)))


def plain(text: object, style: str = "") -> Text:
    """Server-supplied text as a rich ``Text`` (never parsed as markup), controls escaped."""
    return Text(escape_controls(str(text)), style=style)


# --- numbers -------------------------------------------------------------------


def plural(count: int, noun: str) -> str:
    """``1 credential``, ``2 credentials``, ``0 caches``: English nouns with a plain -s."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def fmt_bytes(value: float | None) -> str:
    """``1.5 MiB``; binary units, as memcached's limits are set."""
    if value is None:
        return DASH
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


# A usage this far beyond 100 % is a server reporting nonsense within the
# wire's range (2**64 - 1 bytes of a 1-byte limit): say so in five characters.
_MAX_PERCENT = 999.0


def fmt_percent(value: float | None) -> str:
    if value is None:
        return DASH
    percent = value * 100
    return f"{percent:.1f}%" if percent <= _MAX_PERCENT + 0.05 else f">{_MAX_PERCENT:.0f}%"


# Counts up to this are shown whole ("99,999"); larger ones with an SI suffix,
# so that a column of counters is at most six characters wide.
_WHOLE_UP_TO = 99_999
_SI = ("k", "M", "G", "T", "P", "E", "Z")


def fmt_count(value: float | None) -> str:
    """``12,345``; ``123k``, ``1.23M``, ``18.4E`` beyond 99,999: three significant digits."""
    if value is None:
        return DASH
    if abs(value) <= _WHOLE_UP_TO:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    scaled = float(value)
    for suffix in _SI:
        scaled /= 1000
        # Round first: 999,999 is "1.00M", not "1000k".
        if abs(float(f"{scaled:.3g}")) < 1000 or suffix == _SI[-1]:
            digits = 0 if abs(scaled) >= 100 else 1 if abs(scaled) >= 10 else 2
            return f"{scaled:.{digits}f}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_rate(value: float | None) -> str:
    """``12.5/s``; ``1,234.5/s``; ``123k/s`` beyond 99,999."""
    if value is None:
        return DASH
    shown = f"{value:.1f}" if abs(value) < 1000 else fmt_count(value)
    return f"{shown}/s"


# --- fitting the terminal ----------------------------------------------------------

# Wide enough that rich measures a table's natural width, never a squeezed one.
_UNBOUNDED = 100_000


def natural_width(renderable: RenderableType) -> int:
    """The width ``renderable`` takes when nothing squeezes it."""
    console = Console(width=_UNBOUNDED, file=io.StringIO(), color_system=None)
    return console.measure(renderable).maximum


def fit(width: int, variants: Iterable[Callable[[], Table]]) -> Table:
    """The first of ``variants`` (fullest first) that fits ``width`` unsqueezed, else the last.

    rich squeezes a table that is too wide by cutting its cells ("835.0…"),
    which hides numbers; a variant with shorter names or fewer columns shows
    every number whole instead.
    """
    table: Table | None = None
    for make in variants:
        table = make()
        if natural_width(table) <= width:
            break
    assert table is not None, "no variant"
    return table


_PIECES = re.compile(r"(?=[.:])")


def short_names(names: Sequence[str]) -> tuple[dict[str, str], str]:
    """Server names without the ending all of them share (domain and port), and that ending.

    ``mc1.web.example.com:11211`` and ``mc2.web.example.com:11211`` become
    ``mc1`` and ``mc2``, sharing ``.web.example.com:11211``. Names that share
    no ending (or a single name) stay whole.
    """
    pieces = [_PIECES.split(name) for name in names]
    common = 0
    while len(names) > 1 and all(len(p) > common + 1 for p in pieces):
        if len({p[-common - 1] for p in pieces}) != 1:
            break
        common += 1
    if common == 0:
        return {name: name for name in names}, ""
    shared = "".join(pieces[0][-common:])
    return {name: "".join(p[:-common]) for name, p in zip(names, pieces, strict=True)}, shared


def usage_style(usage: float | None) -> str:
    if usage is None:
        return ""
    if usage >= _ALERT_USAGE:
        return "bold red"
    if usage >= _WARN_USAGE:
        return "yellow"
    return ""


def _ratio(hits: int, misses: int) -> float | None:
    return hits / (hits + misses) if hits + misses else None


# --- JSON ------------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def server_stats_json(stats: ServerStats) -> dict[str, int]:
    """The stats as the API sends them: ``time`` in Unix seconds, unknown fields kept."""
    fields = {a.name: getattr(stats, a.name) for a in attrs.fields(ServerStats)}
    fields.pop("extra")
    fields["time"] = int(stats.time.timestamp())
    return {**fields, **stats.extra}


def _memory_json(memory: MemoryUsage) -> dict[str, Any]:
    value: dict[str, Any] = to_dict(memory)
    return value


def insight_json(change: Insight) -> dict[str, Any]:
    value: dict[str, Any] = to_dict(change)
    return value


def stats_json(
    cache: str, cache_id: int | None, stats: Stats, change: Insight | None
) -> dict[str, Any]:
    """``stats --json``: every server, the total, memory, and the rates when measured."""
    return {
        "cache": cache,
        "cache_id": cache_id,
        "servers": {name: server_stats_json(s) for name, s in stats.items()},
        "total": server_stats_json(stats.total()) if len(stats) else None,
        "memory": _memory_json(stats.memory()),
        "rates": insight_json(change) if change is not None else None,
    }


def credential_json(credential: Credential) -> dict[str, Any]:
    """A credential; a new one carries its password (shown this once)."""
    value: dict[str, Any] = to_dict(credential, include_secrets=True)
    return value


def capabilities_json(capabilities: Capabilities) -> dict[str, bool]:
    value: dict[str, bool] = to_dict(capabilities)
    return value


# --- stats -----------------------------------------------------------------------


# A column of the stats table: its header, and its cell of a server (with that
# server's memory usage).
_StatsCell = Callable[[ServerStats, float | None], Text | str]
_STATS_COLUMNS: tuple[tuple[str, _StatsCell], ...] = (
    ("Items", lambda s, _: fmt_count(s.curr_items)),
    (
        "Memory",
        lambda s, u: Text(
            f"{fmt_bytes(s.bytes)} / {fmt_bytes(s.limit_maxbytes)}", style=usage_style(u)
        ),
    ),
    ("Used", lambda s, u: Text(fmt_percent(u), style=usage_style(u))),
    ("Get hits", lambda s, _: fmt_count(s.get_hits)),
    ("Get misses", lambda s, _: fmt_count(s.get_misses)),
    ("Hit ratio*", lambda s, _: fmt_percent(_ratio(s.get_hits, s.get_misses))),
    ("Sets", lambda s, _: fmt_count(s.cmd_set)),
    ("Evictions", lambda s, _: fmt_count(s.evictions)),
    ("Conns", lambda s, _: fmt_count(s.curr_connections)),
)
# As the width shrinks: first shorter server names, then these columns go, in
# this order (the memory column last: "Used" keeps its percentage).
_STATS_DROPPED = ("Conns", "Sets", "Get misses", "Memory")


def _title(cache: str, cache_id: int | None, count: int) -> str:
    ident = f" (id {cache_id})" if cache_id is not None else ""
    return f"Cache {safe(cache)}{ident}: {plural(count, 'server')}"


def _name_steps(names: Sequence[str]) -> list[tuple[dict[str, str], str]]:
    """Whole server names, then (when they share an ending) the short ones."""
    whole = ({name: name for name in names}, "")
    short = short_names(names)
    return [whole, short] if short[1] else [whole]


def _shared_note(shared: str) -> str:
    return f"Server names end in {safe(shared)}." if shared else ""


def stats_table(cache: str, cache_id: int | None, stats: Stats, width: int = _UNBOUNDED) -> Table:
    """One row per server and the total, the fullest server marked, fitted to ``width``."""
    steps: list[tuple[tuple[dict[str, str], str], tuple[str, ...]]]
    steps = [(names, ()) for names in _name_steps(list(stats))]
    last = steps[-1][0]
    steps += [(last, _STATS_DROPPED[: n + 1]) for n in range(len(_STATS_DROPPED))]
    return fit(width, (partial(_stats_table, cache, cache_id, stats, *step) for step in steps))


def _stats_table(
    cache: str,
    cache_id: int | None,
    stats: Stats,
    names: tuple[dict[str, str], str],
    dropped: Sequence[str],
) -> Table:
    shown, shared = names
    columns = [(h, cell) for h, cell in _STATS_COLUMNS if h not in dropped]
    table = Table(title=_title(cache, cache_id, len(stats)), title_justify="left")
    table.add_column("Server", no_wrap=True)
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    memory = stats.memory()
    fullest = memory.fullest.server if memory.fullest is not None and len(stats) > 1 else None
    for name, server in stats.items():
        usage = server.bytes / server.limit_maxbytes if server.limit_maxbytes else None
        label = plain(shown[name])
        if name == fullest:
            label.append(" ▲", style="bold yellow")
        table.add_row(label, *(cell(server, usage) for _, cell in columns))
    if len(stats):
        table.add_section()
        total = stats.total()
        table.add_row(
            Text("Total", style="bold"), *(cell(total, memory.usage) for _, cell in columns)
        )
    notes = [_memory_caption(memory), _shared_note(shared), "*since each server started"]
    table.caption = "  ".join(note for note in notes if note)
    table.caption_justify = "left"
    return table


def _memory_caption(memory: MemoryUsage) -> str:
    full: ServerMemory | None = memory.fullest
    if full is None:
        return "No servers."
    return (
        f"Memory: {fmt_percent(memory.usage)} of {fmt_bytes(memory.limit)} overall; "
        f"▲ fullest server {safe(full.server)} at {fmt_percent(full.usage)}."
    )


_RATE_COLUMNS: tuple[tuple[str, Callable[[ProcessedStats], str]], ...] = (
    ("Requests", lambda p: fmt_rate(p.request_rate)),
    ("Gets", lambda p: fmt_rate(p.get_rate)),
    ("Sets", lambda p: fmt_rate(p.set_rate)),
    ("Hit rate", lambda p: fmt_percent(p.hit_rate)),
    ("Get hit rate", lambda p: fmt_percent(p.get_hit_rate)),
    ("Evictions", lambda p: fmt_rate(p.eviction_rate)),
    ("In", lambda p: _byte_rate(p.bytes_read_rate)),
    ("Out", lambda p: _byte_rate(p.bytes_write_rate)),
)


def _byte_rate(value: float | None) -> str:
    return DASH if value is None else f"{fmt_bytes(value)}/s"


# As the width shrinks, after shorter server names: these columns go, in this order.
_RATES_DROPPED = ("Out", "In", "Gets", "Sets", "Get hit rate")


def rates_table(change: Insight, width: int = _UNBOUNDED) -> Table:
    """Rates and hit rates over the interval, per server and for the cache, fitted to ``width``."""
    steps: list[tuple[tuple[dict[str, str], str], tuple[str, ...]]]
    steps = [(names, ()) for names in _name_steps(list(change.servers))]
    last = steps[-1][0]
    steps += [(last, _RATES_DROPPED[: n + 1]) for n in range(len(_RATES_DROPPED))]
    return fit(width, (partial(_rates_table, change, *step) for step in steps))


def _rates_table(
    change: Insight, names: tuple[dict[str, str], str], dropped: Sequence[str]
) -> Table:
    shown, shared = names
    columns = [(h, cell) for h, cell in _RATE_COLUMNS if h not in dropped]
    seconds = change.seconds
    over = f"over {seconds:.0f} s" if seconds is not None else "(no interval yet)"
    table = Table(title=f"Rates {over}", title_justify="left")
    table.add_column("Server", no_wrap=True)
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for name, processed in change.servers.items():
        table.add_row(plain(shown.get(name, name)), *(cell(processed) for _, cell in columns))
    table.add_section()
    table.add_row(Text("Total", style="bold"), *(cell(change.total) for _, cell in columns))
    notes = []
    if change.new_servers or change.stalled_servers:
        notes.append(
            "no interval yet for "
            + ", ".join(map(safe, (*change.new_servers, *change.stalled_servers)))
        )
    if change.resets:
        notes.append("counters reset on " + ", ".join(map(safe, change.resets)))
    if change.clock_steps:
        notes.append("clock stepped (new baseline) on " + ", ".join(map(safe, change.clock_steps)))
    caption = "; ".join(notes) + "." if notes else ""
    table.caption = "  ".join(part for part in (caption, _shared_note(shared)) if part) or None
    table.caption_justify = "left"
    return table


# --- history ---------------------------------------------------------------------

_BARS = "▁▂▃▄▅▆▇█"


def _buckets(values: Sequence[float | None], width: int) -> list[float | None]:
    """``values`` squeezed into at most ``width`` points (means of runs)."""
    if len(values) <= width:
        return list(values)
    out: list[float | None] = []
    for i in range(width):
        part = [
            v
            for v in values[i * len(values) // width : (i + 1) * len(values) // width]
            if v is not None
        ]
        out.append(sum(part) / len(part) if part else None)
    return out


def sparkline(values: Sequence[float | None], width: int = 60) -> str:
    """A one-line chart of ``values`` with block characters; a gap where a value is ``None``."""
    points = _buckets(values, max(1, width))
    known = [v for v in points if v is not None and math.isfinite(v)]
    if not known:
        return " " * len(points)
    low, high = min(known), max(known)
    span = high - low
    chars = []
    for value in points:
        if value is None or not math.isfinite(value):
            chars.append(" ")
        elif span == 0:
            chars.append(_BARS[len(_BARS) // 2 - 1])
        else:
            chars.append(_BARS[round((value - low) / span * (len(_BARS) - 1))])
    return "".join(chars)


#: (label, how to read the point, how to show a value) for each history metric.
HISTORY_METRICS: tuple[tuple[str, str, Callable[[float | None], str]], ...] = (
    ("Hit rate", "hit_rate", fmt_percent),
    ("Requests/s", "request_rate", fmt_rate),
    ("Memory", "bytes", fmt_bytes),
    ("Evictions/s", "eviction_rate", fmt_rate),
)


# Widths tried for the sparklines, widest first, until the table fits.
_SPARK_WIDTHS = (60, 48, 36, 28, 20, 12)


def history_table(cache: str, series: Sequence[Insight], width: int = _UNBOUNDED) -> Table:
    """A sparkline per metric over the history window, with its min, max and latest, fitted
    to ``width`` by narrowing the sparklines."""
    return fit(width, (partial(_history_table, cache, series, w) for w in _SPARK_WIDTHS))


def _history_table(cache: str, series: Sequence[Insight], width: int) -> Table:
    start = series[0].start if series else None
    end = series[-1].end if series else None
    span = ""
    if start is not None and end is not None:
        span = f" from {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC"
    title = f"Cache {safe(cache)}: {plural(len(series), 'interval')}{span}"
    table = Table(title=title, title_justify="left")
    table.add_column("Metric", no_wrap=True)
    table.add_column("History", no_wrap=True, style="cyan")
    for header in ("Min", "Max", "Latest"):
        table.add_column(header, justify="right", no_wrap=True)
    for label, field, show in HISTORY_METRICS:
        values = [getattr(point.total, field) for point in series]
        known = [v for v in values if v is not None]
        table.add_row(
            label,
            sparkline(values, width),
            show(min(known) if known else None),
            show(max(known) if known else None),
            # The latest known value: the newest interval may have none yet.
            show(known[-1] if known else None),
        )
    return table


def history_json(cache: str, series: Sequence[Insight]) -> dict[str, Any]:
    """``history --json``: one point per interval with every processed metric of the cache."""
    return {
        "cache": cache,
        "points": [
            {
                "start": _when(point.start),
                "end": _when(point.end),
                "seconds": point.seconds,
                **to_dict(point.total),
            }
            for point in series
        ],
    }


# --- credentials -----------------------------------------------------------------


def yes_no(value: bool) -> Text:
    return Text("yes", style="green") if value else Text("no", style="dim")


def credentials_table(credentials: Sequence[Credential]) -> Table:
    table = Table(title=plural(len(credentials), "credential"), title_justify="left")
    for header in ("Username", "Id", "Primary", "Write", "Flush", "API"):
        table.add_column(header)
    for c in credentials:
        table.add_row(
            plain(c.sasl_username, style="bold" if c.primary else ""),
            DASH if c.id is None else str(c.id),
            yes_no(c.primary),
            yes_no(c.write_capability),
            yes_no(c.flush_capability),
            yes_no(c.api_capability),
        )
    return table


def capabilities_table(username: str, capabilities: Capabilities) -> Table:
    table = Table(title=f"Capabilities of {safe(username)}", title_justify="left")
    for header in ("Write", "Flush", "API"):
        table.add_column(header)
    table.add_row(
        yes_no(capabilities.write_capability),
        yes_no(capabilities.flush_capability),
        yes_no(capabilities.api_capability),
    )
    return table


def mapping_rows(values: Mapping[str, Any]) -> Table:
    """A two-column table of names and values."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for name, value in values.items():
        table.add_row(name, value if isinstance(value, Text) else plain(value))
    return table


# --- the demo's tables --------------------------------------------------------------

_MIB = 1024 * 1024


def _percent_of(part: float, whole: float) -> str:
    return fmt_percent(part / whole) if whole else "-"


def _mib_text(value: float) -> str:
    return f"{value / _MIB:.1f} MiB"


def demo_stats_table(stats: Stats) -> Table:
    total = stats.total()
    columns: Sequence[tuple[str, str, Any]] = (
        ("gets", f"{total.cmd_get:,}", lambda s: f"{s.cmd_get:,}"),
        (
            "hits",
            _percent_of(total.get_hits, total.cmd_get),
            lambda s: _percent_of(s.get_hits, s.cmd_get),
        ),
        ("sets", f"{total.cmd_set:,}", lambda s: f"{s.cmd_set:,}"),
        ("items", f"{total.curr_items:,}", lambda s: f"{s.curr_items:,}"),
        (
            "memory",
            _memory(total.bytes, total.limit_maxbytes),
            lambda s: _memory(s.bytes, s.limit_maxbytes),
        ),
        ("evictions", f"{total.evictions:,}", lambda s: f"{s.evictions:,}"),
    )
    table = Table(show_footer=True, footer_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("server", footer="total", no_wrap=True)
    for header, footer, _ in columns:
        table.add_column(header, footer=footer, justify="right")
    for name, server in stats.items():
        table.add_row(plain(name), *(cell(server) for _, _, cell in columns))
    return table


def _memory(used: int, limit: int) -> str:
    return f"{used / _MIB:.1f}/{limit / _MIB:.0f} MiB"


def demo_history_table(series: Sequence[Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("until", "requests/s", "get hits", "evictions/s", "items", "memory"):
        table.add_column(header, justify="left" if header == "until" else "right")
    for point in series:
        total = point.total
        end: datetime | None = point.end
        table.add_row(
            end.strftime("%H:%M:%S") if end else "-",
            _number(total.request_rate),
            f"{100 * total.get_hit_rate:.1f}%" if total.get_hit_rate is not None else "-",
            _number(total.eviction_rate),
            _number(total.items, "{:,.0f}"),
            _mib_text(total.bytes) if total.bytes is not None else "-",
        )
    return table


def _number(value: float | None, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)
