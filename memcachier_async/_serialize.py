"""Models as plain data: :func:`to_dict`, :func:`to_json`, and pydantic/FastAPI support.

Unstructuring goes through the one cattrs converter of ``_convert`` (the
one that decodes responses), with hooks for what JSON cannot hold as is:

- datetimes become ISO 8601 strings in UTC (``"2017-07-21T15:31:25+00:00"``);
- :class:`Stats` becomes the object the API sends (``"host:port"`` → stats);
- :class:`Insight` gains its ``seconds``;
- :class:`NewCredential` leaves out ``sasl_password`` unless the caller asks
  for secrets (``include_secrets=True``), so a model logged or returned by a
  web handler never leaks a password by accident.

The models hold no serialisation code. For pydantic (FastAPI's
``response_model``, or a route's return annotation) each model class is
given ``__get_pydantic_core_schema__`` and ``__get_pydantic_json_schema__``
here; ``pydantic_core`` is imported only when pydantic asks, so pydantic
stays out of the core dependencies.
"""

from __future__ import annotations

import contextvars
import json
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from ._convert import _FAST as _CONVERTER
from ._insight import Insight, ProcessedStats
from ._models import (
    Capabilities,
    Capacity,
    Credential,
    DigitString,
    EpochMillis,
    EpochSeconds,
    HistoryRecord,
    MemoryUsage,
    NewCredential,
    ServerCapacity,
    ServerMemory,
    ServerStats,
    Stats,
)

__all__ = ["MODELS", "to_dict", "to_json"]

#: Every model class :func:`to_dict` and pydantic know.
MODELS: tuple[type, ...] = (
    Capabilities,
    Capacity,
    Credential,
    HistoryRecord,
    Insight,
    MemoryUsage,
    NewCredential,
    ProcessedStats,
    ServerCapacity,
    ServerMemory,
    ServerStats,
    Stats,
)

_include_secrets: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "memcachier_include_secrets", default=False
)

_dumps: Callable[[Any], bytes]
try:  # orjson is optional (the speedups extra); the output is the same JSON.
    import orjson
except ImportError:  # pragma: no cover - exercised when orjson is absent

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

else:
    _dumps = orjson.dumps


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:  # the SDK's datetimes are aware; a naive one is taken as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _register() -> None:
    c = _CONVERTER
    for moment in (datetime, EpochSeconds, EpochMillis):
        c.register_unstructure_hook(moment, _iso)
    c.register_unstructure_hook(DigitString, int)
    c.register_unstructure_hook(
        Stats, lambda stats: {name: c.unstructure(s, ServerStats) for name, s in stats.items()}
    )
    plain_insight = make_dict_unstructure_fn(Insight, c)
    c.register_unstructure_hook(
        Insight, lambda insight: {**plain_insight(insight), "seconds": insight.seconds}
    )
    # A subclass of Credential: its own hook, so the password is a choice.
    with_password = make_dict_unstructure_fn(NewCredential, c)
    without_password = make_dict_unstructure_fn(NewCredential, c, sasl_password=override(omit=True))
    c.register_unstructure_hook(
        NewCredential,
        lambda new: with_password(new) if _include_secrets.get() else without_password(new),
    )


_register()


def to_dict(obj: Any, *, include_secrets: bool = False) -> Any:
    """``obj`` (a model, or a list, tuple or dict of models) as JSON-ready data.

    Models become dicts of their fields, with datetimes as ISO 8601 strings
    in UTC; a :class:`Stats` becomes ``{"host:port": {...}}``, as the API
    sends it. A :class:`NewCredential`'s ``sasl_password`` is left out unless
    ``include_secrets=True``.
    """
    token = _include_secrets.set(include_secrets)
    try:
        if isinstance(obj, Credential):
            # By the class of the object, not the annotation: a NewCredential
            # in a list[Credential] keeps its own rules.
            return _CONVERTER.unstructure(obj, type(obj))
        return _CONVERTER.unstructure(obj)
    finally:
        _include_secrets.reset(token)


def to_json(obj: Any, *, include_secrets: bool = False) -> bytes:
    """:func:`to_dict`, as compact UTF-8 JSON."""
    return _dumps(to_dict(obj, include_secrets=include_secrets))


# --- pydantic (FastAPI) --------------------------------------------------------------


def _field_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of a field of type ``tp``, as :func:`to_dict` writes it."""
    if tp in (datetime, EpochSeconds, EpochMillis):
        return {"type": "string", "format": "date-time"}
    if tp is bool:
        return {"type": "boolean"}
    if tp in (int, DigitString):
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if attrs.has(tp):
        return model_schema(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [{"type": "null"} if a is type(None) else _field_schema(a) for a in args]}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _field_schema(args[0])}
    if origin is tuple:  # a fixed length: Capacity.window, (start, end)
        return {
            "type": "array",
            "prefixItems": [_field_schema(a) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin in (dict, Mapping) or (origin is not None and issubclass(origin, Mapping)):
        return {"type": "object", "additionalProperties": _field_schema(args[1])}
    raise TypeError(f"no JSON schema for {tp!r}")  # pragma: no cover - a new field type


def model_schema(cls: type) -> dict[str, Any]:
    """The JSON schema of a model's :func:`to_dict` form."""
    if cls is Stats:
        return {
            "title": "Stats",
            "type": "object",
            "additionalProperties": model_schema(ServerStats),
        }
    hints = typing.get_type_hints(cls)
    names = [a.name for a in attrs.fields(cls)]
    if cls is NewCredential:
        names.remove("sasl_password")  # only with include_secrets=True
    properties = {name: _field_schema(hints[name]) for name in names}
    if cls is Insight:
        properties["seconds"] = {"anyOf": [{"type": "number"}, {"type": "null"}]}
    return {
        "title": cls.__name__,
        "type": "object",
        "properties": properties,
        "required": list(properties),
    }


def _pydantic_core_schema(cls: type, source: Any, handler: Any) -> Any:
    from pydantic_core import core_schema  # pydantic is not a core dependency

    def validate(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        raise ValueError(f"expected a {cls.__name__}, got {type(value).__name__}")

    return core_schema.no_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(to_dict),
    )


def _pydantic_json_schema(cls: type, schema: Any, handler: Any) -> dict[str, Any]:
    return model_schema(cls)


for _model in MODELS:
    # Class attributes (not instance state): the frozen, slotted models stay as they are.
    _model.__get_pydantic_core_schema__ = classmethod(_pydantic_core_schema)  # type: ignore[attr-defined]
    _model.__get_pydantic_json_schema__ = classmethod(_pydantic_json_schema)  # type: ignore[attr-defined]
