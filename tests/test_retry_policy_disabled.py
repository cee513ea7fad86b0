"""RetryPolicy.disabled(): one attempt, no budget.

Written to kill mutants that survived ``nox -s mutation`` (tests/MUTATION.md).
"""

from __future__ import annotations

from memcachier_async import RetryPolicy


def test_disabled_policy_makes_exactly_one_attempt_and_has_no_budget() -> None:
    """disabled() sends each call once (max_attempts 1) and keeps no retry budget."""
    policy = RetryPolicy.disabled()
    assert policy.max_attempts == 1
    assert policy.budget is None
