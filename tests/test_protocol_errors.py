"""parse_response: an error body that is not valid UTF-8 is still an error, with its text.

Written to kill mutants that survived ``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

import pytest

from memcachier_async import DecodeError, ServerError
from memcachier_async._protocol import ENDPOINTS, parse_response


def test_an_error_body_of_invalid_utf8_keeps_its_readable_text() -> None:
    """A 500 whose body is not UTF-8 raises ServerError with the bytes replaced, never UnicodeDecodeError."""
    with pytest.raises(ServerError) as info:
        parse_response(
            ENDPOINTS["stats"],
            status_code=500,
            reason="Internal Server Error",
            headers={},
            body=b"\xffbroken \xfe",
            method="GET",
            url="https://analytics.memcachier.com/api/v1/1/stats",
        )
    assert info.value.status_code == 500
    assert info.value.body == "\ufffdbroken \ufffd"


def test_a_bad_success_body_names_its_endpoint() -> None:
    """A 200 whose body does not decode raises DecodeError naming the endpoint it answered."""
    with pytest.raises(DecodeError) as info:
        parse_response(
            ENDPOINTS["login"],
            status_code=200,
            reason="OK",
            headers={},
            body=b"[]",
            method="GET",
            url="https://analytics.memcachier.com/api/v1/login",
        )
    assert info.value.endpoint == "login"
    assert str(info.value).startswith("unexpected login response: ")
