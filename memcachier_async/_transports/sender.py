"""The SDK's own senders: one retry loop, one attempt per backend, no httpx model.

When a client is the SDK's own and still as the SDK made it, a call does
not go through ``httpx.AsyncClient.send`` and :class:`~.retry.RetryTransport`:
its sender runs :func:`run_call` (the same rules, :class:`~.core.RetryCall`,
the same logs, hooks and recorded attempts as the retry transport) around
one backend exchange per attempt:

- :class:`PoolSender` (the default backend) sends on the connections of
  the client's :class:`~.pool.PoolTransport`: spec → connection → bytes
  → body, one cancel scope per attempt;
- ``aiohttp.AiohttpSender`` on the client's aiohttp session.

Both answer with a :class:`~.retry.Reply` and the decoded body;
``tests/test_send_equivalence.py`` compares what they put on the wire with
what ``client.send`` puts there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import h11
import httpx

from memcachier_async._errors import Attempt, ResponseTooLargeError

from . import otel as _otel
from .body import Target
from .core import GiveUp, Outcome, RetryCall, RetryPolicy
from .direct import SharedParts
from .h1 import Answer, CallDeadline, origin_of, request_head
from .pool import PoolTransport, httpx_patched
from .retry import (
    Reply,
    RetryTransport,
    announce,
    deadline_error,
    endpoint_name,
    idempotent_call,
    outcome_of,
    policy_for,
    public_url,
    record_attempts,
)
from .rules import Progress, parse_retry_after

__all__ = ["OwnSender", "PoolSender", "run_call"]

R = TypeVar("R")
H = TypeVar("H", str, bytes)

_MAX_CACHED = 256
_EMPTY_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def run_call(
    policy: RetryPolicy,
    method: str,
    public: str,
    extensions: Mapping[str, Any],
    attempt: Callable[[float | None, Progress], Awaitable[R]],
    status_of: Callable[[R], tuple[int, str | None]],
    clock: Callable[[], float],
) -> tuple[R, tuple[Attempt, ...]]:
    """Attempts of one call until :class:`~.core.RetryCall` gives up.

    ``attempt(remaining, progress)`` sends once and reads the body (raising
    httpx's transport errors); ``status_of`` gives its status and
    ``Retry-After``. Returns the last answer with the attempts, or raises
    the last failure with them recorded (see ``retry.attempts_of``).
    """
    now = clock()
    call = RetryCall(policy, idempotent=idempotent_call(method, extensions), now=now)
    attempts: list[Attempt] = []
    while True:
        result: R | httpx.TransportError
        progress = Progress()
        try:
            result = await attempt(call.remaining(now), progress)
        except httpx.TransportError as exc:
            now = clock()
            if isinstance(exc, CallDeadline) or (
                isinstance(exc, httpx.TimeoutException)
                and (left := call.remaining(now)) is not None
                and left <= 0
            ):
                deadline = deadline_error(policy, queued=progress.queued, request=None)
                deadline.__cause__ = exc.__cause__
                exc = deadline
            result = exc
            attempts.append(Attempt(call.attempts, type(exc).__name__, now - call.start))
            outcome = outcome_of(exc)
        except (ResponseTooLargeError, httpx.DecodingError) as exc:
            # Never retried: the next answer would be as large (or as broken).
            attempts.append(Attempt(call.attempts, type(exc).__name__, clock() - call.start))
            record_attempts(exc, tuple(attempts))
            raise
        else:
            now = clock()
            status, retry_after = status_of(result)
            attempts.append(Attempt(call.attempts, status, now - call.start))
            outcome = Outcome.response(status, parse_retry_after(retry_after))
        decision = call.attempt_done(outcome, now=now)
        if isinstance(decision, GiveUp):
            break
        announce(
            call,
            method,
            public,
            endpoint_name(extensions),
            decision,
            elapsed=clock() - call.start,
        )
        await policy.sleep(decision.wait)
        now = clock()
        if call.resend(now=now) is not None:
            break
    recorded = tuple(attempts)
    if isinstance(result, BaseException):
        record_attempts(result, recorded)
        raise result
    return result, recorded


def body_headers(
    pairs: list[tuple[H, H]], method: str, content: bytes | None, length_name: H
) -> list[tuple[H, H]]:
    """``pairs`` (Host first) with the ``Content-Length`` ``httpx.Request`` adds,
    named ``length_name`` (``str`` or ``bytes`` pairs alike)."""
    if content is None and method not in _EMPTY_BODY_METHODS:
        return pairs
    merged = list(pairs)
    if content is not None:
        # Last, as httpx.Request adds it for a body.
        merged.append((length_name, _like(length_name, str(len(content)))))
    else:
        # Next to Host, as httpx.Request adds it for a body-less POST.
        merged.insert(1, (length_name, _like(length_name, "0")))
    return merged


def _like(kind: H, text: str) -> H:
    return text if isinstance(kind, str) else text.encode("ascii")


def set_in_place(pairs: list[tuple[str, str]], headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """``pairs`` with ``headers`` set as ``httpx.Headers.update`` sets them: a
    header already there is replaced where it stands (its later duplicates
    dropped), a new one goes at the end; names in lower case, as
    ``httpx.Headers.multi_items()`` gives them."""
    merged = list(pairs)
    for name, value in headers.items():
        key = name.lower()
        found = [i for i, (other, _) in enumerate(merged) if other == key]
        for i in reversed(found[1:]):
            del merged[i]
        if found:
            merged[found[0]] = (key, value)
        else:
            merged.append((key, value))
    return merged


def keep_cookies(
    parts: SharedParts, method: str, url: httpx.URL, raw: list[tuple[bytes, bytes]]
) -> None:
    """Store a response's ``Set-Cookie`` in the client's jar, as ``client.send`` does
    (a load balancer's sticky cookie is kept; the jar no longer empty, later
    calls go through the client)."""
    parts.client.cookies.extract_cookies(
        httpx.Response(200, headers=raw, request=httpx.Request(method, url))
    )


class _Route:
    """One URL, prepared once: where it goes, for logs (no user info, no
    query), as httpx parses it, and the header pairs of a bodiless request to
    it, as ``httpx.Request`` makes them (Host first)."""

    __slots__ = ("heads", "host", "origin", "pairs", "public", "target", "url")

    def __init__(self, url: httpx.URL, pairs: list[tuple[bytes, bytes]]) -> None:
        self.url = url
        self.public = public_url(url)
        self.origin = origin_of(url)
        self.target = url.raw_path
        self.host = (b"Host", url.netloc)
        self.pairs = [self.host, *pairs]
        #: The h11 head of a bodiless request per method, checked once.
        self.heads: dict[str, h11.Request] = {}


_DROPPED = frozenset({b"content-encoding", b"content-length"})


class OwnSender:
    """What the SDK's own senders share: each call's policy (the retry
    layer's, or the call's own) and its OpenTelemetry span, around the
    backend's :meth:`_call`."""

    _retry: RetryTransport

    async def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None,
        headers: Mapping[str, str],
        extensions: Mapping[str, Any],
    ) -> tuple[Reply, bytes]:
        """The answer and its decoded body, as the httpx stack would give them."""
        policy = policy_for(extensions, self._retry.policy)
        tracer = _otel.tracer()
        if tracer is not None:
            # One span around the attempts, as RetryTransport makes.
            with _otel.call_span(tracer, method, endpoint_name(extensions)):
                return await self._call(method, url, content, headers, extensions, policy)
        return await self._call(method, url, content, headers, extensions, policy)

    async def _call(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        extensions: Mapping[str, Any],
        policy: RetryPolicy,
    ) -> tuple[Reply, bytes]:
        raise NotImplementedError  # pragma: no cover - each backend's sender has one


class PoolSender(OwnSender):
    """Sends the calls of one set of credentials on the connections of the
    client's own :class:`~.pool.PoolTransport` (the default backend).

    What :class:`~.direct.DirectSender`, :class:`~.retry.RetryTransport` and
    the pool do for a call, with no httpx model on the way: the retry loop
    of :func:`run_call`; per attempt one connection from the pool, the
    request written from header pairs merged once, the body read once
    through the size limit; the call's deadline and the phases' timeouts on
    one cancel scope (see ``h1``).

    Used only while the client is as the SDK made it (``usable``) and the
    pool is not behind a proxy.
    """

    def __init__(
        self,
        parts: SharedParts,
        headers: Mapping[str, str],
        retry: RetryTransport,
        pool: PoolTransport,
    ) -> None:
        self._parts = parts
        self._retry = retry
        self._pool = pool
        self._raw = parts.raw_pairs(headers)
        self._routes: dict[str, _Route] = {}

    def usable(self) -> bool:
        """Whether the client is still exactly as the SDK made it (and httpx
        neither mocked nor instrumented: respx and OpenTelemetry's httpx
        instrumentation must see every request)."""
        return self._parts.usable() and not httpx_patched()

    def _route(self, url: str) -> _Route:
        found = self._routes.get(url)
        if found is None:
            if len(self._routes) >= _MAX_CACHED:
                self._routes.clear()
            found = self._routes[url] = _Route(self._parts.url(url), self._raw)
        return found

    async def _call(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        extensions: Mapping[str, Any],
        policy: RetryPolicy,
    ) -> tuple[Reply, bytes]:
        route = self._route(url)
        verb = method.encode("ascii")
        if headers or content is not None or method in _EMPTY_BODY_METHODS:
            head = request_head(
                verb, route.target, self._pairs_for(route, method, content, headers)
            )
        else:
            found = route.heads.get(method)
            if found is None:
                found = route.heads[method] = request_head(verb, route.target, route.pairs)
            head = found
        target = Target(method, route.public, extensions)
        pool = self._pool
        timeouts = self._parts.timeout_dict

        def attempt(remaining: float | None, progress: Progress) -> Awaitable[Answer]:
            return pool.exchange(
                head,
                route.origin,
                content,
                timeouts=timeouts,
                remaining=remaining,
                progress=progress,
                read_for=target,
            )

        answer, attempts = await run_call(
            policy, method, route.public, extensions, attempt, _status, policy.clock
        )
        return self._reply(method, route.url, answer, attempts), answer.body

    def _pairs_for(
        self, route: _Route, method: str, content: bytes | None, headers: Mapping[str, str]
    ) -> list[tuple[bytes, bytes]]:
        """The raw header pairs ``httpx.Request`` makes for this call."""
        raw = self._raw
        if headers:
            merged = httpx.Headers(raw)
            merged.update(headers)
            raw = merged.raw
        return body_headers([route.host, *raw], method, content, b"Content-Length")

    def _reply(
        self, method: str, url: httpx.URL, answer: Answer, attempts: tuple[Attempt, ...]
    ) -> Reply:
        raw = answer.headers
        names = {k.lower() for k, _ in raw}
        if b"content-encoding" in names:
            # Decoded by read_body: its headers go, as the httpx stack drops them.
            raw = [(k, v) for k, v in raw if k.lower() not in _DROPPED]
        if b"set-cookie" in names:
            keep_cookies(self._parts, method, url, raw)
        status = answer.status
        reason = answer.reason.decode("latin-1") or httpx.codes.get_reason_phrase(status)
        return Reply(status, reason, httpx.Headers(raw), attempts)


def _status(answer: Answer) -> tuple[int, str | None]:
    retry_after = answer.header(b"retry-after")
    return answer.status, None if retry_after is None else retry_after.decode("latin-1")
