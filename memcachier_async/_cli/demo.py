"""The ``demo`` and ``emulator`` commands: a tour of the SDK, and the emulator served over TCP."""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console

from memcachier_async import (
    AsyncAnalytics,
    PermissionDeniedError,
    capacity,
    history_series,
)
from memcachier_async.testing import EmulatedCache, EmulatedCredential, Emulator, SimulatedServer

from . import advise
from . import render as r
from .common import interrupted

# --- emulator -------------------------------------------------------------

# A fleet for tests and exporter trials; each cache is a few simulated servers.
_MAX_CACHES = 10_000
# The caches whose credentials are printed one by one; the config has them all.
_LISTED_CACHES = 5

# Operations per second of `--traffic fill` without a rate: with the default
# three 64 MiB servers, about a quarter of an hour until they evict.
_FILL_RATE = 200.0


def _traffic(value: str) -> tuple[str, float]:
    """``--traffic``: a rate of mixed traffic, or ``fill`` / ``fill:OPS`` (new keys only)."""
    text = value.strip()
    profile, rate = ("fill", text[5:]) if text.startswith("fill:") else ("mixed", text)
    if text == "fill":
        return ("fill", _FILL_RATE)
    try:
        ops = float(rate)
    except ValueError:
        ops = -1.0
    if not 0 <= ops < float("inf"):
        raise click.BadParameter(
            f"expected operations per second (a number >= 0), fill or fill:OPS, not {value!r}",
            param_hint="'--traffic'",
        )
    return (profile, ops)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port (0: any free port).")
@click.option(
    "--memcached",
    metavar="HOST:PORT,...",
    help="Real memcached servers to read stats from (default: simulated servers).",
)
@click.option(
    "--servers",
    default=3,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Number of simulated servers, without --memcached.",
)
@click.option(
    "--traffic",
    default="200",
    show_default=True,
    metavar="OPS|fill[:OPS]",
    help="Simulated operations per second (simulated servers only); 'fill' (or fill:OPS) "
    f"stores new keys only, {_FILL_RATE:g}/s, so memory grows until the servers evict.",
)
@click.option(
    "--history-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds between history samples.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    help="SQLite file that keeps caches and credentials across restarts.",
)
@click.option(
    "--username", help="Username of the first cache's primary credential (default: generated)."
)
@click.option("--password", help="Its password (default: generated).")
@click.option(
    "--caches",
    default=1,
    show_default=True,
    type=click.IntRange(1, _MAX_CACHES),
    help="Number of caches served on the one port (each on --servers simulated servers).",
)
@click.option(
    "--write-config",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Write the caches as a TOML file for --config (watch, export, ...) instead of "
    "printing it.",
)
def emulator(
    host: str,
    port: int,
    memcached: str | None,
    servers: int,
    traffic: str,
    history_interval: float,
    db: str | None,
    username: str | None,
    password: str | None,
    caches: int,
    write_config: Path | None,
) -> None:
    """Run a local emulator of the Analytics API over HTTP until Ctrl-C.

    It prints the base URL and the credentials of its caches, the caches as
    a TOML file for --config (or writes it, with --write-config), and the
    export MEMCACHIER_*= lines that point the SDK and the other commands
    at its first cache.
    """
    profile, rate = _traffic(traffic)
    sources: int | list[str] = servers
    if memcached:
        sources = [s.strip() for s in memcached.split(",") if s.strip()]
        if caches > 1:
            raise click.BadParameter(
                "--caches needs simulated servers: leave out --memcached", param_hint="--caches"
            )
    try:
        emu = Emulator(
            servers=sources,
            username=username,
            password=password,
            traffic=rate,
            traffic_profile=profile,
            history_interval=history_interval,
            database=db,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    # A database may already hold some (or all) of them.
    while len(emu.caches) < caches:
        emu.add_cache(servers).add_credential(primary=True)
    console = Console(highlight=False)
    try:
        stopped_by = anyio.run(_serve_forever, emu, host, port, console, write_config)
    except KeyboardInterrupt:  # before the loop listened for it
        console.print("stopped")
        stopped_by = signal.SIGINT
    finally:
        emu.close()
    if stopped_by == signal.SIGINT:
        raise interrupted()


async def _serve_forever(
    emu: Emulator, host: str, port: int, console: Console, write_config: Path | None
) -> int:
    """Serve until SIGINT or SIGTERM; which one came. SIGTERM (a service manager,
    `kill`) stops it as cleanly as Ctrl-C, and the command then exits 0, not 130."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with emu.serve(host, port) as base_url:
            _print_emulator(console, emu, base_url, write_config)
            async for signum in signals:
                console.print(f"{signal.Signals(signum).name}: stopping")
                return signum
    raise AssertionError("unreachable")  # pragma: no cover - the receiver never ends


def _print_emulator(
    console: Console, emu: Emulator, base_url: str, write_config: Path | None
) -> None:
    console.print("[bold]MemCachier Analytics API emulator[/bold]")
    console.print(f"base URL: {base_url}", soft_wrap=True)
    listed = emu.caches[:_LISTED_CACHES]
    for cache in listed:
        names = ", ".join(s.name for s in cache.servers)
        console.print(f"cache {cache.cache_id} on {names}", soft_wrap=True)
        for credential in cache.credentials:
            role = "primary" if credential.primary else "credential"
            console.print(
                f"  {role}: username {credential.sasl_username} "
                f"password {credential.sasl_password}",
                soft_wrap=True,
            )
    if len(emu.caches) > len(listed):
        more = r.plural(len(emu.caches) - len(listed), "more cache")
        console.print(f"... and {more}", soft_wrap=True)
    primary = emu.credential
    console.print(
        f"try: curl -u {primary.sasl_username}:{primary.sasl_password} {base_url}/login",
        soft_wrap=True,
    )
    config = caches_toml(emu, base_url)
    if write_config is None:
        console.print("\n# The caches, for --config (watch, export, ...):", style="dim")
        console.out(config, end="", highlight=False)
    else:
        _write_private(write_config, config)
        console.print(f"config of {r.plural(len(emu.caches), 'cache')} written to {write_config}")
    console.print("\n# The first cache, for the SDK (from_env) and the commands:", style="dim")
    console.out(export_lines(primary, base_url), end="", highlight=False)
    console.print("Ctrl-C stops it.", style="dim")
    # Scripts wait for the URL on a pipe: flush now, not at exit.
    console.file.flush()


def _toml_string(value: str) -> str:
    # JSON's escapes (\", \\, \n, \uXXXX for controls) are TOML's basic-string
    # escapes; DEL is the one control JSON leaves as it is and TOML refuses.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def cache_name(cache: EmulatedCache) -> str:
    """The name a cache has in the config the emulator prints: ``cache-1561``."""
    return f"cache-{cache.cache_id}"


def caches_toml(emu: Emulator, base_url: str) -> str:
    """Every cache with its primary credential, as ``watch --config`` and ``export --config``
    read them."""
    lines = [f"base_url = {_toml_string(base_url)}"]
    for cache in emu.caches:
        credential = cache.primary
        if credential is None:  # a database's cache whose primary was deleted
            continue
        lines += [
            "",
            "[[cache]]",
            f"name = {_toml_string(cache_name(cache))}",
            f"username = {_toml_string(credential.sasl_username)}",
            f"password = {_toml_string(credential.sasl_password)}",
            f"cache_id = {cache.cache_id}",
        ]
    return "\n".join(lines) + "\n"


def export_lines(credential: EmulatedCredential, base_url: str) -> str:
    """Shell lines that point ``AsyncAnalytics.from_env()`` and the commands at a cache."""
    values = {
        "MEMCACHIER_BASE_URL": base_url,
        "MEMCACHIER_USERNAME": credential.sasl_username,
        "MEMCACHIER_PASSWORD": credential.sasl_password,
    }
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only: it holds passwords."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from exc


# --- demo -----------------------------------------------------------------

_MIB = 1024 * 1024


@click.command()
@click.option(
    "--tcp", is_flag=True, help="Serve the emulator on loopback TCP instead of in process."
)
def demo(tcp: bool) -> None:
    """Tour the SDK against an emulated cache: stats, history, credentials, flush, capacity."""
    console = Console(highlight=False)
    started = time.perf_counter()
    anyio.run(_demo, console, tcp)
    console.print(f"\n[bold green]Done[/bold green] in {time.perf_counter() - started:.1f} s.")


def _demo_emulator() -> Emulator:
    # Three small servers of unequal sizes: memory fills unevenly and
    # evicts, as in a real cache under load.
    servers = [
        SimulatedServer(f"mc{i}.demo.test:11211", limit_maxbytes=size * _MIB)
        for i, size in enumerate((2, 3, 4), start=1)
    ]
    emu = Emulator(servers=servers, traffic=1_000, history_interval=60, seed=42)
    # Half an hour of history, one sample a minute, as the service keeps.
    emu.backfill(30, ops_per_sample=3_000)
    return emu


async def _demo(console: Console, tcp: bool) -> None:
    emu = _demo_emulator()
    async with emu:
        serving: AbstractAsyncContextManager[str | None] = emu.serve() if tcp else nullcontext(None)
        async with serving as base_url:
            where = f"over TCP at {base_url}" if base_url else "in process (no network)"
            console.print(
                f"[bold]memcachier-analytics demo[/bold]: an emulated cache on three "
                f"simulated servers with live traffic, {where}.",
                soft_wrap=True,
            )
            extra: dict[str, Any] = (
                {"base_url": base_url} if base_url else {"transport": emu.transport()}
            )
            async with AsyncAnalytics(emu.username, emu.password, **extra) as api:
                await _tour(console, api)


async def _tour(console: Console, api: AsyncAnalytics) -> None:
    _step(console, 1, "Log in", "GET /login")
    console.print(f"cache id {await api.login()} (username {api.username})")

    _step(console, 2, "Stats of every server", "GET /<id>/stats")
    console.print(r.demo_stats_table(await api.stats()))

    _step(console, 3, "History", "GET /<id>/history")
    records = await api.history()
    console.print(
        f"{len(records)} records ({len({r.timestamp for r in records})} sampling times "
        f"× {len({r.server for r in records})} servers); the last five intervals:"
    )
    console.print(r.demo_history_table(history_series(records)[-5:]))

    _step(console, 4, "Credentials", "POST, PATCH, POST primary, DELETE")
    await _credentials(console, api)

    _step(console, 5, "Flush", "POST /<id>/flush")
    before = await api.stats()
    await api.flush()
    after = await api.stats()
    console.print(
        "every server flushed: cmd_flush "
        + ", ".join(f"{before[n].cmd_flush} → {after[n].cmd_flush}" for n in after)
    )
    console.print(
        "(memcached flushes lazily: items and memory fall as keys are next touched)",
        style="dim",
    )

    _step(console, 6, "Capacity advice", "GET /<id>/history, then capacity()")
    records = await api.history()
    console.print(advise.one_cache("demo", records, capacity(records), console.width))


async def _credentials(console: Console, api: AsyncAnalytics) -> None:
    me = api.username
    created = await api.create_credential()
    console.print(f"created {created.sasl_username}; its password is returned only this once")
    caps = await api.update_credential(created, flush_capability=False)
    console.print(
        f"updated {created.sasl_username}: flush={caps.flush_capability} "
        f"write={caps.write_capability} api={caps.api_capability}"
    )
    promoted = await api.promote_credential(created)
    console.print(f"promoted {promoted.sasl_username} to primary")
    try:
        await api.delete_credential(created)
    except PermissionDeniedError:
        console.print(f"deleting the primary is refused (403): promoting {me} back first")
    await api.promote_credential(me)
    await api.delete_credential(created)
    listed = await api.list_credentials()
    console.print(
        f"deleted {created.sasl_username}; credentials now: "
        + ", ".join(f"{c.sasl_username}{' (primary)' if c.primary else ''}" for c in listed)
    )


def _step(console: Console, number: int, title: str, call: str) -> None:
    console.print(f"\n[bold cyan]{number}. {title}[/bold cyan]  [dim]{call}[/dim]")


def register(group: click.Group) -> None:
    """Add ``demo`` and ``emulator`` to the ``memcachier-analytics`` group."""
    group.add_command(demo)
    group.add_command(emulator)
