"""Whole-test switches: instant retries, and every client on an emulator.

Both act on every client of the process while they are on (as
``respx.mock`` and moto's ``mock_aws`` do), not only on clients a test
builds itself: an application's own ``AsyncAnalytics.from_env()`` in a
FastAPI lifespan is covered too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

import httpx

from memcachier_async._client import DEFAULT_BASE_URL
from memcachier_async._emulator._core import Emulator
from memcachier_async._stack import set_mock
from memcachier_async._transports.retry import set_instant_retries

__all__ = ["MockAPI", "instant_retries", "mock_api"]

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def instant_retries(max_attempts: int | None = None) -> Iterator[None]:
    """Every retry waits zero seconds (``Retry-After`` too) while this is on.

    ::

        with instant_retries():
            with pytest.raises(ServerError):
                await api.stats()   # 4 × 503, no backoff slept

    Each policy still makes its ``max_attempts`` attempts (at most
    ``max_attempts`` here, when given), and the retry budget is left out,
    so how many attempts a call makes does not depend on earlier tests.
    Deadlines (``with_options(timeout=...)``) still hold. Applies to every
    client of the process, including those made before it was turned on.
    """
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    previous = set_instant_retries(max_attempts or 0)
    try:
        yield
    finally:
        set_instant_retries(previous)


class _AnyCredential(httpx.AsyncBaseTransport):
    """The emulator's transport, which first makes any unknown credential
    a credential of the emulator's first cache (so ``from_env()`` with
    whatever test credentials logs in)."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._inner = emulator.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._admit(request.headers.get("authorization"))
        return await self._inner.handle_async_request(request)

    def _admit(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not self._emulator.caches:
            return
        try:
            username, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return
        if not sep or not username:
            return
        for cache in self._emulator.caches:
            if any(c.sasl_username == username for c in cache.credentials):
                return  # known: its own password decides
        self._emulator.cache.add_credential(username, password)


class MockAPI:
    """The switch :func:`mock_api` returns: a context manager (sync or async)
    and a decorator (of sync or async functions)."""

    def __init__(self, emulator: Emulator | None) -> None:
        self._given = emulator
        self._emulator: Emulator | None = None

    @property
    def emulator(self) -> Emulator:
        """The emulator the clients talk to (while the switch is on)."""
        if self._emulator is None:
            raise RuntimeError("mock_api() is not active")
        return self._emulator

    def __enter__(self) -> Emulator:
        if self._emulator is not None:
            raise RuntimeError("this mock_api() is already active")
        emulator = self._given if self._given is not None else Emulator(history_interval=1.0)
        if self._given is None:
            emulator.drive_traffic(500)
            emulator.sample()
        self._emulator = emulator

        def transport(base_url: str) -> httpx.AsyncBaseTransport | None:
            # Only what would reach the real service: an explicit base URL
            # (an emulator's, a proxy's) is the test's own choice.
            return _AnyCredential(emulator) if base_url == DEFAULT_BASE_URL else None

        set_mock(transport)
        return emulator

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        set_mock(None)
        emulator, self._emulator = self._emulator, None
        if self._given is None and emulator is not None:
            emulator.close()

    async def __aenter__(self) -> Emulator:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with MockAPI(self._given):
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with MockAPI(self._given):
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]


def mock_api(emulator: Emulator | None = None) -> MockAPI:
    """Every client made inside talks to an in-process emulator.

    ::

        with mock_api() as emulator:
            async with AsyncAnalytics.from_env() as api:   # any credentials
                stats = await api.stats()
            assert [r.path for r in emulator.requests][-1].endswith("/stats")

    Applies to every :class:`~memcachier_async.AsyncAnalytics` (and
    ``fan_out``/``watch``) made while it is on without its own
    ``transport``, ``http_client`` or ``base_url`` (other than the default
    one). Unknown credentials become credentials of the emulator's first
    cache. ``emulator`` is the one to use (default: a fresh one with three
    servers, some traffic and a history sample, closed at the end). Also a
    decorator (``@mock_api()``) of sync and async functions, and the
    ``memcachier_mock_api`` pytest fixture.
    """
    return MockAPI(emulator)
