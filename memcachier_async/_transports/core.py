"""The retry rules as a state machine without I/O: fed outcomes, it returns decisions.

One call's retries go through :class:`RetryCall`::

    call = RetryCall(policy, idempotent=..., now=clock())
    while True:
        outcome = <send once, bounded by call.remaining(clock())>
        decision = call.attempt_done(outcome, now=clock())
        if isinstance(decision, GiveUp): <return or raise the last outcome>
        <wait decision.wait seconds>
        if call.resend(now=clock()) is not None: <return or raise the last outcome>

The rules it holds (``RetryTransport`` is its I/O shell):

    outcome                                        idempotent  not idempotent
    failure before a byte was sent (connect,         retry        retry
      pool timeout)
    429, 503 (waiting Retry-After, capped)           retry        retry
    500, 502, 504                                    retry        no
    failure after the request may have reached       retry        no (outcome unknown)
      the server (read/write timeout, reset, ...)
    anything else (2xx, 4xx, a failure that is       no           no
      not transient)

- at most ``max_attempts`` attempts;
- a wait is full jitter under a capped exponential ceiling, or the server's
  ``Retry-After`` up to ``retry_after_cap``;
- nothing starts, and no wait ends, after the whole call's ``deadline``;
- the budget is charged when a retry is sent (:meth:`RetryCall.resend`),
  not when it is decided: a call cancelled while it waits costs nothing.

Imports nothing from httpx or an event loop: the property tests drive it
with made-up outcomes and a made-up clock.
"""

from __future__ import annotations

import math
import random as _random
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
import attrs

from .rules import backoff_ceiling

__all__ = [
    "GiveUp",
    "Outcome",
    "Retry",
    "RetryBudget",
    "RetryCall",
    "RetryEvent",
    "RetryPolicy",
]

#: Statuses that say "not done, come back later": retried whatever the method.
ALWAYS_RETRIED_STATUSES = frozenset({429, 503})
#: Server errors after which only an idempotent call is retried.
IDEMPOTENT_RETRIED_STATUSES = frozenset({500, 502, 504})


# --- configuration ----------------------------------------------------------


@attrs.define(eq=False)
class RetryBudget:
    """A token bucket shared by every call of a client, so outages stay cheap.

    The numbers are those of the AWS SDKs' "standard" retry mode: the bucket
    starts full at ``capacity`` (500) tokens; a retry takes ``retry_cost``
    (5), or ``timeout_retry_cost`` (10) after a timeout, when it is sent;
    when no tokens are left, failures are no longer retried. A call that
    succeeds at once puts ``success_refund`` (1) token back; one that
    succeeds after retries puts back what its last retry took. So a total
    outage costs at most ``capacity / retry_cost`` (100) retries, and a
    healthy service refills the bucket as calls succeed.

    Safe to share between clients, tasks and threads.
    """

    capacity: int = attrs.field(default=500, validator=attrs.validators.ge(0))
    retry_cost: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    timeout_retry_cost: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    success_refund: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    # Changed on every call: no validator to run on each assignment.
    _tokens: int = attrs.field(init=False, repr=False, on_setattr=attrs.setters.NO_OP)
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
        if self._tokens >= self.capacity:
            return  # full (the common case): nothing to add, no lock to take
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
    policy (``None``: unlimited); a retry is charged when it is sent.
    ``on_retry`` is called with a :class:`RetryEvent` before each wait (if
    other calls empty the budget during that wait, the retry announced is
    not sent after all).

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


# --- what goes in, what comes out -----------------------------------------------


@attrs.frozen
class Outcome:
    """What one attempt came to, as the rules see it.

    A response has a ``status`` (and the ``retry_after`` seconds it asked
    for, already parsed); a failure has a ``failure`` name and says whether
    it is ``transient`` (may pass if tried again), whether the request
    ``reached_server`` (may have: only a failure before a byte was sent says
    no) and whether it was a ``timeout`` (which costs the budget more).
    """

    status: int | None = None
    retry_after: float | None = None
    failure: str | None = None
    transient: bool = False
    reached_server: bool = True
    timeout: bool = False

    @classmethod
    def response(cls, status: int, retry_after: float | None = None) -> Outcome:
        return cls(status=status, retry_after=retry_after)

    @property
    def succeeded(self) -> bool:
        """The service answered and is not asking for a break (a refund is due)."""
        return self.status is not None and self.status < 500 and self.status != 429


@attrs.frozen
class Retry:
    """Wait ``wait`` seconds, then call :meth:`RetryCall.resend`."""

    wait: float
    reason: str
    retry_after: float | None


GiveUpReason = Literal["final", "attempts", "deadline", "budget"]


@attrs.frozen
class GiveUp:
    """Stop: the last outcome is the call's.

    ``why`` is ``"final"`` when the outcome is not one to retry (a success,
    a 4xx, a call that may have acted), else which limit ended the call.
    """

    why: GiveUpReason
    reason: str | None = None


_FINAL = GiveUp("final")


def retry_reason(outcome: Outcome, *, idempotent: bool) -> str | None:
    """Why this outcome may be retried (``"503"``, ``"ConnectTimeout"``), or ``None``."""
    if outcome.status is not None:
        status = outcome.status
        if status in ALWAYS_RETRIED_STATUSES or (
            idempotent and status in IDEMPOTENT_RETRIED_STATUSES
        ):
            return str(status)
        return None
    if outcome.transient and (idempotent or not outcome.reached_server):
        return outcome.failure or "failure"
    return None


def outcome_unknown(outcome: Outcome, *, idempotent: bool) -> bool:
    """Whether a failed non-idempotent call may have been carried out (so it is not resent)."""
    return outcome.status is None and not idempotent and outcome.reached_server


# --- the state machine ----------------------------------------------------------


class RetryCall:
    """The retry state of one call: ``sending`` → ``waiting`` → ``sending`` … → ``done``."""

    def __init__(self, policy: RetryPolicy, *, idempotent: bool, now: float) -> None:
        self.policy = policy
        self.idempotent = idempotent
        self.start = now
        #: Attempts sent so far (the one in flight included).
        self.attempts = 1
        self.state: Literal["sending", "waiting", "done"] = "sending"
        self._cost = 0  # what the pending retry will take from the budget
        self._held = 0  # what the last retry sent took (refunded on success)

    def remaining(self, now: float) -> float | None:
        """Seconds left before the call's deadline (``None``: no deadline)."""
        if self.policy.deadline is None:
            return None
        return self.policy.deadline - (now - self.start)

    def attempt_done(self, outcome: Outcome, *, now: float) -> Retry | GiveUp:
        """The attempt in flight ended with ``outcome``: retry after a wait, or stop."""
        self._expect("sending")
        policy = self.policy
        reason = retry_reason(outcome, idempotent=self.idempotent)
        if reason is None:
            return self._finish(outcome, _FINAL)
        if self.attempts >= policy.max_attempts:
            return self._finish(outcome, GiveUp("attempts", reason))
        if outcome.retry_after is not None and not math.isnan(outcome.retry_after):
            wait = min(max(outcome.retry_after, 0.0), policy.retry_after_cap)
        else:
            ceiling = backoff_ceiling(policy.initial_backoff, policy.max_backoff, self.attempts)
            wait = policy.random() * ceiling
        remaining = self.remaining(now)
        if remaining is not None and wait >= remaining:
            # Waking after the deadline would only make the caller wait for
            # the same error; it gets the error (and the Retry-After) now.
            return self._finish(outcome, GiveUp("deadline", reason))
        budget = policy.budget
        if budget is not None:
            self._cost = budget.timeout_retry_cost if outcome.timeout else budget.retry_cost
            if budget.available < self._cost:
                return self._finish(outcome, GiveUp("budget", reason))
        self.state = "waiting"
        return Retry(wait, reason, outcome.retry_after)

    def resend(self, *, now: float) -> GiveUp | None:
        """The wait is over: ``None`` to send the next attempt (the budget is
        charged now), or why not after all."""
        self._expect("waiting")
        self.state = "done"
        remaining = self.remaining(now)
        if remaining is not None and remaining <= 0:
            return GiveUp("deadline")
        budget = self.policy.budget
        if budget is not None:
            if not budget.try_acquire(self._cost):  # others drained it meanwhile
                return GiveUp("budget")
            self._held = self._cost
        self.attempts += 1
        self.state = "sending"
        return None

    def _finish(self, outcome: Outcome, decision: GiveUp) -> GiveUp:
        self.state = "done"
        budget = self.policy.budget
        if budget is not None and outcome.succeeded:
            # The service answers again: refill the bucket (AWS "standard").
            budget.release(self._held or budget.success_refund)
        return decision

    def _expect(self, state: str) -> None:
        if self.state != state:
            raise RuntimeError(f"retry call is {self.state}, not {state}")
