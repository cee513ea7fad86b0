"""The retry state machine's rules at their edges, one example each.

``test_retry_core.py`` replays random outcome sequences; these cases pin what
those draws rarely hit exactly: which limit a ``GiveUp`` names, the instant a
deadline or a budget is exactly met, the state a call is left in, and the
messages of the errors it raises. Written to kill mutants that survived
``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from memcachier_async._transports.core import (
    GiveUp,
    Outcome,
    Retry,
    RetryBudget,
    RetryCall,
    RetryPolicy,
    retry_reason,
)

READ_TIMEOUT = Outcome(failure="ReadTimeout", transient=True, reached_server=True, timeout=True)


def policy(**kwargs: Any) -> RetryPolicy:
    """A policy with no jitter (every backoff wait is 0) and the given fields."""
    return RetryPolicy(random=lambda: 0.0, **kwargs)


def waiting_call(rules: RetryPolicy, outcome: Outcome = READ_TIMEOUT) -> RetryCall:
    """A call started at 0 whose first attempt ended with ``outcome`` and is now waiting."""
    call = RetryCall(rules, idempotent=True, now=0.0)
    assert isinstance(call.attempt_done(outcome, now=0.0), Retry)
    assert call.state == "waiting"
    return call


@pytest.mark.parametrize(
    ("rules", "outcome", "expected"),
    [
        (policy(max_attempts=1), Outcome.response(503), GiveUp("attempts", "503")),
        # A 10 s Retry-After cannot end before a 5 s deadline.
        (policy(deadline=5.0), Outcome.response(429, retry_after=10.0), GiveUp("deadline", "429")),
        (
            policy(budget=RetryBudget(capacity=4, retry_cost=5)),
            Outcome.response(502),
            GiveUp("budget", "502"),
        ),
        (
            policy(budget=RetryBudget(capacity=9, timeout_retry_cost=10)),
            READ_TIMEOUT,
            GiveUp("budget", "ReadTimeout"),
        ),
    ],
    ids=["attempts", "deadline", "budget", "budget-timeout"],
)
def test_a_limit_gives_up_naming_itself_and_the_retryable_reason(
    rules: RetryPolicy, outcome: Outcome, expected: GiveUp
) -> None:
    """A retryable outcome stopped by a limit says which limit and what would have been retried."""
    call = RetryCall(rules, idempotent=True, now=0.0)
    assert call.attempt_done(outcome, now=0.0) == expected
    assert call.state == "done"


@pytest.mark.parametrize(
    ("retry_after", "retried"), [(5.999, True), (6.0, False)], ids=["before", "exactly"]
)
def test_a_wait_ending_exactly_at_the_deadline_is_not_started(
    retry_after: float, retried: bool
) -> None:
    """With 6 s left, a 6 s Retry-After gives up at once ("deadline"); a shorter one waits."""
    call = RetryCall(policy(deadline=10.0), idempotent=True, now=0.0)
    decision = call.attempt_done(Outcome.response(503, retry_after=retry_after), now=4.0)
    if retried:
        assert decision == Retry(retry_after, "503", retry_after)
    else:
        assert decision == GiveUp("deadline", "503")


def test_a_budget_holding_exactly_one_retry_pays_for_it() -> None:
    """Tokens equal to the retry's cost are enough: the retry is decided, sent and empties the bucket."""
    budget = RetryBudget(capacity=5, retry_cost=5)
    call = waiting_call(policy(budget=budget), Outcome.response(503))
    assert call.resend(now=0.0) is None
    assert (call.state, call.attempts, budget.available) == ("sending", 2, 0)


@pytest.mark.parametrize("woke_at", [10.0, 12.5], ids=["exactly", "after"])
def test_no_resend_once_the_deadline_has_come(woke_at: float) -> None:
    """A wait that ends at or after the deadline ends the call ("deadline"), charging nothing."""
    budget = RetryBudget()
    call = waiting_call(policy(deadline=10.0, budget=budget))
    assert call.resend(now=woke_at) == GiveUp("deadline")
    assert (call.state, call.attempts, budget.available) == ("done", 1, budget.capacity)


def test_a_resend_just_before_the_deadline_is_sent() -> None:
    """A wait that ends with time left sends the next attempt."""
    call = waiting_call(policy(deadline=10.0))
    assert call.resend(now=9.5) is None
    assert (call.state, call.attempts) == ("sending", 2)


def test_a_budget_drained_during_the_wait_stops_the_resend() -> None:
    """If other calls empty the bucket while this one waits, it ends ("budget") without a retry."""
    budget = RetryBudget(capacity=10, timeout_retry_cost=10)
    call = waiting_call(policy(budget=budget))
    assert budget.try_acquire(1)  # another call's retry
    assert call.resend(now=0.0) == GiveUp("budget")
    assert (call.state, call.attempts, budget.available) == ("done", 1, 9)


def test_a_call_that_gave_up_on_resend_takes_no_further_outcome() -> None:
    """After resend gives up the call is done: another outcome is refused, naming that state."""
    call = waiting_call(policy(deadline=10.0))
    assert call.resend(now=10.0) == GiveUp("deadline")
    with pytest.raises(RuntimeError, match=r"^retry call is done, not sending$"):
        call.attempt_done(Outcome.response(200), now=10.0)


def test_a_resend_before_any_retry_names_both_states() -> None:
    """resend while the first attempt is in flight says which state the call is in and which it needed."""
    call = RetryCall(policy(), idempotent=True, now=0.0)
    with pytest.raises(RuntimeError, match=r"^retry call is sending, not waiting$"):
        call.resend(now=0.0)


@pytest.mark.parametrize("failure", [None, ""])
def test_a_transient_failure_without_a_name_is_retried_as_failure(failure: str | None) -> None:
    """A transient failure with no (or an empty) name is retried with the reason "failure"."""
    outcome = Outcome(failure=failure, transient=True, reached_server=False)
    assert retry_reason(outcome, idempotent=False) == "failure"


def test_a_first_try_success_refunds_success_refund_tokens() -> None:
    """A call that succeeds at once puts back exactly ``success_refund`` tokens (here 3)."""
    budget = RetryBudget(capacity=100, success_refund=3)
    assert budget.try_acquire(10)
    call = RetryCall(policy(budget=budget), idempotent=True, now=0.0)
    assert call.attempt_done(Outcome.response(200), now=0.0) == GiveUp("final")
    assert budget.available == 93


@pytest.mark.parametrize(("deadline", "shown"), [(0.0, "0.0"), (-1.5, "-1.5"), (math.nan, "nan")])
def test_a_deadline_that_is_not_positive_is_refused_naming_it(deadline: float, shown: str) -> None:
    """RetryPolicy(deadline=0, negative or NaN) is a ValueError naming the field and the value."""
    with pytest.raises(
        ValueError, match=rf"^deadline must be positive or None, got {re.escape(shown)}$"
    ):
        RetryPolicy(deadline=deadline)
