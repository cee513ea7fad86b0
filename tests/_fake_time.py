"""A fake clock for retry tests: time moves only when the code under test sleeps."""

from __future__ import annotations

from typing import Any

import anyio.lowlevel

from memcachier_async import RetryPolicy


class FakeTime:
    """A clock that only moves when the code under test sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def policy(fake: FakeTime, **kwargs: Any) -> RetryPolicy:
    """A retry policy that waits and reads the time on ``fake``."""
    return RetryPolicy(sleep=fake.sleep, clock=fake.clock, **kwargs)
