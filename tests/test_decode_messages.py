"""The exact text of a DecodeError: where (the field path) and what was wrong.

A message names the kind of the bad value and, for a number out of range, its
size, never the value itself. Written to kill mutants that survived
``nox -s mutation`` and ``tests/mutation_fresh.py`` (tests/MUTATION.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memcachier_async import DecodeError
from memcachier_async._convert import decode, structure
from memcachier_async._models import Credential, HistoryRecord, Stats

SAMPLES = Path(__file__).parent / "samples"
STATS: dict[str, Any] = json.loads((SAMPLES / "stats_two_servers.json").read_text())
SERVER = next(iter(STATS))
HISTORY: list[Any] = json.loads((SAMPLES / "history.json").read_text())
CREDENTIALS: list[Any] = json.loads((SAMPLES / "credentials.json").read_text())


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


def _credentials_error(body: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(json.dumps(body).encode(), list[Credential], "list_credentials")
    return info.value


# The fast hooks (``_fast_server_stats``, ``_fast_history_record``) check a
# whole body at once; with more than one server or record, a valid neighbour
# can hide a hook that lets a bad value through. These bodies have one only.


@pytest.mark.parametrize(
    ("value", "problem"),
    [(1.5, "expected an integer, got a number"), (True, "expected an integer, got a boolean")],
)
def test_a_lone_servers_counter_that_is_no_integer_is_refused(value: Any, problem: str) -> None:
    """Stats of a single server with a float or boolean counter are a DecodeError at its path."""
    body = {SERVER: {**STATS[SERVER], "get_hits": value}}
    path = f"$[{SERVER!r}].get_hits"
    assert str(_stats_error(body)) == f"unexpected stats response: {path}: {problem}"


def test_a_lone_records_server_that_is_no_string_is_refused() -> None:
    """A history of one record whose server is an integer is a DecodeError at $[0].server."""
    body = [{**HISTORY[0], "server": 5}]
    problem = "$[0].server: expected a string, got an integer"
    assert str(_history_error(body)) == f"unexpected history response: {problem}"


def test_a_credentials_string_field_is_strict() -> None:
    """A username sent as a number is refused, not turned into its digits (cattrs' str(x))."""
    body = [{**CREDENTIALS[0], "sasl_username": 789101}]
    problem = "$[0].sasl_username: expected a string, got an integer"
    assert str(_credentials_error(body)) == f"unexpected list_credentials response: {problem}"


def test_a_non_object_in_a_list_of_credentials_is_named() -> None:
    """An integer where a credential object belongs says "expected an object" at its index."""
    problem = "$[0]: expected an object, got an integer"
    assert str(_credentials_error([1])) == f"unexpected list_credentials response: {problem}"


@pytest.mark.parametrize(
    ("endpoint", "cls"), [("history", list[HistoryRecord]), ("list_credentials", list[Credential])]
)
def test_an_object_where_an_array_belongs_is_named(endpoint: str, cls: Any) -> None:
    """A JSON object where the body must be an array says "expected an array" at $."""
    with pytest.raises(DecodeError) as info:
        decode(b"{}", cls, endpoint)
    assert str(info.value) == f"unexpected {endpoint} response: $: expected an array, got an object"


def test_an_unknown_field_named_extra_is_not_read_as_the_extra_mapping() -> None:
    """A server's field called "extra" is an unknown field: it adds no problem to the report."""
    body = {SERVER: {**STATS[SERVER], "get_hits": "7", "extra": 5}}
    path = f"$[{SERVER!r}].get_hits"
    assert str(_stats_error(body)) == (
        f"unexpected stats response: {path}: expected an integer, got a string"
    )


def test_a_plain_integer_is_strict_and_names_the_kind() -> None:
    """The converter's int (for a field with no range hook of its own) refuses a string by kind."""
    with pytest.raises(DecodeError) as info:
        structure(["7"], list[int], "custom")
    assert str(info.value) == "unexpected custom response: $[0]: expected an integer, got a string"
