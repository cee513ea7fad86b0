"""The one cattrs converter that turns JSON into models.

Built once, at import. The wire format's quirks are hooks on types, not
parsing in the client:

- ``EpochSeconds``: Unix seconds (an int) → aware UTC datetime;
- ``EpochMillis``: milliseconds as a string of digits → aware UTC datetime;
- ``DigitString``: an integer sent as a string of digits;
- ``int``, ``bool``, ``str``: strict. cattrs' defaults call ``int(x)``,
  ``bool(x)`` and ``str(x)``, which would read ``"false"`` as ``True``;
- ``ServerStats``: integer fields the SDK does not know go to ``extra``.

Every value is checked against the range the wire allows before any
arithmetic trusts it (see "Limits" below): counters and gauges are
memcached's unsigned 64-bit integers, ids are non-negative database keys.
Anything the JSON layer can raise (not JSON, not UTF-8, nested too deep,
NaN, a number too long) becomes :class:`DecodeError`. A key sent twice in
one object keeps its last value, as both JSON parsers we use do (RFC 8259
leaves it open); every value is range-checked all the same.

Two converters share this configuration: a fast one without detailed
validation for the hot path and a detailed one that is only used to explain
a failure, with the field path (``$.stats["a:1"].get_hits``). With msgspec
installed, stats and history bodies go first to ``_fast_json``, which
decodes in C the bodies it can decode exactly as these converters would and
hands every other body back to them.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar, get_origin, get_type_hints

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.gen import make_dict_structure_fn, override

from ._errors import DecodeError
from ._models import (
    DigitString,
    EpochMillis,
    EpochSeconds,
    HistoryRecord,
    ServerStats,
    Stats,
)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):
        raise ValueError("number out of a double's range")
    return value


_INF = float("inf")
_UTF8_BOM = b"\xef\xbb\xbf"


def _json_loads(body: bytes) -> Any:
    """The standard library's parser, made as strict as orjson.

    ``json.loads`` would guess UTF-16/32 from the bytes, skip a UTF-8 BOM and
    read ``NaN`` and ``1e400``; JSON on the wire is UTF-8 (RFC 8259, 8.1)
    and those are not JSON numbers.
    """
    if body.startswith(_UTF8_BOM):
        raise ValueError("a UTF-8 byte order mark is not JSON")
    return json.loads(
        body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
    )


_loads: Callable[[bytes], Any]
try:  # orjson is optional (the speedups extra); it only makes decoding faster.
    import orjson
except ImportError:  # pragma: no cover - exercised when orjson is absent
    _loads = _json_loads
else:  # pragma: no cover - exercised when orjson is installed
    _loads = orjson.loads

__all__ = ["decode", "structure"]

T = TypeVar("T")

_SERVERS: Any = dict[str, ServerStats]
_STATS_FIELDS = frozenset(a.name for a in attrs.fields(ServerStats) if a.name != "extra")
# Beyond this, a "timestamp" is not a date this API can mean (year > 9999).
_MAX_EPOCH_SECONDS = 253_402_300_799
_MAX_EPOCH_MILLIS = _MAX_EPOCH_SECONDS * 1000 + 999

# --- Limits: the ranges the wire allows ------------------------------------
#: Counters and gauges are memcached's unsigned 64-bit integers: 0 ≤ v < 2**64.
VALUE_LIMIT = 2**64
#: Ids (``cache_id``, a credential's ``id``, ``memcachier_id``) are database
#: keys: 0 ≤ v < 2**63.
ID_LIMIT = 2**63
# Unknown integer fields (``extra``) may be signed or unsigned 64-bit; others
# are dropped like unknown fields of another kind.
_EXTRA_MIN = -(2**63)
# A string of digits longer than this is no id or millisecond time we read.
_MAX_DIGITS = 19
_ID_FIELDS = frozenset({"cache_id", "id"})


class _WireValueError(ValueError):
    """A JSON value of the right kind but not a value the API sends."""


def _strict_int(value: Any, _: object) -> int:
    if type(value) is int:
        return value
    raise TypeError(f"expected an integer, got {_kind(value)}")


def _strict_bool(value: Any, _: object) -> bool:
    if type(value) is bool:
        return value
    raise TypeError(f"expected true or false, got {_kind(value)}")


def _strict_str(value: Any, _: object) -> str:
    if type(value) is str:
        return value
    raise TypeError(f"expected a string, got {_kind(value)}")


def _magnitude(value: int) -> str:
    # How big, never the digits: a 400-digit number would flood a log line.
    return "a negative number" if value < 0 else f"a {value.bit_length()}-bit number"


def _in_range(value: Any, limit: int, what: str) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {_kind(value)}")
    if 0 <= value < limit:
        return value
    bits = limit.bit_length() - 1
    raise _WireValueError(
        f"{what} out of range: expected 0 ≤ value < 2**{bits}, got {_magnitude(value)}"
    )


def _value(value: Any, _: object = None) -> int:
    """A counter or gauge: memcached's unsigned 64-bit."""
    return _in_range(value, VALUE_LIMIT, "counter or gauge")


def _id(value: Any, _: object = None) -> int:
    return _in_range(value, ID_LIMIT, "id")


def _optional_id(value: Any, _: object = None) -> int | None:
    return None if value is None else _id(value)


def _digits(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str:
        if value.isascii() and value.isdigit():
            if len(value) > _MAX_DIGITS:
                raise _WireValueError(f"expected at most {_MAX_DIGITS} digits, got {len(value)}")
            return int(value)
        raise _WireValueError("expected a string of digits, got other characters")
    raise TypeError(f"expected a string of digits, got {_kind(value)}")


def _digit_id(value: Any, _: object = None) -> int:
    return _id(_digits(value))


def _epoch(seconds: float) -> datetime:
    if not 0 <= seconds <= _MAX_EPOCH_SECONDS:
        raise _WireValueError(f"timestamp out of range: {seconds!r}")
    return datetime.fromtimestamp(seconds, timezone.utc)


def _epoch_seconds(value: Any, _: object) -> datetime:
    if type(value) is not int:
        raise TypeError(f"expected Unix seconds as an integer, got {_kind(value)}")
    return _epoch(value)


def _epoch_millis(value: Any, _: object) -> datetime:
    millis = _digits(value)
    if not 0 <= millis <= _MAX_EPOCH_MILLIS:
        # Checked before dividing: a huge integer would not fit a float.
        raise _WireValueError(f"timestamp out of range: {_magnitude(millis)}")
    return _epoch(millis / 1000)


_JSON_KINDS = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _kind(value: Any) -> str:
    # The kind only, never the value: a malformed body may hold a password.
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _extra_of(value: dict[Any, Any]) -> dict[str, int]:
    """The integer fields the SDK does not know, when they fit 64 bits."""
    return {
        k: v
        for k, v in value.items()
        if k not in _STATS_FIELDS and type(v) is int and _EXTRA_MIN <= v < VALUE_LIMIT
    }


def _make_server_stats_hook(
    converter: cattrs.Converter,
) -> Callable[[Any, object], ServerStats]:
    ranged: dict[str, Any] = {
        name: override(struct_hook=_value) for name in _STATS_FIELDS if name != "time"
    }
    known = make_dict_structure_fn(ServerStats, converter, extra=override(omit=True), **ranged)

    def structure_server_stats(value: Any, cls: object) -> ServerStats:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object of stats, got {_kind(value)}")
        extra = _extra_of(value)
        stats = known(value, cls)
        return attrs.evolve(stats, extra=extra) if extra else stats

    return structure_server_stats


def _require(kind: type, hook: Callable[[Any, Any], T], what: str) -> Callable[[Any, Any], T]:
    """``hook``, refusing a JSON value of the wrong kind with a clear message.

    cattrs would iterate a string or an object where an array belongs, and
    index a string where an object belongs, with baffling errors.
    """

    def checked(value: Any, cls: Any) -> T:
        if type(value) is not kind:
            raise TypeError(f"expected {what}, got {_kind(value)}")
        return hook(value, cls)

    return checked


def _is_list(cls: Any) -> bool:
    return get_origin(cls) is list


def _list_factory(cls: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    return _require(list, list_structure_factory(cls, converter), "an array")


def _attrs_factory(cls: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    # Fields named ``cache_id`` and ``id`` are ids, whichever class holds them.
    hints = get_type_hints(cls)
    ids: dict[str, Any] = {
        name: override(struct_hook=_id if hints[name] is int else _optional_id)
        for name in _ID_FIELDS & hints.keys()
    }
    return _require(dict, make_dict_structure_fn(cls, converter, **ids), "an object")


def _structure_stats(converter: cattrs.Converter) -> Callable[[Any, object], Stats]:
    def structure_stats(value: Any, _: object) -> Stats:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object of servers, got {_kind(value)}")
        return Stats(converter.structure(value, _SERVERS))

    return structure_stats


# --- the hot path: stats and history ---------------------------------------
#
# Hand-written hooks for the fast converter. cattrs' generated code calls one
# hook per field and builds a ServerStats from 32 keyword arguments; a stats
# object is 31 integers, so checking them in one pass and passing them by
# position is about 3× cheaper. They accept exactly what the detailed
# converter accepts; on anything else they raise, and ``structure`` re-decodes
# with the detailed converter to say where.

_STATS_ORDER = tuple(a.name for a in attrs.fields(ServerStats) if a.name != "extra")
_STATS_VALUES = operator.itemgetter(*_STATS_ORDER)
_TIME_AT = _STATS_ORDER.index("time")
_ONLY_INT = frozenset({int})
_ONLY_STR = frozenset({str})
# attrs' own __init__ sets each field of a frozen class this way.
_set_field = object.__setattr__
# The servers of one snapshot share their clock: convert each second once.
_SECONDS_CACHE: dict[int, datetime] = {}


def _cached_epoch_seconds(value: Any) -> datetime:
    found = _SECONDS_CACHE.get(value) if type(value) is int else None
    if found is None:
        found = _epoch_seconds(value, None)
        if len(_SECONDS_CACHE) >= 1024:
            _SECONDS_CACHE.clear()
        _SECONDS_CACHE[value] = found
    return found


def _fast_server_stats(value: Any, _: object = None) -> ServerStats:
    if type(value) is not dict:
        raise TypeError("expected an object")
    values = _STATS_VALUES(value)  # KeyError when a field is missing
    if not _ONLY_INT.issuperset(map(type, values)):
        raise TypeError("expected integers")
    # Every field in 0 ≤ v < 2**64 (``time`` is bounded further below).
    if min(values) < 0 or max(values) >= VALUE_LIMIT:
        raise ValueError("out of range")
    if len(value) == len(_STATS_ORDER):
        stats = ServerStats(*values)
    else:
        stats = ServerStats(*values, extra=_extra_of(value))  # type: ignore[misc]
    # Built with the integer time (one call by position), then given its datetime.
    _set_field(stats, "time", _cached_epoch_seconds(values[_TIME_AT]))
    return stats


def _fast_stats(value: Any, _: object) -> Stats:
    if type(value) is not dict or not _ONLY_STR.issuperset(map(type, value)):
        raise TypeError("expected an object of servers")
    return Stats({server: _fast_server_stats(stats) for server, stats in value.items()})


def _fast_history_record(value: Any, _: object = None) -> HistoryRecord:
    if type(value) is not dict:
        raise TypeError("expected an object")
    server = value["server"]
    if type(server) is not str:
        raise TypeError("expected a string")
    return HistoryRecord(
        _digit_id(value["memcachier_id"]),  # type: ignore[arg-type]
        server,
        _fast_server_stats(value["stats"]),
        _epoch_millis(value["timestamp"], None),  # type: ignore[arg-type]
    )


def _fast_history(value: Any, _: object) -> list[HistoryRecord]:
    if type(value) is not list:
        raise TypeError("expected an array")
    return [_fast_history_record(record) for record in value]


def _build(detailed: bool) -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=detailed)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(EpochSeconds, _epoch_seconds)
    converter.register_structure_hook(EpochMillis, _epoch_millis)
    converter.register_structure_hook(DigitString, _digit_id)
    converter.register_structure_hook_factory(_is_list, _list_factory)
    converter.register_structure_hook_factory(attrs.has, _attrs_factory)
    converter.register_structure_hook(ServerStats, _make_server_stats_hook(converter))
    converter.register_structure_hook(Stats, _structure_stats(converter))
    if not detailed:
        converter.register_structure_hook(ServerStats, _fast_server_stats)
        converter.register_structure_hook(Stats, _fast_stats)
        converter.register_structure_hook(HistoryRecord, _fast_history_record)
        converter.register_structure_hook_func(lambda t: t == list[HistoryRecord], _fast_history)
    return converter


_FAST = _build(detailed=False)
_DETAILED = _build(detailed=True)


def structure(data: Any, cls: type[T], endpoint: str) -> T:
    """``data`` (parsed JSON) as ``cls``, or :class:`DecodeError` saying where it is wrong."""
    try:
        return _FAST.structure(data, cls)
    except Exception:
        pass
    try:
        # Re-decode with detailed validation only to explain the failure.
        _DETAILED.structure(data, cls)
    except Exception as exc:
        problems = _explain(exc)
        detail = "; ".join(f"{where}: {what}" for where, what in problems)
        path = problems[0][0] if problems else None
        raise DecodeError(
            f"unexpected {endpoint} response: {detail}", endpoint=endpoint, path=path
        ) from None
    # The fast path failed where the detailed one did not: not expected, but
    # the detailed result is right, so use it.
    return _DETAILED.structure(data, cls)  # pragma: no cover


def _explain(exc: BaseException) -> list[tuple[str, str]]:
    """(field path, problem) pairs, e.g. ``("$['a:1'].get_hits", "expected an integer")``."""
    if isinstance(exc, cattrs.BaseValidationError):
        lines = cattrs.transform_error(exc, path="$", format_exception=_format)
        pairs = []
        for line in lines:
            what, _, where = line.rpartition(" @ ")
            pairs.append((where, what))
        return pairs
    return [("$", _format(exc, None))]


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        return str(exc)
    expected = getattr(type_, "__name__", None) or repr(type_)
    return f"invalid value for type {expected}"


def decode(body: bytes, cls: type[T], endpoint: str) -> T:
    """Parse a JSON body and structure it as ``cls``; only :class:`DecodeError` escapes.

    The garbage collector is left alone: it is the application's (docs/limits.md
    says what an application that decodes big histories can set itself).
    """
    return _decode(body, cls, endpoint)


#: Bodies from this size on are decoded in a worker thread (see
#: ``AsyncAnalytics``) and parsed piece by piece (:func:`_loads_in_pieces`).
THREAD_FROM = 1024 * 1024

_FREE_STEP = 2048
_STRICT = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, index: int) -> int:
    """The index after the JSON whitespace at ``index``."""
    match = _SPACE.match(text, index)
    return match.end() if match is not None else index


def _loads_in_pieces(body: bytes, member: Callable[[Any], Any] | None = None) -> Any:
    """``_json_loads``, parsing a top-level array or object one member at a time.

    A parser in C holds the GIL until it returns: parsing 50 MB in one call
    in a worker thread would stop the event loop's thread just the same.
    One member at a time, the thread gives the GIL back between members.
    Accepts and refuses exactly what ``_json_loads`` does.

    ``member``, when given, turns each member of a top-level array into what
    the list keeps, as soon as it is parsed: the parsed member is garbage
    at once, so a 90,000-record history never holds 180,000 dicts at a time
    (which every full collection of the cyclic collector would walk).
    """
    if body.startswith(_UTF8_BOM):
        raise ValueError("a UTF-8 byte order mark is not JSON")
    text = body.decode("utf-8")
    index = _skip(text, 0)
    opening = text[index : index + 1]
    if opening not in ("[", "{"):
        return _STRICT.decode(text)
    closing = "]" if opening == "[" else "}"
    items: list[Any] = []
    members: dict[str, Any] = {}
    index = _skip(text, index + 1)
    if text.startswith(closing, index):
        index += 1
    else:
        while True:
            if opening == "{":
                if not text.startswith('"', index):
                    raise ValueError(f"expected a key at {index}")
                key, index = _STRICT.raw_decode(text, index)
                index = _skip(text, index)
                if not text.startswith(":", index):
                    raise ValueError(f"expected ':' at {index}")
                value, index = _STRICT.raw_decode(text, _skip(text, index + 1))
                members[key] = value
            else:
                value, index = _STRICT.raw_decode(text, index)
                items.append(value if member is None else member(value))
            index = _skip(text, index)
            if text.startswith(",", index):
                index = _skip(text, index + 1)
            elif text.startswith(closing, index):
                index += 1
                break
            else:
                raise ValueError(f"expected ',' or {closing!r} at {index}")
    if _skip(text, index) != len(text):
        raise ValueError(f"extra data at {index}")
    return items if opening == "[" else members


def _decode(body: bytes, cls: type[T], endpoint: str) -> T:
    fast = _FAST_BYTES.get(cls)
    if fast is not None:
        try:
            if len(body) < THREAD_FROM:
                decoded = fast(body)
            else:  # one C call would hold the GIL for all of it (see _in_chunks)
                decoded = _in_chunks(fast, body) if cls == _HISTORY else None
        except Exception:  # msgspec refused it (a RecursionError when too deep)
            decoded = None
        if decoded is not None:
            return decoded  # type: ignore[no-any-return]
        # Refused: the converter below decides, and explains a failure.
    if cls == _HISTORY and len(body) >= THREAD_FROM:
        # Each record structured as soon as it is parsed (see _loads_in_pieces).
        # Anything unusual, and the path below parses again to decide and explain.
        try:
            records = _loads_in_pieces(body, _fast_history_record)
        except Exception:
            records = None
        if type(records) is list:
            return records  # type: ignore[return-value]
    try:
        return _structure_then_free(_parse(body, endpoint, _loads), cls, endpoint)
    except DecodeError:
        if _loads is _json_loads:
            raise
    # orjson reads an integer literal beyond 64 bits as a float, or refuses the
    # whole body; the standard parser reads it exactly. Parsing again on this
    # (cold) path makes the error the same with and without the speedups
    # extra: the field path and "out of range", not "got a number".
    return _structure_then_free(_parse(body, endpoint, _json_loads), cls, endpoint)


def _structure_then_free(data: Any, cls: type[T], endpoint: str) -> T:
    try:
        return structure(data, cls, endpoint)
    finally:
        if type(data) is list and len(data) > _FREE_STEP:
            # Freeing 90,000 parsed records at once is one long C call under
            # the GIL (about 0.1 s): a few thousand at a time lets the event
            # loop's thread in between.
            while data:
                del data[-_FREE_STEP:]


def _parse(body: bytes, endpoint: str, loads: Callable[[bytes], Any]) -> Any:
    try:
        return loads(body) if len(body) < THREAD_FROM else _loads_in_pieces(body)
    except RecursionError:
        raise DecodeError(
            f"unexpected {endpoint} response: the body is nested too deep", endpoint=endpoint
        ) from None
    except ValueError as exc:  # also UnicodeDecodeError and orjson's JSONDecodeError
        raise DecodeError(
            f"unexpected {endpoint} response: the body is not JSON ({exc.__class__.__name__})",
            endpoint=endpoint,
        ) from None


_HISTORY: Any = list[HistoryRecord]
_CHUNK = 128 * 1024
_RECORD_BOUNDARY = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")
_BLANK = re.compile(rb"[ \t\n\r]*")


def _in_chunks(fast: Callable[[bytes], Any], body: bytes) -> list[Any] | None:
    """A big history array through msgspec, about 128 KiB of records per call.

    A C decoder holds the GIL until it returns: 50 MB in one call from a
    worker thread would stop the event loop's thread for as long. The array
    is cut between records (``}, {``) and each piece decoded on its own.
    A cut inside a string leaves that piece's string unterminated, so the
    piece is refused and so is the whole body (``None``): the converter then
    decides, exactly as for a refused small body.
    """
    start, end = body.find(b"["), body.rfind(b"]")
    if start < 0 or end < start:
        return None
    if not _BLANK.fullmatch(body, 0, start) or not _BLANK.fullmatch(body, end + 1):
        return None
    records: list[Any] = []
    position = start + 1
    while True:
        cut = _RECORD_BOUNDARY.search(body, position + _CHUNK, end)
        stop = cut.start() + 1 if cut is not None else end
        piece = fast(b"[" + body[position:stop] + b"]")
        if piece is None:
            return None
        records.extend(piece)
        if cut is None:
            return records
        position = cut.end() - 1  # at the next record's "{"


_BY_TIMESTAMP = operator.attrgetter("timestamp")


def sort_history(records: list[HistoryRecord]) -> list[HistoryRecord]:
    """History in time order; records of one sampling time keep the server order sent."""
    return sorted(records, key=_BY_TIMESTAMP)


def _fast_bytes() -> dict[Any, Callable[[bytes], Any]]:
    """msgspec's decoders of stats and history bodies, or none without msgspec."""
    try:
        from . import _fast_json
    except ImportError:  # pragma: no cover - exercised when msgspec is absent
        return {}
    return _fast_json.build(
        max_value=VALUE_LIMIT - 1,
        max_epoch_seconds=_MAX_EPOCH_SECONDS,
        # Milliseconds are divided, then checked as seconds (``_epoch``): no
        # fraction of a second past the limit.
        max_epoch_millis=min(_MAX_EPOCH_MILLIS, _MAX_EPOCH_SECONDS * 1000),
        max_id=ID_LIMIT - 1,
    )


#: Bytes → model for the big bodies, when msgspec is installed (see _fast_json.py).
_FAST_BYTES = _fast_bytes()
