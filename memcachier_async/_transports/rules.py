"""Retry rules that need no I/O: which request may be resent, and how long a server asks us to wait.

Shared by the retry transport and the protocol layer; imports nothing from the SDK.
"""

from __future__ import annotations

import email.utils
import time

__all__ = ["ENDPOINT_EXTENSION", "IDEMPOTENT_EXTENSION", "parse_retry_after"]

#: Request extension naming the endpoint (``"stats"``), read by the retry layer.
ENDPOINT_EXTENSION = "memcachier_endpoint"
#: Request extension: ``True`` when the call may safely be sent again.
IDEMPOTENT_EXTENSION = "memcachier_idempotent"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date).

    ``None`` when the header is absent or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT even when it does not say so
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
        return None
    return max(0.0, seconds)
