"""When a declared Content-Length lets the aiohttp backend read a body at once."""

from __future__ import annotations

import pytest

from memcachier_async._transports.body import (
    DEFAULT_MAX_RESPONSE_SIZE,
    ERROR_BODY_READ_LIMIT,
    Target,
    declared_within_limit,
)
from memcachier_async._transports.rules import MAX_RESPONSE_SIZE_EXTENSION


def target(limit: int | str | None = "default") -> Target:
    extensions = {} if limit == "default" else {MAX_RESPONSE_SIZE_EXTENSION: limit}
    return Target("GET", "http://127.0.0.1/api/v1/1/stats", extensions)


@pytest.mark.parametrize(
    ("limit", "status", "length", "expected"),
    [
        ("default", 200, None, False),  # chunked: counted as it comes
        ("default", 200, "abc", False),
        ("default", 200, "-5", False),
        ("default", 200, "1" * 21, False),  # no real body is that long
        ("default", 200, str(DEFAULT_MAX_RESPONSE_SIZE), True),
        ("default", 200, str(DEFAULT_MAX_RESPONSE_SIZE + 1), False),
        ("default", 200, " 120 ", True),
        (100, 200, "100", True),
        (100, 200, "101", False),
        (None, 200, "9" * 20, True),  # unbounded by choice
        (None, 503, str(ERROR_BODY_READ_LIMIT + 1), False),  # an error body: 16 KiB
        (100, 404, str(ERROR_BODY_READ_LIMIT), True),
    ],
)
def test_declared_length_within_the_limit(
    limit: int | str | None, status: int, length: str | None, expected: bool
) -> None:
    """Only a well-formed Content-Length within the status's limit reads at once."""
    assert declared_within_limit(target(limit), status, length) is expected
