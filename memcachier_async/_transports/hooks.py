"""Process-wide instrumentation hooks: ``on_request`` after a call, ``on_retry`` before a retry.

Kept at the bottom of the SDK (the retry layer calls ``on_retry``, the
client ``on_request``), so both can reach them without importing upwards.
Hooks are plain callables; the tuples are replaced, never changed in
place, so a call in flight reads a consistent set without a lock. A hook
that raises is logged and ignored: instrumentation never fails a call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import attrs

__all__ = ["RequestEvent", "add_hooks", "emit_request", "emit_retry", "remove_hooks"]

logger = logging.getLogger("memcachier_async")


@attrs.frozen
class RequestEvent:
    """One call of the API, finished: passed to every ``on_request`` hook.

    ``endpoint`` is the call's name (``"stats"``; ``"request"`` for
    :meth:`~memcachier_async.AsyncAnalytics.request`); ``outcome`` is
    ``"ok"`` or the name of the exception raised (``"ServerError"``,
    ``"TransportError"``); ``status_code`` is the last HTTP status, when
    one came; ``duration`` is seconds, every attempt and wait included;
    ``attempts`` counts the requests sent. ``path`` is the endpoint's path
    template (``"/{cache_id}/stats"``): no ids, names or credentials.
    """

    endpoint: str
    method: str
    path: str
    outcome: str
    status_code: int | None
    duration: float
    attempts: int


OnRequest = Callable[[RequestEvent], object]
OnRetry = Callable[[object], object]  # called with a RetryEvent

_lock = threading.Lock()
request_hooks: tuple[OnRequest, ...] = ()
retry_hooks: tuple[OnRetry, ...] = ()


def add_hooks(*, on_request: OnRequest | None = None, on_retry: OnRetry | None = None) -> None:
    """Call ``on_request`` after every call and ``on_retry`` before every retry, of every client.

    ``on_request`` gets a :class:`RequestEvent`; ``on_retry`` a
    :class:`~memcachier_async.RetryEvent`. Remove them with
    :func:`remove_hooks`.
    """
    global request_hooks, retry_hooks
    with _lock:
        if on_request is not None:
            request_hooks = (*request_hooks, on_request)
        if on_retry is not None:
            retry_hooks = (*retry_hooks, on_retry)


def remove_hooks(*, on_request: OnRequest | None = None, on_retry: OnRetry | None = None) -> None:
    """Stop calling hooks added with :func:`add_hooks` (unknown ones are ignored)."""
    global request_hooks, retry_hooks
    with _lock:
        if on_request is not None:
            request_hooks = tuple(h for h in request_hooks if h != on_request)
        if on_retry is not None:
            retry_hooks = tuple(h for h in retry_hooks if h != on_retry)


def _run(hooks: tuple[Callable[[object], object], ...], event: object) -> None:
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            logger.exception("memcachier_async hook %r failed; ignored", hook)


def emit_request(event: RequestEvent) -> None:
    _run(request_hooks, event)  # type: ignore[arg-type]


def emit_retry(event: object) -> None:
    _run(retry_hooks, event)
