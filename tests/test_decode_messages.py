"""The exact text of a DecodeError: where (the field path) and what was wrong.

A message names the kind of the bad value and, for a number out of range, its
size, never the value itself. Written to kill mutants that survived
``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memcachier_async import DecodeError
from memcachier_async._convert import decode
from memcachier_async._models import HistoryRecord, Stats

SAMPLES = Path(__file__).parent / "samples"
STATS: dict[str, Any] = json.loads((SAMPLES / "stats_two_servers.json").read_text())
SERVER = next(iter(STATS))
HISTORY: list[Any] = json.loads((SAMPLES / "history.json").read_text())


def _stats_error(body: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(json.dumps(body).encode(), Stats, "stats")
    return info.value


def _history_error(body: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(json.dumps(body).encode(), list[HistoryRecord], "history")
    return info.value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-1, "counter or gauge out of range: expected 0 ≤ value < 2**64, got a negative number"),
        (2**64, "counter or gauge out of range: expected 0 ≤ value < 2**64, got a 65-bit number"),
        ("7", "expected an integer, got a string"),
        (None, "expected an integer, got null"),
        (True, "expected an integer, got a boolean"),
        (1.5, "expected an integer, got a number"),
        ([], "expected an integer, got an array"),
        ({}, "expected an integer, got an object"),
    ],
)
def test_a_bad_counter_is_named_by_path_kind_and_size(value: Any, problem: str) -> None:
    """A bad counter's error gives its path, the kind of value and, out of range, its bit length."""
    body = json.loads(json.dumps(STATS))
    body[SERVER]["get_hits"] = value
    error = _stats_error(body)
    path = f"$[{SERVER!r}].get_hits"
    assert error.path == path
    assert str(error) == f"unexpected stats response: {path}: {problem}"


def test_a_missing_counter_is_a_required_field() -> None:
    """A counter absent from a server's stats is "required field missing" at its path."""
    body = json.loads(json.dumps(STATS))
    del body[SERVER]["get_hits"]
    assert str(_stats_error(body)).endswith(f"$[{SERVER!r}].get_hits: required field missing")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "$: expected an object of servers, got an array"),
        ({"a": 5}, "$['a']: expected an object of stats, got an integer"),
        ({"a": "b"}, "$['a']: expected an object of stats, got a string"),
    ],
)
def test_a_body_of_the_wrong_shape_is_named(body: Any, message: str) -> None:
    """Stats that are not an object of objects say which level is wrong and what it holds."""
    assert str(_stats_error(body)) == f"unexpected stats response: {message}"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("timestamp", "x1", "expected a string of digits, got other characters"),
        ("timestamp", "1" * 20, "expected at most 19 digits, got 20"),
        ("timestamp", str(10**16), "timestamp out of range: a 54-bit number"),
        ("timestamp", -5, "timestamp out of range: a negative number"),
        ("memcachier_id", "12a", "expected a string of digits, got other characters"),
        (
            "memcachier_id",
            str(2**63),
            "id out of range: expected 0 ≤ value < 2**63, got a 64-bit number",
        ),
        ("memcachier_id", 3.5, "expected a string of digits, got a number"),
    ],
)
def test_a_bad_history_field_is_named(field: str, value: Any, problem: str) -> None:
    """A bad timestamp or id in a history record is named by its path and what was wrong."""
    body = json.loads(json.dumps(HISTORY))
    body[0][field] = value
    error = _history_error(body)
    assert str(error) == f"unexpected history response: $[0].{field}: {problem}"
