"""A small HTTP/1.1 server on anyio, for the exporter's routes.

It runs in the exporter's event loop (asyncio or trio), so a probe is an
ordinary task next to the API calls it makes: no thread per request, no
hop between loops. h11 parses; this module only moves bytes and enforces
limits, each one set before anything is read:

- a request head (request line and headers) of at most 16 KiB (h11's
  ``max_incomplete_event_size``), received within 10 s of its first byte;
- GET and HEAD only (405 otherwise); a request with a body gets 413 and the
  connection is closed, unread;
- a target in origin form (``/path?query``), ASCII, at most 20 query fields;
- an idle keep-alive connection closes after 120 s; a response not taken
  by the client within 30 s closes the connection;
- at most 512 open connections; one more gets 503 at once and is closed.

A handler that raises gets a 500 with a one-line body (the error is
logged); the server and the other connections go on. Any other failure
on a connection closes that connection only.
"""

from __future__ import annotations

import contextlib
import http
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
import anyio.abc
import attrs
import h11

__all__ = ["Limits", "Request", "Response", "serve_http"]

logger = logging.getLogger("memcachier_async.exporter")

TEXT = "text/plain; charset=utf-8"


@attrs.frozen
class Limits:
    """How much a client may send, and how long it may take."""

    max_head: int = 16 * 1024
    max_query_fields: int = 20
    head_timeout: float = 10.0
    idle_timeout: float = 120.0
    send_timeout: float = 30.0
    max_connections: int = 512


@attrs.frozen
class Request:
    """A parsed request: ``query`` maps each field to its values, in order."""

    method: str
    path: str
    query: Mapping[str, tuple[str, ...]]
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "


@attrs.frozen
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


def text(status: int, message: str) -> Response:
    """A plain-text response of one line."""
    return Response(status, (message.rstrip("\n") + "\n").encode())


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _parse(event: h11.Request, limits: Limits) -> Request:
    method = event.method.decode("ascii", "replace")
    if method not in ("GET", "HEAD"):
        raise _BadRequest(
            attrs.evolve(
                text(405, f"Method not allowed: {method}. Use GET."),
                headers=(("allow", "GET, HEAD"),),
            )
        )
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("ascii", "replace").lower()
        decoded = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {decoded}" if key in headers else decoded
    if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
        raise _BadRequest(text(413, "Request bodies are not accepted."))
    try:
        target = event.target.decode("ascii")
    except UnicodeDecodeError:
        raise _BadRequest(text(400, "The request target must be ASCII.")) from None
    if not target.startswith("/"):
        raise _BadRequest(text(400, "The request target must be a path (/...)."))
    path, _, query = target.partition("?")
    fields: list[tuple[str, str]]
    try:
        fields = urllib.parse.parse_qsl(
            query,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=limits.max_query_fields,
        )
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest(
            text(400, f"Bad query string (UTF-8, at most {limits.max_query_fields} fields).")
        ) from None
    values: dict[str, list[str]] = {}
    for field, content in fields:
        values.setdefault(field, []).append(content)
    return Request(
        method=method,
        path=path,
        query={key: tuple(v) for key, v in values.items()},
        headers=headers,
    )


async def _receive(stream: anyio.abc.ByteStream, size: int) -> bytes:
    try:
        return await stream.receive(size)
    except anyio.EndOfStream:
        return b""


class _Server:
    def __init__(self, handler: Handler, limits: Limits) -> None:
        self._handler = handler
        self._limits = limits
        self.open = 0

    async def connection(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            if self.open >= self._limits.max_connections:
                with anyio.move_on_after(1), contextlib.suppress(Exception):
                    await stream.send(_refusal())
                return
            self.open += 1
            try:
                await self._converse(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, TimeoutError):
                pass  # the client went away or was too slow: nothing to answer
            except Exception:
                # A bug on one connection ends that connection, never the server.
                logger.exception("a connection of the exporter's HTTP server failed")
            finally:
                self.open -= 1

    async def _converse(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head)
        while True:
            event = await self._next_request(conn, stream)
            if event is None:
                return
            try:
                request = _parse(event, self._limits)
            except _BadRequest as bad:
                await self._send(conn, stream, bad.response, head_only=False, close=True)
                return
            # The request has no body (checked): its end is in h11's buffer already,
            # and reading it lets the connection serve the next request.
            conn.next_event()
            response = await self._answer(request)
            await self._send(conn, stream, response, head_only=request.method == "HEAD")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _next_request(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream
    ) -> h11.Request | None:
        """The next request's head; ``None`` when the client closed or stayed idle too long."""
        if not conn.trailing_data[0]:
            with anyio.move_on_after(self._limits.idle_timeout):
                conn.receive_data(await _receive(stream, self._limits.max_head + 1))
            if not conn.trailing_data[0] and not conn.trailing_data[1]:
                return None  # idle for too long
        limit = self._limits.max_head
        try:
            with anyio.fail_after(self._limits.head_timeout):
                while True:
                    event = conn.next_event()
                    if isinstance(event, h11.Request):
                        return event
                    if event is not h11.NEED_DATA:
                        return None  # the client closed the connection
                    # Never more than one byte past the limit buffered: a head
                    # that has not ended by then is too large, however it ends.
                    buffered = len(conn.trailing_data[0])
                    if buffered > limit:
                        raise h11.RemoteProtocolError("head too large", error_status_hint=431)
                    conn.receive_data(await _receive(stream, limit + 1 - buffered))
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            # h11's message quotes the client's bytes: not echoed back.
            reason = (
                f"Request head larger than {limit} bytes."
                if status == 431
                else "Bad request: not a well-formed HTTP/1.1 request."
            )
            with contextlib.suppress(h11.LocalProtocolError):
                await self._send(conn, stream, text(status, reason), head_only=False, close=True)
            return None

    async def _answer(self, request: Request) -> Response:
        try:
            return await self._handler(request)
        except Exception:
            logger.exception("the handler of %s %s failed", request.method, request.path)
            return text(500, "Internal error; see the exporter's log.")

    async def _send(
        self,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
        response: Response,
        *,
        head_only: bool,
        close: bool = False,
    ) -> None:
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            *response.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        head = h11.Response(
            status_code=response.status,
            headers=headers,
            reason=http.HTTPStatus(response.status).phrase.encode(),
        )
        data = conn.send(head) or b""
        if response.body and not head_only:
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        with anyio.fail_after(self._limits.send_timeout):
            await stream.send(data)


def _refusal() -> bytes:
    body = b"Too many connections.\n"
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )


@contextlib.asynccontextmanager
async def serve_http(
    handler: Handler, host: str, port: int, *, limits: Limits | None = None
) -> AsyncIterator[int]:
    """Serve ``handler`` on ``host:port`` while the block runs; yields the bound port."""
    server = _Server(handler, limits or Limits())
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server.connection)
        bound = listener.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
        try:
            yield bound
        finally:
            group.cancel_scope.cancel()
