"""The retry state machine (``_transports.core``) on its own: random outcome
sequences replayed through it on a made-up clock, and the invariants that must
hold whatever the server does.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memcachier_async._transports.core import (
    GiveUp,
    Outcome,
    Retry,
    RetryBudget,
    RetryCall,
    RetryPolicy,
    outcome_unknown,
    retry_reason,
)
from memcachier_async._transports.rules import backoff_ceiling

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATUSES = [200, 201, 204, 400, 401, 404, 409, 429, 500, 501, 502, 503, 504]
FAILURES = [
    # name, transient, reached the server, timeout
    ("ConnectError", True, False, False),
    ("ConnectTimeout", True, False, True),
    ("PoolTimeout", True, False, True),
    ("ReadTimeout", True, True, True),
    ("WriteTimeout", True, True, True),
    ("ReadError", True, True, False),
    ("RemoteProtocolError", True, True, False),
    ("DeadlineExceeded", False, True, True),
    ("UnsupportedProtocol", False, False, False),
]

seconds = st.floats(min_value=0.0, max_value=100.0)
responses = st.builds(
    Outcome.response,
    st.sampled_from(STATUSES),
    st.none() | st.floats(min_value=-10.0, max_value=1e6) | st.sampled_from([math.inf, math.nan]),
)
failures = st.sampled_from(FAILURES).map(
    lambda f: Outcome(failure=f[0], transient=f[1], reached_server=f[2], timeout=f[3])
)
steps = st.lists(
    st.tuples(
        responses | failures,
        seconds,  # how long the attempt takes (the shell cuts it at the deadline)
        st.floats(min_value=0.0, max_value=0.999),  # the jitter draw
        st.sampled_from(["wait", "cancel", "drain"]),  # what happens during the wait
    ),
    min_size=1,
    max_size=12,
)
budgets = st.none() | st.builds(
    RetryBudget,
    capacity=st.integers(0, 60),
    retry_cost=st.integers(0, 10),
    timeout_retry_cost=st.integers(0, 20),
    success_refund=st.integers(0, 3),
)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 8),
    initial_backoff=st.floats(0.0, 2.0),
    max_backoff=st.floats(0.0, 10.0),
    deadline=st.none() | st.floats(0.1, 60.0),
    retry_after_cap=st.floats(0.0, 60.0),
    budget=budgets,
)


def may_resend_after(outcome: Outcome, idempotent: bool) -> bool:
    """Whether sending the call again after ``outcome`` can do no harm."""
    if idempotent:
        return True
    if outcome.status is not None:
        return outcome.status in (429, 503)  # the server says it did not act
    return not outcome.reached_server


@SETTINGS
@given(policy=policies, idempotent=st.booleans(), script=steps)
def test_invariants_hold_for_any_sequence_of_outcomes(
    policy: RetryPolicy, idempotent: bool, script: list[tuple[Outcome, float, float, str]]
) -> None:
    """Attempts ≤ max; waits within their bounds; nothing runs past the deadline; the budget
    is charged only when a retry is sent; a call that may have acted is never sent again."""
    draws: list[float] = []
    policy = attrs.evolve(policy, random=lambda: draws[-1])
    budget = policy.budget
    now = 0.0
    call = RetryCall(policy, idempotent=idempotent, now=now)
    sent = 1
    for outcome, duration, draw, during_wait in script:
        draws.append(draw)
        remaining = call.remaining(now)
        now += duration if remaining is None else min(duration, max(remaining, 0.0))
        if policy.deadline is not None:
            assert now <= policy.deadline + 1e-9
        tokens = None if budget is None else budget.available
        decision = call.attempt_done(outcome, now=now)
        if isinstance(decision, GiveUp):
            assert call.state == "done"
            if retry_reason(outcome, idempotent=idempotent) is None:
                assert decision.why == "final"
            break
        assert isinstance(decision, Retry)
        assert retry_reason(outcome, idempotent=idempotent) is not None
        assert may_resend_after(outcome, idempotent)
        assert not outcome_unknown(outcome, idempotent=idempotent)
        assert sent < policy.max_attempts
        # The wait: the server's Retry-After (capped), else jitter under the ceiling.
        assert decision.wait >= 0.0
        if outcome.retry_after is not None and not math.isnan(outcome.retry_after):
            assert decision.wait == min(max(outcome.retry_after, 0.0), policy.retry_after_cap)
        else:
            ceiling = backoff_ceiling(policy.initial_backoff, policy.max_backoff, sent)
            assert decision.wait <= ceiling
        if policy.deadline is not None:
            assert now + decision.wait < policy.deadline
        # Deciding to retry costs nothing; only sending does.
        if budget is not None:
            assert budget.available == tokens
        if during_wait == "cancel":
            break  # the caller went away while waiting: nothing was taken
        if during_wait == "drain" and budget is not None:
            budget.try_acquire(budget.available)  # other calls empty the bucket meanwhile
        now += decision.wait
        before = None if budget is None else budget.available
        refused = call.resend(now=now)
        if refused is not None:
            assert call.state == "done"
            break
        sent += 1
        assert call.attempts == sent
        if budget is not None and before is not None:
            cost = budget.timeout_retry_cost if outcome.timeout else budget.retry_cost
            assert budget.available == before - cost
    assert sent <= policy.max_attempts
    if budget is not None:
        assert 0 <= budget.available <= budget.capacity


@SETTINGS
@given(outcome=responses | failures, idempotent=st.booleans(), policy=policies, when=seconds)
def test_a_call_that_may_have_acted_is_never_resent(
    outcome: Outcome, idempotent: bool, policy: RetryPolicy, when: float
) -> None:
    """A non-idempotent call whose failure may have reached the server stops at once."""
    call = RetryCall(policy, idempotent=idempotent, now=0.0)
    decision = call.attempt_done(outcome, now=when)
    if outcome_unknown(outcome, idempotent=idempotent):
        assert decision == GiveUp("final")


def test_success_refunds_the_last_retry_or_one_token() -> None:
    """A first-try success puts success_refund back; one after a retry puts back that retry's cost."""
    budget = RetryBudget(capacity=100, retry_cost=7, success_refund=1)
    budget.try_acquire(50)
    policy = RetryPolicy(budget=budget, random=lambda: 0.0)
    assert RetryCall(policy, idempotent=True, now=0).attempt_done(
        Outcome.response(200), now=0
    ) == GiveUp("final")
    assert budget.available == 51
    call = RetryCall(policy, idempotent=True, now=0)
    assert isinstance(call.attempt_done(Outcome.response(503), now=0), Retry)
    assert call.resend(now=0) is None
    assert budget.available == 44
    call.attempt_done(Outcome.response(200), now=0)
    assert budget.available == 51


@pytest.mark.parametrize(
    ("step", "kwargs"), [("resend", {"now": 0.0}), ("attempt_done", {"now": 0.0})]
)
def test_steps_out_of_order_are_refused(step: str, kwargs: dict[str, Any]) -> None:
    """resend before a Retry, or an outcome after the call ended, is a RuntimeError."""
    call = RetryCall(RetryPolicy(), idempotent=True, now=0.0)
    if step == "attempt_done":
        call.attempt_done(Outcome.response(200), now=0.0)
        kwargs["outcome"] = Outcome.response(200)
    with pytest.raises(RuntimeError):
        getattr(call, step)(**kwargs)
