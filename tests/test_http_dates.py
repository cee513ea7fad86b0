"""HTTP-dates in Retry-After (RFC 9110, 5.6.7): RFC 850's two-digit years.

Written to kill mutants that survived ``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

import calendar

import pytest

from memcachier_async._transports.rules import parse_http_date


def _at(year: int) -> float:
    """Noon on 1 June of ``year``, as seconds since the epoch."""
    return float(calendar.timegm((year, 6, 1, 12, 0, 0, 0, 0, 0)))


def _date(year: int, month: int, day: int) -> float:
    return float(calendar.timegm((year, month, day, 8, 49, 37, 0, 0, 0)))


@pytest.mark.parametrize(
    ("two_digits", "now_year", "year"),
    [
        ("94", 2026, 1994),  # more than 50 years ahead: the previous century
        ("76", 2026, 2076),  # exactly 50 years ahead: still this century
        ("77", 2026, 1977),  # 51 years ahead: the previous century
        ("26", 2026, 2026),
        ("45", 1990, 1945),  # relative to ``now``, not to the clock
        ("94", 2060, 2094),
    ],
)
def test_rfc850_two_digit_year_is_the_latest_not_50_years_ahead(
    two_digits: str, now_year: int, year: int
) -> None:
    """A two-digit year is the most recent year with those digits at most 50 years after ``now``."""
    value = f"Sunday, 06-Nov-{two_digits} 08:49:37 GMT"
    assert parse_http_date(value, now=_at(now_year)) == _date(year, 11, 6)


def test_rfc850_year_without_now_is_read_against_the_clock() -> None:
    """Without ``now`` the current year decides the century (a year in the past stays past)."""
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == _date(1994, 11, 6)
