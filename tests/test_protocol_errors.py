"""The protocol layer's errors: what parse_response raises and why a request cannot be built.

Written to kill mutants that survived ``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from memcachier_async import DecodeError, ServerError
from memcachier_async._protocol import ENDPOINTS, build_request, parse_response, path_segment


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


def _error(status: int, body: bytes = b"nope", **extra: object) -> Exception:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the kind is what the caller checks
        parse_response(
            ENDPOINTS["stats"],
            status_code=status,
            reason=str(extra.pop("reason", "Reason")),
            headers=extra.pop("headers", {}),  # type: ignore[arg-type]
            body=body,
            method="GET",
            url="https://analytics.memcachier.com/api/v1/1/stats",
            **extra,  # type: ignore[arg-type]
        )
    return info.value


def test_a_300_is_not_a_success() -> None:
    """Only 2xx decodes a body: a 300 is an error carrying its status."""
    error = _error(300)
    assert getattr(error, "status_code", None) == 300


def test_an_error_carries_reason_retry_after_and_no_secret() -> None:
    """An error's message has the reason phrase; Retry-After is read; a credential in the body is scrubbed."""
    error = _error(
        503,
        body=b"busy, user pw-Secret-123",
        reason="Service Unavailable",
        headers={"retry-after": "7"},
        secrets=["pw-Secret-123"],
    )
    assert isinstance(error, ServerError)
    assert "503 Service Unavailable" in str(error)
    assert error.retry_after == 7.0
    assert "pw-Secret-123" not in str(error)
    assert "pw-Secret-123" not in error.body


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: build_request(ENDPOINTS["stats"], "https://x", max_response_size=None),
            "^stats needs a cache id$",
        ),
        (
            lambda: build_request(
                ENDPOINTS["delete_credential"], "https://x", cache_id=1, max_response_size=None
            ),
            "^delete_credential needs a credential username$",
        ),
        (lambda: path_segment(7), "^a username must be a str, not int$"),  # type: ignore[arg-type]
        (
            lambda: path_segment("bob\x7f"),
            "^invalid credential username: it contains control characters$",
        ),
    ],
)
def test_a_request_that_cannot_be_built_says_why(call: Any, message: str) -> None:
    """A missing cache id or username, a username that is not a str or holds DEL, each say so."""
    with pytest.raises((TypeError, ValueError), match=message):
        call()
