"""Retries as an httpx transport: the I/O shell around the retry rules of ``core``.

:class:`RetryTransport` wraps any ``httpx.AsyncBaseTransport``; the client
above it never knows a call was retried. What is retried, how long to wait,
the deadline and the budget are decided by :class:`~.core.RetryCall` (no
I/O); this module sends, reads, sleeps and tells it what happened, turning
httpx's responses and exceptions into :class:`~.core.Outcome` values with
:func:`outcome_of`.

A call is idempotent when its request says so (the ``memcachier_idempotent``
extension set from the endpoint table); a request without it is judged by
its method (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT and DELETE).

Every response this transport returns is read (a failure while reading
the body is an attempt's failure like any other), decoded and bounded as it
arrives (``body.py``: a success body past the request's
``memcachier_max_response_size``, 64 MiB by default, raises
:class:`~memcachier_async.ResponseTooLargeError`, never retried; of an error
body only the first 16 KiB are read), and carries
``extensions["memcachier_attempts"]`` and ``extensions["memcachier_retries"]``;
every httpx exception it raises carries the same attempts in
:func:`attempts_of`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx

from memcachier_async._errors import Attempt, ResponseTooLargeError

from . import core
from . import hooks as _hooks
from . import otel as _otel
from .body import decoded_headers, network_abort, read_body, read_body_in_memory
from .core import GiveUp, Outcome, RetryBudget, RetryCall, RetryEvent, RetryPolicy
from .rules import (
    ENDPOINT_EXTENSION,
    IDEMPOTENT_EXTENSION,
    PROGRESS_EXTENSION,
    Progress,
    parse_retry_after,
)
from .shards import ShardedTransport

__all__ = [
    "ATTEMPTS_EXTENSION",
    "BODY_EXTENSION",
    "POLICY_EXTENSION",
    "RETRIES_EXTENSION",
    "DeadlineExceeded",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "RetryTransport",
    "attempts_of",
    "certificate_failure",
    "is_idempotent",
    "outcome_of",
    "public_url",
    "set_instant_retries",
]

logger = logging.getLogger("memcachier_async")

#: Response extension: the :class:`Attempt` tuple of the call.
ATTEMPTS_EXTENSION = "memcachier_attempts"
#: Response extension: how many retries the call took (``0``: first try).
RETRIES_EXTENSION = "memcachier_retries"
#: Response extension: the body, read (decoded, bounded) as the stream holds it,
#: for a reader that wants the bytes without streaming them again.
BODY_EXTENSION = "memcachier_body"
#: Request extension: a :class:`RetryPolicy` for this call instead of the transport's
#: (``AsyncAnalytics.with_options(retry=..., timeout=...)``).
POLICY_EXTENSION = "memcachier_retry_policy"
# Set on a raised httpx exception; read with attempts_of().
_ATTEMPTS_ATTR = "memcachier_attempts"

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# The request certainly never reached the server: safe to send again, always.
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    # The proxy refused the CONNECT: the tunnel to the server never opened.
    httpx.ProxyError,
)
# The request may have reached the server: safe to send again only when
# repeating the call cannot do harm.
_MAYBE_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


class DeadlineExceeded(httpx.TimeoutException):
    """The call's deadline passed during an attempt (a slow body, say).

    httpx's own timeouts apply per network operation; this one bounds the
    whole attempt, so a server that drips bytes cannot stretch a call.
    """


# --- the rules (pure) -----------------------------------------------------


def is_idempotent(request: httpx.Request) -> bool:
    """Whether sending ``request`` twice is as safe as sending it once: its
    ``memcachier_idempotent`` extension, else its method (RFC 9110)."""
    flag = request.extensions.get(IDEMPOTENT_EXTENSION)
    if isinstance(flag, bool):
        return flag
    return request.method.upper() in _IDEMPOTENT_METHODS


def outcome_of(result: httpx.Response | BaseException) -> Outcome:
    """What an attempt's response or exception means to the retry rules."""
    if isinstance(result, httpx.Response):
        status = result.status_code
        if status < 429:
            # A success or a client error is never retried: no Retry-After to read.
            return Outcome.response(status)
        return Outcome.response(status, parse_retry_after(result.headers.get("retry-after")))
    return Outcome(
        failure=type(result).__name__,
        # A certificate that failed verification fails the same way next time.
        transient=isinstance(result, (*_NOT_SENT, *_MAYBE_SENT))
        and not certificate_failure(result),
        # Only a failure before a byte was sent (connecting, waiting for a
        # pooled connection) says "certainly not".
        reached_server=not isinstance(result, _NOT_SENT),
        timeout=isinstance(result, httpx.TimeoutException),
    )


def certificate_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a TLS certificate that failed verification."""
    seen: BaseException | None = exc
    for _ in range(16):  # the chains httpx, httpcore and aiohttp build are short
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or isinstance(
            getattr(seen, "certificate_error", None), ssl.SSLCertVerificationError
        ):  # aiohttp keeps it on ClientConnectorCertificateError
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _record(exc: BaseException, attempts: tuple[Attempt, ...]) -> None:
    """Put the call's attempts on an exception it raises (read by :func:`attempts_of`)."""
    if isinstance(exc, ResponseTooLargeError):
        exc.attempts = attempts
    else:
        setattr(exc, _ATTEMPTS_ATTR, attempts)


def attempts_of(obj: httpx.Response | BaseException) -> tuple[Attempt, ...]:
    """The attempts recorded by :class:`RetryTransport` on a response or error.

    ``()`` when ``obj`` did not come through a :class:`RetryTransport`.
    """
    if isinstance(obj, httpx.Response):
        found = obj.extensions.get(ATTEMPTS_EXTENSION, ())
    else:
        found = getattr(obj, _ATTEMPTS_ATTR, ())
    return tuple(found) if isinstance(found, tuple) else ()


def public_url(url: httpx.URL) -> str:
    # Logs and hooks never see a password, even one put in the URL.
    if not url.userinfo and not url.query:
        return str(url)  # nothing to take out: 1 µs, against 23 µs for copy_with
    return str(url.copy_with(username=None, password=None, query=None))


def _attempt_timeout(
    timeout: Mapping[str, float | None] | None, remaining: float | None
) -> dict[str, float | None]:
    # Each phase's timeout shrinks to the time the call has left, so the last
    # attempt cannot run past the deadline.
    phases = ("connect", "read", "write", "pool")
    given: Mapping[str, float | None] = timeout or {}
    if remaining is None:
        return {phase: given.get(phase) for phase in phases}
    shrunk: dict[str, float | None] = {}
    for phase in phases:
        value = given.get(phase)
        shrunk[phase] = remaining if value is None else min(value, remaining)
    return shrunk


# --- the test switch (memcachier_async.testing.instant_retries) -------------

# ``None``: policies as given. Otherwise the cap on attempts (``0``: the
# policy's own max_attempts) while a test runs with instant retries.
_instant: int | None = None


def set_instant_retries(max_attempts: int | None) -> int | None:
    """Turn instant retries on (``0`` keeps each policy's max_attempts, ``n``
    caps it) or off (``None``); returns the previous setting, to restore it.

    Meant for tests, through :func:`memcachier_async.testing.instant_retries`.
    """
    global _instant
    previous, _instant = _instant, max_attempts
    return previous


def _for_tests(policy: RetryPolicy) -> RetryPolicy:
    # Every wait zero, Retry-After included; no budget, so how many retries a
    # call gets depends on max_attempts alone, not on the tests before it.
    cap = _instant
    if cap is None:
        return policy
    attempts = min(policy.max_attempts, cap) if cap else policy.max_attempts
    return attrs.evolve(
        policy,
        max_attempts=attempts,
        initial_backoff=0.0,
        max_backoff=0.0,
        retry_after_cap=0.0,
        budget=None,
    )


def _policy_for(extensions: Mapping[str, Any], default: RetryPolicy) -> RetryPolicy:
    """The policy of one call: the request's own (``with_options``) or ``default``,
    with waits off while a test runs with instant retries."""
    policy = extensions.get(POLICY_EXTENSION)
    if not isinstance(policy, RetryPolicy):
        policy = default
    if _instant is not None:
        policy = _for_tests(policy)
    return policy


class RetryTransport(httpx.AsyncBaseTransport):
    """An httpx transport that retries another one according to a policy.

    ::

        transport = RetryTransport(httpx.AsyncHTTPTransport(), RetryPolicy())
        async with httpx.AsyncClient(transport=transport) as client: ...

    Responses come back read and decoded (so a failure while reading a body
    can be retried), without ``Content-Encoding``; a response whose status
    was retried until attempts, time or budget ran out is returned as is,
    and the last exception is raised otherwise.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy | None = None) -> None:
        if not isinstance(inner, httpx.AsyncBaseTransport):
            raise TypeError(
                f"RetryTransport wraps an httpx.AsyncBaseTransport, not {type(inner).__name__}"
            )
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise TypeError(f"policy must be a RetryPolicy, not {type(policy).__name__}")
        self._inner = inner
        self._policy = RetryPolicy() if policy is None else policy
        # httpx's own transport hands each request's ``trace`` extension to
        # httpcore, which calls it as the request goes out: until then a
        # request whose deadline passes was not sent (see _progress_trace).
        self._traced = isinstance(inner, (httpx.AsyncHTTPTransport, ShardedTransport))

    @property
    def inner(self) -> httpx.AsyncBaseTransport:
        """The wrapped transport."""
        return self._inner

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        policy = _policy_for(request.extensions, self._policy)
        tracer = _otel.tracer()
        if tracer is not None:
            # One span around the attempts: a retried call is one trace.
            with _otel.call_span(tracer, request.method, _endpoint_name(request.extensions)):
                return await self._call(request, policy)
        return await self._call(request, policy)

    async def _call(self, request: httpx.Request, policy: RetryPolicy) -> httpx.Response:
        clock = policy.clock
        call = RetryCall(policy, idempotent=is_idempotent(request), now=clock())
        if policy.max_attempts > 1:
            # A streamed request body can be sent once; buffered, it can be sent again.
            await request.aread()
        attempts: list[Attempt] = []
        while True:
            result = await _attempt(self._inner, request, call, attempts, self._traced)
            decision = call.attempt_done(outcome_of(result), now=clock())
            if isinstance(decision, GiveUp):
                return _finish(result, attempts, decision)
            _announce(
                call,
                request.method,
                public_url(request.url),
                _endpoint_name(request.extensions),
                decision,
                elapsed=clock() - call.start,
            )
            await policy.sleep(decision.wait)
            if (refused := call.resend(now=clock())) is not None:
                return _finish(result, attempts, refused)


async def _attempt(
    inner: httpx.AsyncBaseTransport,
    request: httpx.Request,
    call: RetryCall,
    attempts: list[Attempt],
    traced: bool = False,
) -> httpx.Response | httpx.TransportError:
    """Send once and read the whole body; the response or the failure, recorded."""
    clock = call.policy.clock
    try:
        response = await _send_once(
            inner, request, call.remaining(clock()), call.policy, call.attempts - 1, traced
        )
    except httpx.TransportError as exc:
        attempts.append(Attempt(call.attempts, type(exc).__name__, clock() - call.start))
        return exc
    except OSError as exc:
        # A socket or TLS failure the engine let through unmapped (httpcore
        # passes on a TLS 1.3 alert that arrives with the answer, such as a
        # refused client certificate): after sending, so it may have been sent.
        error = httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request)
        error.__cause__ = exc
        attempts.append(Attempt(call.attempts, type(error).__name__, clock() - call.start))
        return error
    except (ResponseTooLargeError, httpx.DecodingError) as exc:
        # Never retried: the next answer would be as large (or as broken).
        attempts.append(Attempt(call.attempts, type(exc).__name__, clock() - call.start))
        _record(exc, tuple(attempts))
        raise
    attempts.append(Attempt(call.attempts, response.status_code, clock() - call.start))
    return response


async def _send_once(
    inner: httpx.AsyncBaseTransport,
    request: httpx.Request,
    remaining: float | None,
    policy: RetryPolicy,
    resends: int = 0,
    traced: bool = False,
) -> httpx.Response:
    timeout = _attempt_timeout(request.extensions.get("timeout"), remaining)
    progress = Progress()
    extensions = {**request.extensions, "timeout": timeout, PROGRESS_EXTENSION: progress}
    if resends and _otel.ENABLED:
        extensions = _otel.with_resend_count(extensions, resends)
    if traced and remaining is not None:
        progress.queued = True
        extensions["trace"] = _progress_trace(progress, extensions.get("trace"))
    # The attempt's extensions on the request itself, for the time of the
    # attempt (a copy of the request per attempt cost more than the rest of
    # this layer).
    original, request.extensions = request.extensions, extensions
    try:
        if remaining is None:
            # No deadline: no cancel scope to pay for.
            return await _read_response(inner, request)
        with anyio.move_on_after(max(remaining, 0.0)):
            return await _read_response(inner, request)
    finally:
        request.extensions = original
    raise _deadline_error(policy, queued=progress.queued, request=request)


_TraceHook = Callable[[str, Mapping[str, Any]], Awaitable[None]]


def _progress_trace(progress: Progress, previous: _TraceHook | None) -> _TraceHook:
    """httpcore's ``trace`` callback that marks ``progress`` sent when the
    request's head starts to go out (HTTP/1.1 or HTTP/2), then calls ``previous``."""

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        if progress.queued and event.endswith(".send_request_headers.started"):
            progress.queued = False
        if previous is not None:
            await previous(event, info)

    return trace


async def _read_response(
    inner: httpx.AsyncBaseTransport, attempt_request: httpx.Request
) -> httpx.Response:
    """One attempt's response, its body read (decoded, bounded) and its connection back."""
    response = await inner.handle_async_request(attempt_request)
    progress = attempt_request.extensions.get(PROGRESS_EXTENSION)
    if isinstance(progress, Progress):
        progress.queued = False  # an answer came: the request went out
    headers = response.headers
    encoding = length = None
    for name, value in headers.raw:  # one pass, not one per header asked for
        lowered = name.lower()
        if lowered == b"content-encoding":
            encoding = (
                value.decode("latin-1")
                if encoding is None
                else f"{encoding}, {value.decode('latin-1')}"
            )
        elif lowered == b"content-length":
            length = value.decode("latin-1")
    if isinstance(response.stream, httpx.ByteStream):
        # Already in memory (the SDK's own transports read the body,
        # decoded and bounded, and return the connection): nothing to
        # hand back, no cancel scope to pay for.
        content = b"".join(response.stream)
        body, _ = await read_body_in_memory(
            content,
            status_code=response.status_code,
            content_encoding=encoding,
            request=attempt_request,
        )
        if body is content and encoding is None and "network_stream" not in response.extensions:
            # Nothing to change: the response is passed on as it is.
            response.extensions[BODY_EXTENSION] = body
            return response
    else:
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("RetryTransport needs an async transport to wrap")
        try:
            body, _ = await read_body(
                stream,
                status_code=response.status_code,
                content_encoding=encoding,
                content_length=length,
                request=attempt_request,
                abort=network_abort(response.extensions),
            )
        finally:
            # Shielded: a cancelled call must still hand its connection back.
            with anyio.CancelScope(shield=True):
                await stream.aclose()
        if encoding is None:
            # The same response, its body now in memory and its connection back.
            response.stream = httpx.ByteStream(body)
            response.extensions.pop("network_stream", None)
            response.extensions[BODY_EXTENSION] = body
            return response
    return httpx.Response(
        response.status_code,
        headers=decoded_headers(headers.raw, encoding is not None),
        stream=httpx.ByteStream(body),
        extensions={
            # The connection went back to the pool with the body read.
            **{k: v for k, v in response.extensions.items() if k != "network_stream"},
            BODY_EXTENSION: body,
        },
    )


def _deadline_error(
    policy: RetryPolicy, *, queued: bool | None, request: httpx.Request | None
) -> httpx.TimeoutException:
    """The error of an attempt ended by the call's deadline."""
    if queued:
        # It never left the pool's queue: nothing was sent.
        return httpx.PoolTimeout(
            f"the call's deadline of {policy.deadline} s passed while the request "
            "waited for a connection",
            request=request,
        )
    return DeadlineExceeded(f"the call's deadline of {policy.deadline} s passed", request=request)


def _announce(
    call: RetryCall,
    method: str,
    url: str,
    endpoint: str | None,
    retry: core.Retry,
    *,
    elapsed: float,
) -> None:
    """Log the retry about to happen and tell ``on_retry`` (``url`` without
    user info or query)."""
    event = RetryEvent(
        attempt=call.attempts,
        max_attempts=call.policy.max_attempts,
        reason=retry.reason,
        wait=retry.wait,
        elapsed=elapsed,
        retry_after=retry.retry_after,
        method=method,
        url=url,
        endpoint=endpoint,
        idempotent=call.idempotent,
    )
    # INFO, not WARNING: a retry is the layer doing its job, and an app
    # without logging configured would print every one on stderr.
    logger.info(
        "retrying %s %s: attempt %d of %d failed (%s); waiting %.3f s",
        event.method,
        event.url,
        event.attempt,
        event.max_attempts,
        event.reason,
        event.wait,
    )
    if call.policy.on_retry is not None:
        call.policy.on_retry(event)
    if _hooks.retry_hooks:
        _hooks.emit_retry(event)


def _finish(
    result: httpx.Response | httpx.TransportError, attempts: list[Attempt], why: GiveUp
) -> httpx.Response:
    """Return the final response, or raise the final exception, with the attempts."""
    if why.why == "budget":
        logger.debug("retry budget exhausted: giving up after %d attempts", len(attempts))
    recorded = tuple(attempts)
    if isinstance(result, BaseException):
        _record(result, recorded)
        raise result
    result.extensions[ATTEMPTS_EXTENSION] = recorded
    result.extensions[RETRIES_EXTENSION] = len(recorded) - 1
    return result


def _endpoint_name(extensions: Mapping[str, Any]) -> str | None:
    name = extensions.get(ENDPOINT_EXTENSION)
    return name if isinstance(name, str) else None
