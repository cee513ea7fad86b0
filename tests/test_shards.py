"""Several small httpx pools behind one transport: how limits split, and where a request goes."""

from __future__ import annotations

import anyio
import httpx
import pytest

from memcachier_async._transports.shards import SHARD_SIZE, ShardedTransport, shard_limits


@pytest.mark.parametrize(
    ("limits", "sizes"),
    [
        (httpx.Limits(max_connections=100, max_keepalive_connections=100), [15, 15] + [14] * 5),
        (httpx.Limits(max_connections=SHARD_SIZE), [SHARD_SIZE]),
        (httpx.Limits(max_connections=17, max_keepalive_connections=5), [9, 8]),
        (httpx.Limits(max_connections=None), [None]),
    ],
)
def test_limits_split_into_shards_that_add_up(
    limits: httpx.Limits, sizes: list[int | None]
) -> None:
    """No shard holds more than SHARD_SIZE connections; the shards add up to the
    limits given (connections and kept-alive ones), keeping their expiry."""
    shards = shard_limits(limits)
    assert [s.max_connections for s in shards] == sizes
    if limits.max_connections is not None:
        assert sum(s.max_connections or 0 for s in shards) == limits.max_connections
    if limits.max_keepalive_connections is not None and len(shards) > 1:
        kept = sum(s.max_keepalive_connections or 0 for s in shards)
        assert kept == limits.max_keepalive_connections
    assert {s.keepalive_expiry for s in shards} == {limits.keepalive_expiry}


class Gate(httpx.AsyncBaseTransport):
    """Answers once the test opens the gate; counts what it was given."""

    def __init__(self, gate: anyio.Event) -> None:
        self.gate = gate
        self.seen = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        await self.gate.wait()
        return httpx.Response(200)


@pytest.mark.anyio
async def test_requests_go_to_the_least_busy_shard() -> None:
    """20 requests at once over two shards: 10 each; one at a time, all to the first."""
    gate = anyio.Event()
    made: list[Gate] = []

    def make(share: httpx.Limits) -> Gate:
        made.append(Gate(gate))
        return made[-1]

    transport = ShardedTransport(httpx.Limits(max_connections=32), make)
    assert transport.shards == tuple(made)
    assert len(made) == 2
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(transport.handle_async_request, httpx.Request("GET", "http://x/"))
        await anyio.wait_all_tasks_blocked()
        assert [g.seen for g in made] == [10, 10]
        gate.set()
    for _ in range(5):
        await transport.handle_async_request(httpx.Request("GET", "http://x/"))
    assert [g.seen for g in made] == [15, 10]
    await transport.aclose()
