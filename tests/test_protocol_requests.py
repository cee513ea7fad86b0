"""build_request: the bytes a call sends.

Written to kill mutants that survived ``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

from memcachier_async._protocol import ENDPOINTS, build_request

BASE = "https://analytics.memcachier.com/api/v1"


def test_a_call_without_a_body_sends_none() -> None:
    """A GET has no content at all (None, not an empty body) and no Content-Type."""
    spec = build_request(ENDPOINTS["stats"], BASE, cache_id=14, max_response_size=None)
    assert spec.content is None
    assert "Content-Type" not in spec.headers


def test_a_json_body_is_compact() -> None:
    """A JSON body is sent without spaces after separators."""
    spec = build_request(
        ENDPOINTS["update_credential"],
        BASE,
        cache_id=14,
        username="bob",
        body={"flush_capability": True, "write_capability": False},
        max_response_size=None,
    )
    assert spec.content == b'{"flush_capability":true,"write_capability":false}'
    assert spec.headers["Content-Type"] == "application/json"
