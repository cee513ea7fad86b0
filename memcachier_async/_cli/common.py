"""What every ``memcachier-analytics`` command shares.

- Which caches a command talks to (:class:`CacheTarget`): from flags, from
  ``MEMCACHIER_USERNAME`` / ``MEMCACHIER_PASSWORD``, from a TOML file of
  many caches, or from an in-process emulator (``--emulator``).
- How failures end a command: one line on stderr and an exit code a
  script can branch on, never a traceback.
- How a command stops early: Ctrl-C (SIGINT) exits 130, the shell's code
  for it, from any command and at a confirmation prompt, without click's
  ``Aborted!``; SIGTERM ends a command that runs until stopped with exit
  code 0 (:func:`run_until_stopped`), as a service manager expects.
- Output: rich for people, ``--json`` for scripts.

Needs the ``cli`` extra (click, rich).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

import anyio
import anyio.abc
import attrs
import click
from rich.console import Console

from memcachier_async._client import DEFAULT_BASE_URL, AsyncAnalytics
from memcachier_async._errors import (
    AuthenticationError,
    MemcachierError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)
from memcachier_async._transports.retry import RetryPolicy

from .render import escape_controls

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "EXIT_API",
    "EXIT_AUTH",
    "EXIT_DECLINED",
    "EXIT_INTERRUPTED",
    "EXIT_TRANSPORT",
    "EXIT_UNEXPECTED",
    "EXIT_USAGE",
    "CacheTarget",
    "CliError",
    "ConfigError",
    "NamedClient",
    "Selection",
    "configure_logging",
    "confirm",
    "emit_json",
    "exit_code_for",
    "load_config",
    "one_line",
    "run_async",
    "run_until_stopped",
    "target_options",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_DECLINED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_API = 4
EXIT_TRANSPORT = 5
# Not 1: that is a declined confirmation.
EXIT_UNEXPECTED = 6
# 128 + SIGINT, what a shell reports for a command ended by Ctrl-C.
EXIT_INTERRUPTED = 130


def interrupted() -> click.exceptions.Exit:
    """Ctrl-C: exit 130, quietly (click would print ``Aborted!`` and exit 1)."""
    return click.exceptions.Exit(EXIT_INTERRUPTED)


def confirm(question: str) -> None:
    """Ask on stderr; anything but yes (or the end of input) exits 1, Ctrl-C exits 130.

    Not ``click.confirm``: it turns Ctrl-C into the same ``Abort`` as a "no".
    """
    click.echo(f"{question} [y/N]: ", nl=False, err=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        click.echo(err=True)
        raise interrupted() from None
    if answer.strip().lower() not in {"y", "yes"}:
        click.echo("Nothing done.", err=True)
        raise click.exceptions.Exit(EXIT_DECLINED)


class CliError(click.ClickException):
    """A failure reported as ``Error: <one line>`` with a chosen exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        # The message may quote the server (an error body): no terminal sequences.
        super().__init__(escape_controls(one_line(message)))
        # click declares exit_code a class variable (a ClassVar since 8.2); an
        # instance attribute shadows it, which is what click reads at exit.
        setattr(self, "exit_code", exit_code)  # noqa: B010


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return " ".join(str(text).split())


def exit_code_for(error: BaseException) -> int:
    """3 for credentials refused, 5 for no answer, 4 for any other API failure."""
    if isinstance(error, (AuthenticationError, PermissionDeniedError)):
        return EXIT_AUTH
    if isinstance(error, TransportError):
        return EXIT_TRANSPORT
    return EXIT_API


def describe_error(error: BaseException) -> str:
    """The one-line message of an SDK error, with the servers of a partial failure."""
    message = one_line(str(error)) or type(error).__name__
    if isinstance(error, ServerError) and error.servers:
        message = f"{message} (servers not answering: {', '.join(error.servers)})"
    return message


def _unwrap(error: BaseException) -> BaseException:
    # A task group wraps a lone failure in an exception group.
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def run_async(function: Callable[[], Awaitable[T]]) -> T:
    """Run a command's async body; every failure becomes :class:`CliError`.

    SDK errors get their exit code (3, 4, 5); anything else is a bug or an
    answer nobody foresaw, and still one ``Error:`` line (exit code 6),
    with the traceback only under ``-v``.
    """
    try:
        return anyio.run(function)
    except BaseException as raised:
        error = _unwrap(raised)
        if isinstance(error, KeyboardInterrupt) or type(error).__name__ == "CancelledError":
            # Ctrl-C. On Python 3.10, anyio's asyncio runner cancels the main
            # task on SIGINT and the cancellation itself escapes anyio.run (3.11's
            # asyncio.Runner turns it into KeyboardInterrupt); nothing else
            # cancels a command's main task from outside.
            raise interrupted() from None
        if isinstance(error, click.ClickException | click.exceptions.Exit | click.Abort):
            raise error from None
        if isinstance(error, MemcachierError):
            raise CliError(describe_error(error), exit_code_for(error)) from None
        if isinstance(error, ConfigError):
            raise CliError(str(error), EXIT_USAGE) from None
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit
            raise
        if verbosity() > 0:
            traceback.print_exception(type(error), error, error.__traceback__)
        raise CliError(
            f"unexpected failure ({type(error).__name__}: {error}); run with -v for details",
            EXIT_UNEXPECTED,
        ) from None


# --- -v: what goes to stderr besides the one-line error ------------------------------

_LOGGER = "memcachier_async"


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``-v`` installs (marked, so the next command replaces it)."""


class _Quiet(logging.NullHandler):
    """Keeps the SDK's retry notices off stderr: without it, logging's
    last-resort handler prints every warning."""


def configure_logging(verbose: int) -> Callable[[], None]:
    """``-v``: the SDK's notices (retries) on stderr; ``-vv``: its debug lines too.

    Without ``-v`` they stay off the terminal; an application's own logging
    configuration (handlers on the root logger) still receives them.
    Returns the function that puts the logger back as it was.
    """
    logger = logging.getLogger(_LOGGER)
    level = logger.level
    handler: logging.Handler
    if verbose <= 0:
        handler = _Quiet()
    else:
        handler = _CliHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    logger.addHandler(handler)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return restore


def verbosity() -> int:
    """How many ``-v`` the command line has (0 outside a command)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return 0
    return int(context.find_root().params.get("verbose") or 0)


def run_until_stopped(function: Callable[[], Awaitable[None]]) -> None:
    """Run a command that serves or polls until it is stopped: SIGINT (Ctrl-C)
    or SIGTERM cancels ``function``, and the command exits 130 after Ctrl-C,
    0 after SIGTERM (a service manager's stop), on every Python.

    The signals arrive as messages in the event loop, so the command is
    cancelled at an ``await`` and cleans up as on any cancellation. Left to
    Python's default handler, Ctrl-C raises ``KeyboardInterrupt`` wherever
    the loop happens to be: on 3.10's asyncio that ends in a ``CancelledError``
    traceback and exit code 1.
    """

    received: list[int] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(_cancel_on_signal, tg.cancel_scope, received)
            await function()
            tg.cancel_scope.cancel()

    # A Ctrl-C before the event loop listens (or after it stopped) is a Ctrl-C
    # too: run_async makes it exit 130.
    run_async(main)
    if signal.SIGINT in received:
        raise interrupted()


async def _cancel_on_signal(
    scope: anyio.CancelScope,
    received: list[int],
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            received.append(signum)
            scope.cancel()
            return


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2))


# --- which caches --------------------------------------------------------------


class ConfigError(ValueError):
    """A credentials file or option that cannot be used (exit code 2)."""


@attrs.frozen
class CacheTarget:
    """One cache to talk to: a name for output, and a credential with the API capability."""

    name: str
    username: str
    password: str = attrs.field(repr=False)
    cache_id: int | None = None
    base_url: str = DEFAULT_BASE_URL


_CACHE_KEYS = frozenset({"name", "username", "password", "password_env", "cache_id", "base_url"})


def _text(where: str, entry: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: missing {key!r}")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return value


def _target(where: str, entry: Any, default_url: str) -> CacheTarget:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = sorted(set(entry) - _CACHE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = _text(where, entry, "name")
    username = _text(where, entry, "username")
    password = _text(where, entry, "password", required=False)
    variable = _text(where, entry, "password_env", required=False)
    if (password is None) == (variable is None):
        raise ConfigError(f"{where}: give exactly one of 'password' and 'password_env'")
    if variable is not None:
        password = os.environ.get(variable)
        if not password:
            raise ConfigError(f"{where}: environment variable {variable} is not set")
    cache_id = entry.get("cache_id")
    if cache_id is not None and (type(cache_id) is not int or not 0 <= cache_id < 2**63):
        raise ConfigError(f"{where}: 'cache_id' must be a non-negative integer below 2**63")
    base_url = _text(where, entry, "base_url", required=False) or default_url
    # _text() raised for a missing required value.
    assert name is not None
    assert username is not None
    assert password is not None
    return CacheTarget(name, username, password, cache_id, base_url)


def load_config(path: Path) -> list[CacheTarget]:
    """The caches of a TOML credentials file.

    ::

        base_url = "https://analytics.memcachier.com/api/v1"  # optional

        [[cache]]
        name = "web"
        username = "4A1B2C"
        password_env = "WEB_CACHE_PASSWORD"   # or: password = "..."
        cache_id = 1561                        # optional: skips the login call
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"base_url", "cache"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    default_url = data.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(default_url, str):
        raise ConfigError(f"{path}: 'base_url' must be a string")
    entries = data.get("cache")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no caches; add [[cache]] tables with name, username, password")
    targets = [
        _target(f"{path}: cache #{number}", entry, default_url)
        for number, entry in enumerate(entries, start=1)
    ]
    seen: set[str] = set()
    for target in targets:
        if target.name in seen:
            raise ConfigError(f"{path}: two caches are named {target.name!r}")
        seen.add(target.name)
    return targets


@attrs.frozen
class Selection:
    """What the target options of a command said, before anything is opened."""

    config: Path | None = None
    caches: tuple[str, ...] = ()
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    cache_id: int | None = None
    emulator: bool = False
    username_from_flag: bool = False
    retries: int = 3

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of every client of the command."""
        return RetryPolicy(max_attempts=self.retries + 1)

    def targets(self) -> list[CacheTarget]:
        """The caches selected (not for ``--emulator``); raises :class:`ConfigError`."""
        if self.config is not None:
            if self.username_from_flag:
                raise ConfigError("--username and --config exclude each other")
            targets = load_config(self.config)
            if self.base_url is not None:
                targets = [attrs.evolve(t, base_url=self.base_url) for t in targets]
            return _pick(targets, self.caches, str(self.config))
        if not self.username or not self.password:
            raise ConfigError(
                "no credentials: pass --username and --password, set MEMCACHIER_USERNAME "
                "and MEMCACHIER_PASSWORD, or use --config FILE (or --emulator to try it out)"
            )
        target = CacheTarget(
            name=self.caches[0] if len(self.caches) == 1 else self.username,
            username=self.username,
            password=self.password,
            cache_id=self.cache_id,
            base_url=self.base_url or DEFAULT_BASE_URL,
        )
        return [target]


def _pick(targets: list[CacheTarget], names: Sequence[str], source: str) -> list[CacheTarget]:
    if not names:
        return targets
    by_name = {t.name: t for t in targets}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(
            f"{source} has no cache named {', '.join(map(repr, missing))}; "
            f"it has {', '.join(by_name)}"
        )
    return [by_name[n] for n in dict.fromkeys(names)]


_TARGET_OPTIONS = (
    click.option(
        "--config",
        "-c",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="MEMCACHIER_CONFIG",
        help="TOML file listing caches ([[cache]] name, username, password). "
        "Env: MEMCACHIER_CONFIG.",
    ),
    click.option(
        "--cache",
        "caches",
        multiple=True,
        metavar="NAME",
        help="Only this cache of --config (repeatable).",
    ),
    click.option(
        "--username", "-u", envvar="MEMCACHIER_USERNAME", help="Env: MEMCACHIER_USERNAME."
    ),
    click.option(
        "--password",
        "-p",
        envvar="MEMCACHIER_PASSWORD",
        help="Env: MEMCACHIER_PASSWORD (prefer it: flags show in the process list).",
    ),
    click.option(
        "--base-url",
        envvar="MEMCACHIER_BASE_URL",
        metavar="URL",
        help=f"API root (default {DEFAULT_BASE_URL}). Env: MEMCACHIER_BASE_URL.",
    ),
    click.option(
        "--cache-id",
        type=click.IntRange(min=0, max=2**63 - 1),
        help="Skip the login call: the cache id.",
    ),
    click.option(
        "--emulator",
        is_flag=True,
        help="Use an in-process emulator with simulated traffic (no account needed).",
    ),
    click.option(
        "--retries",
        type=click.IntRange(0, 10),
        default=3,
        show_default=True,
        help="Retry transient failures (429, 5xx, connection resets) this many times.",
    ),
)


def target_options(function: Callable[..., T]) -> Callable[..., T]:
    """Add the options choosing caches; the command receives ``selection``."""

    @functools.wraps(function)
    def wrapper(
        *args: Any,
        config: Path | None,
        caches: tuple[str, ...],
        username: str | None,
        password: str | None,
        base_url: str | None,
        cache_id: int | None,
        emulator: bool,
        retries: int,
        **kwargs: Any,
    ) -> T:
        source = click.get_current_context().get_parameter_source("username")
        kwargs["selection"] = Selection(
            config=config,
            caches=caches,
            username=username,
            password=password,
            base_url=base_url,
            cache_id=cache_id,
            emulator=emulator,
            username_from_flag=source is click.core.ParameterSource.COMMANDLINE,
            retries=retries,
        )
        return function(*args, **kwargs)

    for option in reversed(_TARGET_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


@attrs.frozen
class NamedClient:
    """A client of one cache, with the name the output uses for it."""

    name: str
    api: AsyncAnalytics


# --- shared by the commands' definitions ---------------------------------------

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 confirmation declined, 2 usage or configuration, "
    "3 credentials refused (401/403), 4 other API failure (incl. a partial flush or an "
    "answer that is not what the API sends), 5 no answer (network, timeout), "
    "6 unexpected failure (-v shows the traceback), 130 interrupted (Ctrl-C)."
)


def json_option(function: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables."
    )(function)


# Width of output that is not a terminal (a pipe, a file): wide enough that
# tables are not cut, since nothing wraps it.
_PIPE_WIDTH = 160


class _NoTrailingSpaces(io.TextIOBase):
    """A text stream that drops the spaces rich pads each line with to the table's width.

    For pipes and files: ``grep``, ``diff`` and a reviewer's editor see only
    what is written. A line rich has not finished is passed on unchanged when
    it flushes.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._partial = ""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        # rich picks box characters by the encoding: keep the real stream's.
        return getattr(self._stream, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if getattr(self._stream, "closed", False):
            # This wrapper's finalizer flushes too (Python 3.13 runs it when the
            # wrapper is collected), possibly after the real stream was closed.
            return
        if self._partial:
            self._stream.write(self._partial)
            self._partial = ""
        self._stream.flush()


def make_console() -> Console:
    # Created per command, so output goes to the stdout of the moment (CliRunner's).
    if sys.stdout.isatty():
        return Console(highlight=False)
    # Not a terminal: no colour (rich's own choice for a pipe), no padding.
    # A TextIOBase is a text stream; typeshed only lacks its IO[str] declaration.
    stream = cast(TextIO, _NoTrailingSpaces(sys.stdout))
    console = Console(highlight=False, file=stream)
    if "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH
    return console


def epilog(*examples: str) -> str:
    lines = "\n".join(f"  {example}" for example in examples)
    return f"\b\nExamples:\n{lines}\n\n{EXIT_CODES_HELP}"
