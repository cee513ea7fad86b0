"""The ``export`` command: serve Prometheus metrics of the configured caches."""

from __future__ import annotations

import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import click

from .clients import HttpBackend, open_clients
from .common import (
    EXIT_USAGE,
    CliError,
    Selection,
    epilog,
    interrupted,
    run_async,
    target_options,
    verbosity,
)

if TYPE_CHECKING:
    from .exporter import Mode

# --- export ----------------------------------------------------------------------


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    from .exporter import parse_shard

    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None


@click.command(
    epilog=epilog(
        "memcachier-analytics export --emulator",
        "memcachier-analytics export --config caches.toml --listen 127.0.0.1:9151 --interval 30",
        "curl -s http://127.0.0.1:9151/metrics | grep memcachier_up",
        "memcachier-analytics export --config caches.toml --mode probe --listen 0.0.0.0:9151",
        "curl -s 'http://127.0.0.1:9151/probe?cache=web' | grep memcachier_probe_success",
        "memcachier-analytics export --config caches.toml --shard 0/2   # and 1/2 elsewhere",
    )
)
@target_options
@click.option(
    "--listen",
    default="127.0.0.1:9151",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve the routes (loopback by default; port 0 picks a free one).",
)
@click.option(
    "--mode",
    type=click.Choice(["poll", "probe"]),
    default="poll",
    show_default=True,
    help="poll: read every cache each --interval, serve them on /metrics. probe: read a "
    "cache only when /probe?cache=NAME asks (Prometheus schedules; replicas scale out).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Poll mode: time between polls of every cache.",
)
@click.option(
    "--history-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="Poll mode: read each cache's history this often, in the background, for the "
    "memcachier_capacity_* gauges (capacity advice; never on the scrape path).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up on a cache's stats after this long (default: the interval, at least "
    "10 s). A probe also stops before Prometheus' scrape timeout.",
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Poll mode: poll only the caches whose hash (Prometheus' hashmod of the name) "
    "modulo N is I, 0 <= I < N.",
)
@click.option(
    "--max-concurrent-probes",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    metavar="N",
    help="Probes reading a cache at once; one more waits for a free slot within its own "
    "time, then gets 503.",
)
@click.option(
    "--probe-cache-ttl",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Probe mode: reuse a cache's answer this long, so the Prometheus servers of an HA "
    "pair share one call per cache (0: only concurrent probes share).",
)
@click.option(
    "--http-backend",
    type=click.Choice(["httpx", "aiohttp"]),
    default="httpx",
    show_default=True,
    help="How the exporter calls the API: the SDK's own transport, or aiohttp (the aiohttp "
    "extra), which takes somewhat less CPU per probe.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    metavar="N",
    help="uvicorn's limit_concurrency: a request arriving while N connections are open (its "
    "own included) or N requests run gets 503.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="Close a keep-alive connection idle this long (uvicorn's timeout_keep_alive).",
)
@click.option(
    "--shutdown-timeout",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM or SIGINT, let requests in flight finish this long, then cancel them.",
)
@click.option(
    "--access-log",
    is_flag=True,
    help="Log every request on stderr (uvicorn's access log: client, request line, status).",
)
@click.option(
    "--tls-cert-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate chain (PEM); needs --tls-key-file.",
)
@click.option(
    "--tls-key-file",
    type=click.Path(exists=True, dir_okay=False),
    help="The private key (PEM) of --tls-cert-file.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=0,
    help="Poll mode: stop after this many polls (0: serve until interrupted).",
)
def export(
    selection: Selection,
    listen: str,
    mode: Mode,
    interval: float,
    history_interval: float,
    timeout: float | None,
    shard: str | None,
    max_concurrent_probes: int,
    probe_cache_ttl: float,
    http_backend: HttpBackend,
    max_connections: int,
    keep_alive_timeout: int,
    shutdown_timeout: int,
    access_log: bool,
    tls_cert_file: str | None,
    tls_key_file: str | None,
    rounds: int,
) -> None:
    """Serve Prometheus metrics of the configured caches.

    Poll mode (the default) serves every cache on /metrics. Probe mode
    serves one cache per /probe?cache=NAME and the list of caches on /sd
    (Prometheus HTTP service discovery), so Prometheus spreads the caches
    over as many replicas as needed. Both serve /-/healthy and /-/ready.

    Metric names follow memcached_exporter (memcached_commands_total,
    memcached_current_bytes, memcached_up, ...; labels cache and server),
    plus memcachier_up{cache}, poll or probe durations and error counts.
    Served by uvicorn, on asyncio. SIGTERM or SIGINT stops it gracefully:
    no new connections, requests in flight finish within --shutdown-timeout
    (then are cancelled), exit 0; a second signal stops it at once.
    Needs the prometheus extra: pip install 'memcachier-async[prometheus]'.
    """
    try:
        from .exporter import Exporter
    except ImportError as exc:
        raise CliError(
            f"export needs prometheus-client ({exc}): pip install 'memcachier-async[prometheus]'",
            EXIT_USAGE,
        ) from None
    if mode == "probe" and (shard is not None or rounds):
        raise CliError(
            "--shard and --rounds apply to --mode poll; in probe mode Prometheus shards "
            "(hashmod) and schedules",
            EXIT_USAGE,
        )
    if http_backend == "aiohttp":
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise CliError(
                "--http-backend aiohttp needs aiohttp: pip install 'memcachier-async[aiohttp]'",
                EXIT_USAGE,
            ) from None
    if (tls_cert_file is None) != (tls_key_file is None):
        raise CliError("--tls-cert-file and --tls-key-file go together", EXIT_USAGE)
    parts = _shard(shard)
    host, port = _listen_address(listen)
    from .serving import ServerSettings

    settings = ServerSettings(
        limit_concurrency=max_connections,
        timeout_keep_alive=keep_alive_timeout,
        timeout_graceful_shutdown=shutdown_timeout,
        tls_certfile=tls_cert_file,
        tls_keyfile=tls_key_file,
        access_log=access_log,
    )

    async def serve(stop: anyio.Event) -> None:
        async with open_clients(selection, multi=True, http_backend=http_backend) as clients:
            exporter = Exporter(
                [(c.name, c.api) for c in clients],
                interval=interval,
                timeout=timeout,
                mode=mode,
                shard=parts,
                max_probes=max_concurrent_probes,
                probe_cache_ttl=probe_cache_ttl,
                history_interval=history_interval,
            )
            stack = contextlib.AsyncExitStack()
            try:
                url = await stack.enter_async_context(exporter.serve(host, port, settings))
            except ssl.SSLError as exc:
                raise CliError(
                    f"--tls-cert-file/--tls-key-file cannot be used: {exc}", EXIT_USAGE
                ) from None
            except OSError as exc:
                raise CliError(
                    f"cannot listen on {listen}: {exc.strerror or exc}", EXIT_USAGE
                ) from None
            # Leaving this block is the graceful stop: requests in flight finish.
            async with stack:
                if mode == "probe":
                    click.echo(f"Probing {len(clients)} cache(s) on demand at {url}", err=True)
                    await stop.wait()
                    return
                polled = len(exporter.polled)
                click.echo(f"Serving metrics of {polled} cache(s) on {url}metrics", err=True)
                await _until(stop, lambda: exporter.run(rounds=rounds or None))

    # A Ctrl-C before the event loop listens (or after it stopped) is still a stop.
    with contextlib.suppress(KeyboardInterrupt), _on_stderr(access_log):
        run_async(lambda: _stopped_by_signals(serve))


@contextlib.contextmanager
def _on_stderr(access_log: bool) -> Iterator[None]:
    """The exporter's own lines (a cache failing, recovering) on stderr, even without -v
    (with -v the SDK's handler shows them already); uvicorn's access log if asked for."""
    names = ([] if verbosity() > 0 else ["memcachier_async.exporter"]) + (
        ["uvicorn.access"] if access_log else []
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


async def _until(stop: anyio.Event, function: Callable[[], Awaitable[None]]) -> None:
    """Run ``function`` until it returns or ``stop`` is set."""
    async with anyio.create_task_group() as group:

        async def run() -> None:
            await function()
            group.cancel_scope.cancel()

        group.start_soon(run)
        await stop.wait()
        group.cancel_scope.cancel()


async def _stopped_by_signals(serve: Callable[[anyio.Event], Awaitable[None]]) -> None:
    """``serve(stop)``: the first SIGTERM or SIGINT sets ``stop``, a second cancels.

    Either stops gracefully; SIGTERM (a service manager's stop) then exits 0,
    SIGINT (Ctrl-C) exits 130 as every command does.
    """
    stop = anyio.Event()
    first: list[int] = []
    async with anyio.create_task_group() as group:

        async def watch(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for received in signals:
                    if stop.is_set():
                        group.cancel_scope.cancel()
                        return
                    first.append(received)
                    stop.set()

        await group.start(watch)
        await serve(stop)
        group.cancel_scope.cancel()
    if first == [signal.SIGINT]:
        raise interrupted()


def register(group: click.Group) -> None:
    """Add this module's commands to the ``memcachier-analytics`` group."""
    for command in (export,):
        group.add_command(command)
