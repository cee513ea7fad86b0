"""The emulator as an httpx transport: answers in process, no sockets."""

from __future__ import annotations

import httpx

from ._http import Drop, RequestHandler

__all__ = ["EmulatorTransport"]


class EmulatorTransport(httpx.AsyncBaseTransport):
    """Hands each request to the emulator, whatever its host.

    A dropped connection raises what httpx raises over a socket: a reset is
    ``httpx.ReadError``, a close without an answer ``httpx.RemoteProtocolError``.
    """

    def __init__(self, emulator: RequestHandler) -> None:
        self._emulator = emulator

    def __repr__(self) -> str:
        return f"<EmulatorTransport {self._emulator!r}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        result = await self._emulator.handle(
            request.method,
            request.url.raw_path.decode("ascii"),
            request.headers.get("authorization"),
            body,
        )
        if isinstance(result, Drop):
            if result.reset:
                raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        headers = [("Content-Type", result.content_type), *result.headers]
        return httpx.Response(result.status, headers=headers, content=result.body, request=request)
