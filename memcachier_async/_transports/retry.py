"""Retries as an httpx transport: deadlines, jitter, ``Retry-After``, a budget.

:class:`RetryTransport` wraps any ``httpx.AsyncBaseTransport``; the client
above it never knows a call was retried. Which failures are retried is
decided by two pure functions, :func:`retry_reason` and :func:`reached_server`,
so the rules can be read (and tested) apart from the I/O::

    outcome                                        idempotent  not idempotent
    connect error / connect timeout / pool timeout   retry        retry
    429, 503 (waiting Retry-After, capped)           retry        retry
    500, 502, 504                                    retry        no
    read/write timeout, reset, protocol error,       retry        no: OutcomeUnknownError
      failure while reading the body
    anything else (2xx, 4xx, cancellation)           no           no

A call is idempotent when its request says so (the ``memcachier_idempotent``
extension set from the endpoint table); a request without it is judged by
its method (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT and DELETE).

Every response this transport returns is fully read (a failure while
reading the body is an attempt's failure like any other) and carries
``extensions["memcachier_attempts"]`` and ``extensions["memcachier_retries"]``;
every httpx exception it raises carries the same attempts in
:func:`attempts_of`.
"""

from __future__ import annotations

import logging
import math
import random as _random
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx

from memcachier_async._errors import Attempt

from .rules import ENDPOINT_EXTENSION, IDEMPOTENT_EXTENSION, backoff_ceiling, parse_retry_after

__all__ = [
    "ATTEMPTS_EXTENSION",
    "RETRIES_EXTENSION",
    "DeadlineExceeded",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "RetryTransport",
    "attempts_of",
    "is_idempotent",
    "reached_server",
    "retry_reason",
]

logger = logging.getLogger("memcachier_async")

#: Response extension: the :class:`Attempt` tuple of the call.
ATTEMPTS_EXTENSION = "memcachier_attempts"
#: Response extension: how many retries the call took (``0``: first try).
RETRIES_EXTENSION = "memcachier_retries"
# Set on a raised httpx exception; read with attempts_of().
_ATTEMPTS_ATTR = "memcachier_attempts"

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# The request certainly never reached the server: safe to send again, always.
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
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
_ALWAYS_STATUSES = frozenset({429, 503})
_IDEMPOTENT_STATUSES = frozenset({500, 502, 504})


class DeadlineExceeded(httpx.TimeoutException):
    """The call's deadline passed during an attempt (a slow body, say).

    httpx's own timeouts apply per network operation; this one bounds the
    whole attempt, so a server that drips bytes cannot stretch a call.
    """


# --- the rules (pure) -----------------------------------------------------


def is_idempotent(request: httpx.Request) -> bool:
    """Whether sending ``request`` twice is as safe as sending it once."""
    flag = request.extensions.get(IDEMPOTENT_EXTENSION)
    if isinstance(flag, bool):
        return flag
    return request.method.upper() in _IDEMPOTENT_METHODS


def reached_server(exc: BaseException) -> bool:
    """Whether a request that failed with ``exc`` may have reached the server.

    Only the failures that happen before a byte is sent (connecting, waiting
    for a pooled connection) say "certainly not".
    """
    return not isinstance(exc, _NOT_SENT)


def retry_reason(outcome: httpx.Response | BaseException, *, idempotent: bool) -> str | None:
    """Why this outcome of an attempt may be retried, or ``None`` if it may not.

    The reason is what a log line shows: ``"503"`` or ``"ConnectTimeout"``.
    """
    if isinstance(outcome, httpx.Response):
        status = outcome.status_code
        if status in _ALWAYS_STATUSES or (idempotent and status in _IDEMPOTENT_STATUSES):
            return str(status)
        return None
    if isinstance(outcome, _NOT_SENT) or (idempotent and isinstance(outcome, _MAYBE_SENT)):
        return type(outcome).__name__
    return None


def attempts_of(obj: httpx.Response | BaseException) -> tuple[Attempt, ...]:
    """The attempts recorded by :class:`RetryTransport` on a response or error.

    ``()`` when ``obj`` did not come through a :class:`RetryTransport`.
    """
    if isinstance(obj, httpx.Response):
        found = obj.extensions.get(ATTEMPTS_EXTENSION, ())
    else:
        found = getattr(obj, _ATTEMPTS_ATTR, ())
    return tuple(found) if isinstance(found, tuple) else ()


def _full_jitter(policy: RetryPolicy, retry_number: int, rand: float) -> float:
    # Full jitter (a uniform draw below an exponential ceiling) spreads a
    # fleet's retries out instead of letting them arrive in waves.
    return rand * backoff_ceiling(policy.initial_backoff, policy.max_backoff, retry_number)


def _public_url(url: httpx.URL) -> str:
    # Logs and hooks never see a password, even one put in the URL.
    return str(url.copy_with(username=None, password=None, query=None))


# --- configuration ----------------------------------------------------------


@attrs.define(eq=False)
class RetryBudget:
    """A token bucket shared by every call of a client, so outages stay cheap.

    The numbers are those of the AWS SDKs' "standard" retry mode: the bucket
    starts full at ``capacity`` (500) tokens; a retry takes ``retry_cost``
    (5), or ``timeout_retry_cost`` (10) after a timeout; when no tokens are
    left, failures are no longer retried. A call that succeeds at once puts
    ``success_refund`` (1) token back; one that succeeds after retries puts
    back what its last retry took. So a total outage costs at most
    ``capacity / retry_cost`` (100) retries, and a healthy service refills
    the bucket as calls succeed.

    Safe to share between clients, tasks and threads.
    """

    capacity: int = attrs.field(default=500, validator=attrs.validators.ge(0))
    retry_cost: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    timeout_retry_cost: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    success_refund: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    _tokens: int = attrs.field(init=False, repr=False)
    _lock: threading.Lock = attrs.field(init=False, repr=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self._tokens = self.capacity

    @property
    def available(self) -> int:
        """Tokens left now."""
        return self._tokens

    def try_acquire(self, cost: int) -> bool:
        """Take ``cost`` tokens for one retry; ``False`` (nothing taken) if too few."""
        with self._lock:
            if cost > self._tokens:
                return False
            self._tokens -= cost
            return True

    def release(self, amount: int) -> None:
        """Give back ``amount`` tokens, never filling past ``capacity``."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + amount)


@attrs.frozen
class RetryEvent:
    """One retry about to happen: what failed, and how long it will wait.

    Passed to :attr:`RetryPolicy.on_retry`, and logged. ``attempt`` is the
    number of the attempt that failed (1 for the first); ``reason`` is the
    status (``"503"``) or the exception's name (``"ReadTimeout"``);
    ``elapsed`` and ``wait`` are seconds. No credentials: the URL is the
    request's without user info or query.
    """

    attempt: int
    max_attempts: int
    reason: str
    wait: float
    elapsed: float
    retry_after: float | None
    method: str
    url: str
    endpoint: str | None
    idempotent: bool


def _positive_or_none(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, got {value!r}")


def _budget_default() -> RetryBudget:
    return RetryBudget()


@attrs.frozen
class RetryPolicy:
    """How calls are retried: attempts, backoff, deadline, budget.

    ``max_attempts`` counts the first attempt (``1`` never retries).
    Waits are full jitter: uniform in ``[0, min(max_backoff,
    initial_backoff * 2**(n-1))]`` before retry ``n``, unless the server
    sent ``Retry-After``, which is honoured up to ``retry_after_cap``.
    ``deadline`` bounds the whole call, every attempt and wait included
    (``None``: no bound). ``budget`` is shared by every call made with this
    policy (``None``: unlimited). ``on_retry`` is called with a
    :class:`RetryEvent` before each wait.

    ``sleep``, ``clock`` and ``random`` exist for tests: an async sleep, a
    monotonic clock in seconds and a draw from ``[0, 1)``.
    """

    max_attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    initial_backoff: float = attrs.field(default=0.25, validator=attrs.validators.ge(0))
    max_backoff: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    deadline: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    retry_after_cap: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    budget: RetryBudget | None = attrs.field(factory=_budget_default)
    on_retry: Callable[[RetryEvent], object] | None = attrs.field(default=None, eq=False)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(
        default=anyio.sleep, eq=False, repr=False
    )
    clock: Callable[[], float] = attrs.field(default=anyio.current_time, eq=False, repr=False)
    random: Callable[[], float] = attrs.field(default=_random.random, eq=False, repr=False)

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries (the deadline still bounds each call)."""
        return cls(max_attempts=1, budget=None)


# --- the transport ----------------------------------------------------------


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


class RetryTransport(httpx.AsyncBaseTransport):
    """An httpx transport that retries another one according to a policy.

    ::

        transport = RetryTransport(httpx.AsyncHTTPTransport(), RetryPolicy())
        async with httpx.AsyncClient(transport=transport) as client: ...

    Responses come back fully read (so a failure while reading a body can
    be retried); a response whose status was retried until attempts, time or
    budget ran out is returned as is, and the last exception is raised
    otherwise.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy | None = None) -> None:
        self._inner = inner
        self._policy = RetryPolicy() if policy is None else policy

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
        return await _Call(self._inner, self._policy, request).run()


class _Call:
    """The state of one call through :class:`RetryTransport`."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy, request: httpx.Request
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.request = request
        self.idempotent = is_idempotent(request)
        self.attempts: list[Attempt] = []
        self.start = 0.0
        # Tokens the last retry took, returned to the budget on success.
        self.held = 0

    def elapsed(self) -> float:
        return self.policy.clock() - self.start

    def remaining(self) -> float | None:
        if self.policy.deadline is None:
            return None
        return self.policy.deadline - self.elapsed()

    async def run(self) -> httpx.Response:
        policy = self.policy
        self.start = policy.clock()
        if policy.max_attempts > 1:
            # A streamed request body can be sent once; buffered, it can be sent again.
            await self.request.aread()
        number = 0
        while True:
            number += 1
            outcome = await self.attempt(number)
            reason = retry_reason(outcome, idempotent=self.idempotent)
            if reason is None:
                return self.finish(outcome)
            wait = self.wait_before_retry(number, outcome, reason)
            if wait is None:
                return self.finish(outcome)
            await policy.sleep(wait)
            remaining = self.remaining()
            if remaining is not None and remaining <= 0:
                return self.finish(outcome)
            # Charged only now, when the retry is really sent: a call
            # cancelled while it waits has cost nothing.
            if not self.charge(outcome, reason):
                return self.finish(outcome)

    async def attempt(self, number: int) -> httpx.Response | httpx.TransportError:
        """Send once and read the whole body; the response or the failure."""
        remaining = self.remaining()
        try:
            response = await self.send(remaining)
        except httpx.TransportError as exc:
            self.attempts.append(Attempt(number, type(exc).__name__, self.elapsed()))
            return exc
        self.attempts.append(Attempt(number, response.status_code, self.elapsed()))
        return response

    async def send(self, remaining: float | None) -> httpx.Response:
        request = self.request
        timeout = _attempt_timeout(request.extensions.get("timeout"), remaining)
        attempt_request = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            stream=request.stream,
            extensions={**request.extensions, "timeout": timeout},
        )
        limit = math.inf if remaining is None else max(remaining, 0.0)
        with anyio.move_on_after(limit):
            response = await self.inner.handle_async_request(attempt_request)
            if isinstance(response.stream, httpx.ByteStream):
                # Already in memory (the SDK's own transports read the body
                # and return the connection): nothing to hand back, no
                # cancel scope to pay for.
                body = b"".join(response.stream)
            else:
                try:
                    body = await _read_raw(response)
                finally:
                    # Shielded: a cancelled call must still hand its connection back.
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(body),
                extensions={
                    # The connection went back to the pool with the body read.
                    k: v
                    for k, v in response.extensions.items()
                    if k != "network_stream"
                },
            )
        raise DeadlineExceeded(
            f"the call's deadline of {self.policy.deadline} s passed", request=request
        )

    def wait_before_retry(
        self, number: int, outcome: httpx.Response | httpx.TransportError, reason: str
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up now."""
        policy = self.policy
        if number >= policy.max_attempts:
            return None
        retry_after = None
        if isinstance(outcome, httpx.Response):
            retry_after = parse_retry_after(outcome.headers.get("retry-after"))
        if retry_after is not None:
            wait = min(retry_after, policy.retry_after_cap)
        else:
            wait = _full_jitter(policy, number, policy.random())
        remaining = self.remaining()
        if remaining is not None and wait >= remaining:
            # Waking after the deadline would only make the caller wait for
            # the same error; it gets the error (and the Retry-After) now.
            return None
        budget = policy.budget
        if budget is not None and budget.available < self.cost(outcome, budget):
            logger.debug("retry budget exhausted: not retrying %s", reason)
            return None
        self.announce(number, reason, wait, retry_after)
        return wait

    @staticmethod
    def cost(outcome: httpx.Response | httpx.TransportError, budget: RetryBudget) -> int:
        if isinstance(outcome, httpx.TimeoutException):
            return budget.timeout_retry_cost
        return budget.retry_cost

    def charge(self, outcome: httpx.Response | httpx.TransportError, reason: str) -> bool:
        """Take the retry's tokens from the budget; ``False`` if they ran out meanwhile."""
        budget = self.policy.budget
        if budget is None:
            return True
        cost = self.cost(outcome, budget)
        if not budget.try_acquire(cost):
            logger.debug("retry budget exhausted: not retrying %s", reason)
            return False
        self.held = cost
        return True

    def announce(self, number: int, reason: str, wait: float, retry_after: float | None) -> None:
        request = self.request
        event = RetryEvent(
            attempt=number,
            max_attempts=self.policy.max_attempts,
            reason=reason,
            wait=wait,
            elapsed=self.elapsed(),
            retry_after=retry_after,
            method=request.method,
            url=_public_url(request.url),
            endpoint=_endpoint_name(request.extensions),
            idempotent=self.idempotent,
        )
        logger.warning(
            "retrying %s %s: attempt %d of %d failed (%s); waiting %.3f s",
            event.method,
            event.url,
            event.attempt,
            event.max_attempts,
            event.reason,
            event.wait,
        )
        if self.policy.on_retry is not None:
            self.policy.on_retry(event)

    def finish(self, outcome: httpx.Response | httpx.TransportError) -> httpx.Response:
        """Return the final response, or raise the final exception, with the attempts."""
        attempts = tuple(self.attempts)
        if isinstance(outcome, BaseException):
            setattr(outcome, _ATTEMPTS_ATTR, attempts)
            raise outcome
        budget = self.policy.budget
        if budget is not None and outcome.status_code < 500 and outcome.status_code != 429:
            # The service answers again: refill the bucket (AWS "standard").
            budget.release(self.held or budget.success_refund)
        outcome.extensions[ATTEMPTS_EXTENSION] = attempts
        outcome.extensions[RETRIES_EXTENSION] = len(attempts) - 1
        return outcome


async def _read_raw(response: httpx.Response) -> bytes:
    # The raw (still encoded) bytes: the client above decodes them once.
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("RetryTransport needs an async transport to wrap")
    return b"".join([chunk async for chunk in stream])


def _endpoint_name(extensions: Mapping[str, Any]) -> str | None:
    name = extensions.get(ENDPOINT_EXTENSION)
    return name if isinstance(name, str) else None
