"""The CLI fits the terminal: at 80 and 120 columns every number is shown whole.

rich squeezes a table wider than the terminal by cutting its cells
(``835.0…``); the commands instead shorten server names to what tells them
apart, abbreviate large counts with SI suffixes, and drop the least
important columns. Piped output carries no colour and no trailing spaces.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from memcachier_async._cli import main
from memcachier_async._cli import render as r

COMMANDS = {
    "stats": ["stats", "--emulator"],
    "stats --interval": ["stats", "--emulator", "--interval", "1"],
    "history": ["history", "--emulator"],
    "watch": ["watch", "--emulator", "--rounds", "2", "--interval", "0.5"],
    "credentials": ["credentials", "list", "--emulator"],
}
# A whole number with its unit or SI suffix; a cell holds one, or "used / limit".
_ONE = r"\d[\d,]*(\.\d+)?[kMGTPEZ]?( ?(%|/s|B|KiB|MiB|GiB)(/s)?)?"
NUMBER = re.compile(rf"^{_ONE}( / {_ONE})?$")
BORDERS = "│┃"


def cells(line: str) -> list[str]:
    """The cells of a table row (a line between vertical borders)."""
    return [cell.strip() for cell in re.split(f"[{BORDERS}]", line)[1:-1]]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_fits_the_width_with_every_number_whole(
    command: str, width: int, clean_cli_environment: None
) -> None:
    """Each table line fits the width, no cell is cut, and every numeric cell is a whole
    number with its unit; piped, no colour and no trailing spaces."""
    result = CliRunner().invoke(main, COMMANDS[command], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b[" not in out
    assert "…" not in out
    lines = out.splitlines()
    assert [line for line in lines if line != line.rstrip()] == []
    assert max(cell_len(line) for line in lines) <= width
    rows = [cells(line) for line in lines if line[:1] in BORDERS]
    assert rows, out
    # The first column names the row (a server, a cache, a username).
    numbers = [cell for row in rows for cell in row[1:] if cell[:1].isdigit()]
    assert numbers, out
    assert [cell for cell in numbers if not NUMBER.match(cell)] == []


def test_stats_at_80_columns_shortens_server_names_and_says_how() -> None:
    """At 80 columns the servers are mc1, mc2, mc3 and the caption names the shared ending."""
    result = CliRunner().invoke(main, ["stats", "--emulator"], env={"COLUMNS": "80"})
    rows = [cells(line) for line in result.stdout.splitlines() if line[:1] == "│"]
    assert [row[0].removesuffix(" ▲") for row in rows] == ["mc1", "mc2", "mc3", "Total"]
    assert "Server names end in" in result.stdout
    assert ".web.memcachier.test:11211" in result.stdout


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (99_999, "99,999"),
        (100_000, "100k"),
        (123_456, "123k"),
        (999_999, "1.00M"),
        (1_234_567, "1.23M"),
        (2**64 - 1, "18.4E"),
        (None, "–"),
    ],
)
def test_counts_are_at_most_six_characters(value: int | None, shown: str) -> None:
    """Counts up to 99,999 are whole; larger ones take an SI suffix with three digits."""
    assert r.fmt_count(value) == shown
    assert len(r.fmt_count(value)) <= 6


def test_short_names_keep_what_tells_servers_apart() -> None:
    """The ending all names share goes; names sharing none, or one name alone, stay whole."""
    names = ["mc1.a.example.com:11211", "mc2.a.example.com:11211"]
    assert r.short_names(names) == ({names[0]: "mc1", names[1]: "mc2"}, ".a.example.com:11211")
    ports = ["10.0.0.1:11211", "10.0.0.1:11212"]
    assert r.short_names(ports) == ({p: p for p in ports}, "")
    assert r.short_names(["mc1.example.com:1"]) == ({"mc1.example.com:1": "mc1.example.com:1"}, "")


def test_credentials_title_counts_in_the_singular_and_plural() -> None:
    """One credential is "1 credential", not "1 credentials"."""
    from memcachier_async import Credential

    one = Credential(
        cache_id=1,
        id=1,
        sasl_username="u",
        uuid=None,
        primary=True,
        flush_capability=True,
        write_capability=True,
        api_capability=True,
    )
    assert r.credentials_table([one]).title == "1 credential"
    assert r.credentials_table([one, one]).title == "2 credentials"
    assert r.credentials_table([]).title == "0 credentials"
    assert [r.plural(n, "interval") for n in (1, 2, 1000)] == [
        "1 interval",
        "2 intervals",
        "1,000 intervals",
    ]


def test_history_title_counts_one_interval_in_the_singular() -> None:
    """A history of two samples is "1 interval"."""
    from memcachier_async import Insight, ProcessedStats

    point = Insight(total=ProcessedStats(), servers={}, start=None, end=None)
    assert r.history_table("web", [point]).title == "Cache web: 1 interval"
    assert r.history_table("web", [point, point]).title == "Cache web: 2 intervals"
