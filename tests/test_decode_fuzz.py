"""Arbitrary bodies: each endpoint's decoder raises DecodeError and nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memcachier_async import DecodeError
from memcachier_async._protocol import ENDPOINTS

SAMPLES = Path(__file__).parent / "samples"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)

DECODING = sorted(
    name for name, e in ENDPOINTS.items() if e.name not in {"flush", "delete_credential"}
)
GOOD = {
    "login": "login.json",
    "stats": "stats_two_servers.json",
    "history": "history.json",
    "list_credentials": "credentials.json",
    "create_credential": "credential_created.json",
    "update_credential": "capabilities.json",
    "promote_credential": "credential_promoted.json",
}


def _decode(name: str, body: bytes) -> Any:
    endpoint = ENDPOINTS[name]
    return endpoint.decode(body, endpoint.name)


def _mutations(value: Any, replacement: Any) -> list[Any]:
    """Copies of ``value`` with one leaf or member replaced, or one key dropped."""
    out: list[Any] = []
    if isinstance(value, dict):
        for key in value:
            dropped = {k: v for k, v in value.items() if k != key}
            out.append(dropped)
            for sub in _mutations(value[key], replacement):
                out.append({**value, key: sub})
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for sub in _mutations(item, replacement):
                out.append([*value[:i], sub, *value[i + 1 :]])
    else:
        out.append(replacement)
    return out


@pytest.mark.parametrize("name", DECODING)
@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_arbitrary_json_gives_only_decode_error(name: str, value: Any) -> None:
    """Any JSON value either decodes or raises DecodeError naming the endpoint and a path."""
    try:
        _decode(name, json.dumps(value).encode())
    except DecodeError as exc:
        assert exc.endpoint == name
        assert exc.path is not None
        assert exc.path.startswith("$")
        assert exc.path in str(exc)


@pytest.mark.parametrize("name", DECODING)
@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=64))
def test_arbitrary_bytes_give_only_decode_error(name: str, body: bytes) -> None:
    """Non-JSON bytes raise DecodeError (or decode, when they happen to be valid)."""
    try:
        _decode(name, body)
    except DecodeError as exc:
        assert exc.endpoint == name
        assert name in str(exc)


@pytest.mark.parametrize("name", DECODING)
@settings(max_examples=60, deadline=None)
@given(replacement=json_values)
def test_near_valid_bodies_name_the_bad_field(name: str, replacement: Any) -> None:
    """A valid sample with one field broken or missing decodes or names a path under $."""
    good = json.loads((SAMPLES / GOOD[name]).read_text())
    _decode(name, json.dumps(good).encode())  # the sample itself is valid
    for mutated in _mutations(good, replacement)[:40]:
        try:
            _decode(name, json.dumps(mutated).encode())
        except DecodeError as exc:
            assert exc.path is not None
            assert exc.path.startswith("$")


@pytest.mark.parametrize(
    ("name", "body", "path"),
    [
        ("stats", {"a:1": {"get_hits": "7"}}, "$['a:1']"),
        (
            "history",
            [{"memcachier_id": "x1", "server": "s", "stats": {}, "timestamp": "1"}],
            "$[0].memcachier_id",
        ),
        ("login", {"cache_id": "1561"}, "$.cache_id"),
        ("login", {}, "$.cache_id"),
        (
            "update_credential",
            {"flush_capability": "false", "write_capability": True, "api_capability": True},
            "$.flush_capability",
        ),
        ("list_credentials", {"cache_id": 1}, "$"),
        ("create_credential", [], "$"),
    ],
)
def test_decode_error_path(name: str, body: Any, path: str) -> None:
    """The DecodeError names the first bad field's path."""
    with pytest.raises(DecodeError) as info:
        _decode(name, json.dumps(body).encode())
    assert info.value.path is not None
    assert info.value.path.startswith(path)
    assert f"unexpected {name} response" in str(info.value)


def test_string_false_is_not_true() -> None:
    """A capability sent as the string "false" is an error, never read as True."""
    with pytest.raises(DecodeError, match="flush_capability"):
        _decode(
            "update_credential",
            b'{"flush_capability":"false","write_capability":true,"api_capability":true}',
        )


def test_numbers_as_strings_are_refused_for_stats() -> None:
    """Stats counters must be JSON integers; "12" or 1.5 or true is a DecodeError."""
    good = json.loads((SAMPLES / "stats_reference.json").read_text())
    server = next(iter(good))
    for bad in ("12", 1.5, True, None):
        body = {server: {**good[server], "get_hits": bad}}
        with pytest.raises(DecodeError, match="get_hits"):
            _decode("stats", json.dumps(body).encode())


def test_history_timestamp_out_of_range_is_decode_error() -> None:
    """An absurd millisecond timestamp is a DecodeError, not an OverflowError."""
    good = json.loads((SAMPLES / "history.json").read_text())
    good[0]["timestamp"] = "9" * 30
    with pytest.raises(DecodeError, match="timestamp"):
        _decode("history", json.dumps(good).encode())
