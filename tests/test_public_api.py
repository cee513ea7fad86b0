"""The public surface: what `import memcachier_async` offers."""

from __future__ import annotations

import memcachier_async


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return (kind, name)


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, every name exists, and nothing private leaks."""
    names = memcachier_async.__all__
    assert names == sorted(names, key=_isort_key)
    for name in names:
        assert hasattr(memcachier_async, name), name
    public = {n for n in dir(memcachier_async) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(memcachier_async, n)).__name__ == "module"}
    assert public - modules <= set(names) | {"annotations"}


def test_core_names_are_exported() -> None:
    """The names other code depends on stay exported."""
    expected = {
        "AsyncAnalytics",
        "APIError",
        "AuthenticationError",
        "Capabilities",
        "Credential",
        "DecodeError",
        "HistoryRecord",
        "MemcachierError",
        "NewCredential",
        "NotFoundError",
        "OutcomeUnknownError",
        "PermissionDeniedError",
        "RateLimitError",
        "ResponseTooLargeError",
        "ServerError",
        "ServerStats",
        "Stats",
        "TransportError",
        "to_dict",
        "to_json",
    }
    assert expected <= set(memcachier_async.__all__)


def test_error_tree() -> None:
    """The exception hierarchy is the documented tree."""
    m = memcachier_async
    assert issubclass(m.APIError, m.MemcachierError)
    for cls in (
        m.AuthenticationError,
        m.PermissionDeniedError,
        m.NotFoundError,
        m.RateLimitError,
        m.ServerError,
    ):
        assert issubclass(cls, m.APIError)
    assert issubclass(m.TransportError, m.MemcachierError)
    assert issubclass(m.OutcomeUnknownError, m.TransportError)
    assert issubclass(m.DecodeError, m.MemcachierError)
    assert not issubclass(m.DecodeError, m.APIError)
    assert issubclass(m.ResponseTooLargeError, m.MemcachierError)
    assert not issubclass(m.ResponseTooLargeError, (m.APIError, m.TransportError))


def public_exceptions() -> list[tuple[str, type[BaseException]]]:
    import memcachier_async.testing

    found = []
    for module in (memcachier_async, memcachier_async.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                found.append((module.__name__, value))
    return found


def test_tracebacks_name_exceptions_by_their_public_path() -> None:
    """A traceback says memcachier_async.AuthenticationError, the name users import and catch,
    never the private module (memcachier_async._errors) it is defined in."""
    import traceback

    exceptions = public_exceptions()
    assert len(exceptions) >= 14
    for module, cls in exceptions:
        assert cls.__module__ == module, cls
    error = memcachier_async.AuthenticationError(
        "401 Unauthorized", status_code=401, method="GET", url="https://x/login", body=""
    )
    (line,) = traceback.format_exception_only(type(error), error)
    assert line.startswith("memcachier_async.AuthenticationError: 401 Unauthorized")


def test_models_keep_their_module_for_type_hints() -> None:
    """The models' annotations still resolve (pydantic and cattrs read them through
    typing.get_type_hints, in the module __module__ names)."""
    import typing

    import attrs

    for name in memcachier_async.__all__:
        value = getattr(memcachier_async, name)
        if isinstance(value, type) and attrs.has(value):
            typing.get_type_hints(value)  # raises NameError if resolved in the wrong module
