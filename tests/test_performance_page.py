"""The performance page quotes the benchmark results as the last run wrote them.

No timing here: only that the headline figures in docs/performance.md are the
rows of benchmarks/RESULTS.md's targets table, so the page cannot drift from
the file ``nox -s bench`` regenerates.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rows(table: str) -> list[list[str]]:
    """The body rows of a Markdown table, as stripped cells."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_headline_figures_are_the_targets_table_of_results() -> None:
    """Every headline row is a row of RESULTS.md's engines targets table (target, goal, measured, met)."""
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    engines = results.split("<!-- engines:", 1)[1].split("<!-- /engines -->", 1)[0]
    targets = engines.split("| target | goal | measured | met |", 1)[1]
    targets = "| target | goal | measured | met |" + targets.split("\n\n", 1)[0]
    measured = {row[0]: [row[1], row[2], row[3]] for row in _rows(targets)}
    page = (ROOT / "docs" / "performance.md").read_text()
    headline = page.split("<!-- headline:", 1)[1].split("<!-- /headline -->", 1)[0]
    rows = _rows(headline.split("\n", 1)[1])
    assert len(rows) == len(measured) > 0
    for measure, *figures in rows:
        assert measured[measure] == figures, measure


def test_limits_page_quotes_the_stall_table_of_results() -> None:
    """docs/limits.md's table of event-loop stalls is the one stall_bench.py last wrote."""
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    stall = results.split("<!-- stall:", 1)[1].split("<!-- /stall -->", 1)[0]
    written = [line for line in stall.splitlines() if line.startswith("|")]
    page = (ROOT / "docs" / "limits.md").read_text()
    quoted = page.split("<!-- stall-table:", 1)[1].split("<!-- /stall-table -->", 1)[0]
    shown = [line for line in quoted.splitlines() if line.startswith("|")]
    assert len(shown) > 2
    assert shown == written
