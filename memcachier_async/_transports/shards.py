"""Several small stock httpx pools behind one transport: httpcore 1.0's pool cost, bounded.

httpcore 1.0's connection pool re-examines every connection and every
queued request each time a request starts or ends, so a call costs CPU in
proportion to the connections and requests in flight (about 20 ms per call
at 128 calls in flight on 100 connections, against well under 1 ms with a
few). :class:`ShardedTransport` composes ``httpx.AsyncHTTPTransport`` pools
of at most :data:`SHARD_SIZE` connections each and hands each request to the
least busy one, so each pool's work per request stays small. Every shard is
httpx's own transport: respx, OpenTelemetry's instrumentation and a patch
of ``AsyncHTTPTransport`` see every request as they would with one pool.

Under ``httpx2.alias_httpx()`` (httpcore2, whose pool does constant work
per request) or on the aiohttp engine none of this is needed; it costs a
few microseconds per request there.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

__all__ = ["SHARD_SIZE", "ShardedTransport", "shard_limits"]

#: The most connections one shard holds.
SHARD_SIZE = 16


def shard_limits(limits: httpx.Limits) -> list[httpx.Limits]:
    """``limits`` split into shards of at most :data:`SHARD_SIZE` connections,
    adding up to the same totals (one shard when there is no cap)."""
    total = limits.max_connections
    if total is None or total <= SHARD_SIZE:
        return [limits]
    count = -(-total // SHARD_SIZE)
    idle = limits.max_keepalive_connections
    shards = []
    for i in range(count):
        size = total // count + (1 if i < total % count else 0)
        keep = None if idle is None else idle // count + (1 if i < idle % count else 0)
        shards.append(
            httpx.Limits(
                max_connections=size,
                max_keepalive_connections=keep,
                keepalive_expiry=limits.keepalive_expiry,
            )
        )
    return shards


class ShardedTransport(httpx.AsyncBaseTransport):
    """Requests spread over ``httpx.AsyncHTTPTransport`` pools, one pool per
    :func:`shard_limits` share of ``limits``; ``make`` builds each pool."""

    def __init__(
        self, limits: httpx.Limits, make: Callable[[httpx.Limits], httpx.AsyncBaseTransport]
    ) -> None:
        self._shards = [make(share) for share in shard_limits(limits)]
        # Requests each shard is sending or reading the head of.
        self._busy = [0] * len(self._shards)

    @property
    def shards(self) -> tuple[httpx.AsyncBaseTransport, ...]:
        """The pools, in the order a quiet transport uses them."""
        return tuple(self._shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        busy = self._busy
        # The least busy shard, the first of equals: light load stays on one
        # shard's warm connections.
        index = busy.index(min(busy))
        busy[index] += 1
        try:
            return await self._shards[index].handle_async_request(request)
        finally:
            busy[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
