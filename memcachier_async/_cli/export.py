"""The ``export`` command: serve Prometheus metrics of the configured caches."""

from __future__ import annotations

import click

from .clients import open_clients
from .common import (
    EXIT_USAGE,
    CliError,
    Selection,
    epilog,
    run_async,
    target_options,
)

# --- export ----------------------------------------------------------------------


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command(
    epilog=epilog(
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
        from .exporter import Exporter
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
    """Add this module's commands to the ``memcachier-analytics`` group."""
    for command in (export,):
        group.add_command(command)
