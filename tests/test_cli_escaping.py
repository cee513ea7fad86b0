"""Text from the server reaches the terminal inert: control characters escaped, markup shown.

A server name (or an error body) holding ESC or OSC sequences could clear
the screen, recolour it or plant a hyperlink; one holding ``[bold]`` would
be read as rich markup. The CLI prints them as visible escapes instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result
from rich.console import Console

from memcachier_async._cli import main, render
from memcachier_async.testing import STATS_FIELDS, Emulator

pytestmark = pytest.mark.usefixtures("clean_cli_environment")

HOSTILE_NAME = "\x1b]8;;http://evil.example\x1b\\mc1\x1b[2J\x1b[31m[bold]x[/bold]\u202e\x9b:11211"


class NamedServer:
    """A stats source with any name; ``up = False`` makes the emulator answer 500 naming it."""

    blocking = False

    def __init__(self, name: str) -> None:
        self._name = name
        self.up = True

    @property
    def name(self) -> str:
        return self._name

    def stats(self, now: float) -> dict[str, int]:
        if not self.up:
            raise ConnectionError("down")
        stats = dict.fromkeys(STATS_FIELDS, 1)
        stats.update(limit_maxbytes=1 << 20, time=int(now))
        return stats

    def flush(self) -> None:
        """Nothing to flush."""


@pytest.fixture
def served() -> Iterator[tuple[NamedServer, list[str]]]:
    server = NamedServer(HOSTILE_NAME)
    emulator = Emulator(servers=[server, NamedServer("plain.example:11211")])
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(emulator.serve()) as base_url,
    ):
        yield server, ["--base-url", base_url, "-u", emulator.username, "-p", emulator.password]
    emulator.close()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_inert(output: str) -> None:
    for raw in ("\x1b", "\x9b", "\u202e"):
        assert raw not in output
    assert "\\x1b" in output


@pytest.mark.parametrize("extra", [[], ["--interval", "1.1"]])
def test_stats_shows_a_hostile_server_name_escaped(
    served: tuple[NamedServer, list[str]], extra: list[str]
) -> None:
    """stats (and its rates table) prints ESC as \\x1b and [bold] as text."""
    _, options = served
    result = run("stats", *options, *extra)
    assert result.exit_code == 0, result.output
    assert_inert(result.output)
    assert "[bold]x[/bold]" in result.stdout
    assert "\\u202e" in result.stdout


def test_error_line_quoting_the_server_is_escaped(served: tuple[NamedServer, list[str]]) -> None:
    """A 500 naming the hostile server: one Error: line, its ESC shown as \\x1b."""
    server, options = served
    server.up = False
    result = run("stats", *options, "--retries", "0")
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert_inert(result.stderr)


def test_watch_table_caption_is_escaped(served: tuple[NamedServer, list[str]]) -> None:
    """watch's error caption quotes the server's message, inert."""
    server, options = served
    server.up = False
    result = run("watch", *options, "--rounds", "1", "--interval", "0.1", "--retries", "0")
    assert_inert(result.output)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\x07b\x00c", "a\\x07b\\x00c"),
        ("\x9b2J", "\\x9b2J"),
        ("left\u202eright", "left\\u202eright"),
        ("lone \ud800", "lone \\ud800"),
        ("tab\there\nnewline", "tab\\x09here\\x0anewline"),
        ("ünïcode ok", "ünïcode ok"),
    ],
)
def test_escape_controls(text: str, shown: str) -> None:
    """Controls, bidi overrides and lone surrogates become visible escapes; other text stays."""
    assert render.escape_controls(text) == shown


def test_markup_in_server_text_is_printed_as_is() -> None:
    """safe() and plain() keep [bold] literal when rich renders them."""
    console = Console(record=True, width=200, color_system=None)
    console.print(render.safe("[bold]x[/bold] \x1b[2J"))
    console.print(render.plain("[red]y[/red]"))
    text = console.export_text()
    assert "[bold]x[/bold] \\x1b[2J" in text
    assert "[red]y[/red]" in text


def test_credentials_password_with_brackets_is_shown_whole() -> None:
    """A password like 'a[b]c' is printed whole (rich would have eaten '[b]' as markup)."""
    console = Console(record=True, width=200, color_system=None)
    console.print(render.mapping_rows({"password": "a[b]c[/b]"}))
    assert "a[b]c[/b]" in console.export_text()
