"""A mock API that holds stats calls until released, for the exporter's concurrency tests."""

from __future__ import annotations

from typing import Any

import anyio
import httpx

from memcachier_async import AsyncAnalytics, RetryPolicy


class Gate:
    """A mock API whose stats calls wait until released, counting them (``most``:
    the most in flight at once)."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.in_flight = 0
        self.most = 0
        self.calls = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.open.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200, json={})

    def client(self) -> AsyncAnalytics:
        return AsyncAnalytics(
            "u",
            "p",
            cache_id=7,
            transport=httpx.MockTransport(self.handler),
            retry=RetryPolicy.disabled(),
        )


async def wait_until(condition: Any) -> None:
    """Poll ``condition`` until true, for at most about 5 s."""
    for _ in range(1000):
        if condition():
            return
        await anyio.sleep(0.005)
    raise AssertionError("condition never became true")
