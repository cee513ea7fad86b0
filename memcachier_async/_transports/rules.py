"""Retry rules that need no I/O: which request may be resent, how long to wait.

Shared by the retry transport and the protocol layer; imports nothing from the SDK.
"""

from __future__ import annotations

import calendar
import re
import time

__all__ = [
    "ENDPOINT_EXTENSION",
    "IDEMPOTENT_EXTENSION",
    "MAX_RESPONSE_SIZE_EXTENSION",
    "PROGRESS_EXTENSION",
    "Progress",
    "backoff_ceiling",
    "parse_retry_after",
]

#: Request extension naming the endpoint (``"stats"``), read by the retry layer.
ENDPOINT_EXTENSION = "memcachier_endpoint"
#: Request extension: ``True`` when the call may safely be sent again.
IDEMPOTENT_EXTENSION = "memcachier_idempotent"
#: Request extension: the most bytes a success body may have (``None``: no
#: bound), read by every transport as the body arrives (see ``body.py``).
MAX_RESPONSE_SIZE_EXTENSION = "memcachier_max_response_size"
#: Request extension the retry layer puts on each attempt: a :class:`Progress`.
PROGRESS_EXTENSION = "memcachier_progress"


class Progress:
    """How far one attempt got, as its transport reports it.

    ``queued`` is ``True`` while the request waits for a connection (in the
    pool's queue, or connecting): nothing of it has been sent. The SDK's
    transports set it to ``False`` once they hold a connection. ``None``: a
    transport that does not say.
    """

    __slots__ = ("queued",)

    def __init__(self) -> None:
        self.queued: bool | None = None


# Past 2**64 times the first wait, any max_backoff a policy can hold is smaller:
# stop doubling there instead of overflowing a float (2.0 ** 1024 raises).
_MAX_DOUBLINGS = 64


def backoff_ceiling(initial: float, maximum: float, retry_number: int) -> float:
    """The largest wait before retry ``retry_number`` (1 for the first retry):
    ``initial * 2**(retry_number - 1)``, capped at ``maximum``."""
    doublings = min(max(retry_number - 1, 0), _MAX_DOUBLINGS)
    return min(maximum, initial * 2.0**doublings)


# --- Retry-After (RFC 9110, section 10.2.3) ---------------------------------
#
#   Retry-After = HTTP-date / delay-seconds
#   delay-seconds = 1*DIGIT
#
# An HTTP-date comes in three formats, all of which a recipient must accept
# (section 5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime forms.
# Day and month names are case-sensitive; every format means GMT, including
# asctime's, which does not say so.

_DELAY_SECONDS = re.compile(r"[0-9]+")
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_IMF_FIXDATE = re.compile(rf"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT")
_RFC850_DATE = re.compile(
    rf"{_LONG_DAY}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT"
)
_ASCTIME_DATE = re.compile(
    rf"{_DAY} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})"
)
# More digits than this is "longer than any cap": no need to convert them.
_MAX_DELAY_DIGITS = 12
# Optional whitespace around a field value is not part of it (RFC 9110, 5.5).
_OWS = " \t"


def parse_http_date(value: str, now: float | None = None) -> float | None:
    """Seconds since the epoch of an RFC 9110 HTTP-date, or ``None`` if it is not one."""
    match = (
        _IMF_FIXDATE.fullmatch(value)
        or _RFC850_DATE.fullmatch(value)
        or _ASCTIME_DATE.fullmatch(value)
    )
    if match is None:
        return None
    year = int(match["year"])
    if len(match["year"]) == 2:
        # RFC 850's two-digit year: the most recent year with those digits
        # that is not more than 50 years in the future (RFC 9110, 5.6.7).
        this_year = time.gmtime(time.time() if now is None else now).tm_year
        year += this_year - this_year % 100
        if year > this_year + 50:
            year -= 100
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
    day = int(match["day"])
    month = _MONTHS.index(match["month"]) + 1
    # A leap second (60) counts as the last second of its minute.
    if year < 1 or hour > 23 or minute > 59 or second > 60:
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110).

    Either delay-seconds (digits only: not ``"-5"``, ``"1.5"``, ``"1e3"``
    or ``"1_0"``) or an HTTP-date in any of its three formats, a date in the
    past meaning "now" (``0.0``). ``None`` when the header is absent or is
    neither. ``now`` is the current time in seconds since the epoch.
    """
    if value is None:
        return None
    value = value.strip(_OWS)
    if _DELAY_SECONDS.fullmatch(value):
        if len(value.lstrip("0")) > _MAX_DELAY_DIGITS:
            return float(10**_MAX_DELAY_DIGITS)
        return float(int(value))
    when = parse_http_date(value, now)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))
