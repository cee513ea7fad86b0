"""Retry-After (RFC 9110): HTTP-dates (RFC 850's two-digit years, field bounds), delay-seconds.

Written to kill mutants that survived ``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

import calendar

import pytest

from memcachier_async._transports.rules import parse_http_date, parse_retry_after


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


def test_retry_after_reads_a_two_digit_year_against_its_own_now() -> None:
    """parse_retry_after hands its ``now`` to the date parser: ``-60`` seen in 1994 is
    1960 (a past date, no wait), where against today's clock it would be 2060."""
    now = _at(1994)
    assert parse_retry_after("Friday, 01-Jan-60 00:00:00 GMT", now=now) == 0.0


def test_rfc850_year_without_now_is_read_against_the_clock() -> None:
    """Without ``now`` the current year decides the century (a year in the past stays past)."""
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == _date(1994, 11, 6)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Thu, 31 Dec 2026 23:59:59 GMT", calendar.timegm((2026, 12, 31, 23, 59, 59))),
        ("Sat, 28 Feb 2026 00:00:00 GMT", calendar.timegm((2026, 2, 28, 0, 0, 0))),
        # A leap second counts as the last second of its minute.
        ("Wed, 31 Dec 2008 23:59:60 GMT", calendar.timegm((2008, 12, 31, 23, 59, 59))),
        ("Mon, 01 Jan 0001 00:00:00 GMT", calendar.timegm((1, 1, 1, 0, 0, 0))),
    ],
)
def test_the_last_valid_hour_minute_second_day_and_the_first_year_are_read(
    value: str, expected: int
) -> None:
    """23:59:59 (and a leap :60), the last day of a month and year 0001 are dates."""
    assert parse_http_date(value) == float(expected)


@pytest.mark.parametrize(
    "value",
    [
        "Thu, 31 Dec 2026 24:00:00 GMT",
        "Thu, 31 Dec 2026 23:60:00 GMT",
        "Thu, 31 Dec 2026 23:59:61 GMT",
        "Sun, 29 Feb 2026 00:00:00 GMT",
        "Sun, 31 Nov 2026 00:00:00 GMT",
        "Sun, 00 Nov 2026 00:00:00 GMT",
        "Sat, 01 Jan 0000 00:00:00 GMT",
    ],
)
def test_an_impossible_time_or_day_is_not_a_date(value: str) -> None:
    """Hour 24, minute 60, second 61, 29 February of a common year, day 0 and year 0 are refused."""
    assert parse_http_date(value) is None


def test_delay_seconds_strip_spaces_and_tabs_only() -> None:
    """Spaces and tabs around delay-seconds are optional whitespace; a newline is not."""
    assert parse_retry_after(" \t7\t ") == 7.0
    assert parse_retry_after("\n7") is None
    assert parse_retry_after("7\r\n") is None


def test_delay_seconds_keep_twelve_digits_and_cap_longer_ones() -> None:
    """Twelve significant digits are read as they are; more are capped at 10**12."""
    assert parse_retry_after("999999999999") == 999_999_999_999.0
    assert parse_retry_after("0000999999999999") == 999_999_999_999.0
    assert parse_retry_after("1000000000000") == 1e12
    assert parse_retry_after("9" * 40) == 1e12
