"""Reading a response body with a bound: bytes counted as they arrive, decompressed as they arrive.

A server (or anything between it and us) decides how many bytes it sends
and what they inflate to: 1 MB of gzip can become 1,000 MiB. So a body is
never read whole and decoded afterwards. :func:`read_body` counts the
bytes on the wire and the decoded bytes as each chunk arrives, inflates
``gzip``/``deflate`` in steps of at most :data:`_STEP` decoded bytes
(yielding to the event loop between steps), and stops at the limit:

- a success (2xx) body may be up to the request's limit
  (:data:`MAX_RESPONSE_SIZE_EXTENSION`, default
  :data:`DEFAULT_MAX_RESPONSE_SIZE`); beyond it
  :class:`~memcachier_async.ResponseTooLargeError` is raised;
- any other body is only needed for an error message: its first
  :data:`ERROR_BODY_READ_LIMIT` decoded bytes are kept and the rest is
  never downloaded (the connection is closed instead of reused).

Every transport of the SDK reads through here, inside the call's deadline,
and returns the decoded body without its ``Content-Encoding`` header, so
nothing above decodes it a second time.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any

import anyio.lowlevel
import httpx

from memcachier_async._errors import ResponseTooLargeError

from .rules import MAX_RESPONSE_SIZE_EXTENSION

__all__ = [
    "DEFAULT_MAX_RESPONSE_SIZE",
    "ERROR_BODY_READ_LIMIT",
    "decoded_headers",
    "max_response_size",
    "network_abort",
    "read_body",
    "read_body_in_memory",
]

#: The default bound on a success body: the largest real answer (a long
#: history of a big cache) is a few MiB; 64 MiB leaves a wide margin.
DEFAULT_MAX_RESPONSE_SIZE = 64 * 2**20
#: How much of an error body is read; the rest is not downloaded.
ERROR_BODY_READ_LIMIT = 16 * 1024
# The most decoded bytes one inflate step produces (well under a
# millisecond of CPU); the event loop gets a turn between steps.
_STEP = 256 * 1024
# A stream given up on is read on (after its connection is closed) at most
# this often, until its generators end.
_DRAIN_STEPS = 64
# "gzip, deflate, gzip, ...": a chain longer than this is not a real server's.
_MAX_CODINGS = 3
_SUPPORTED = frozenset({"gzip", "x-gzip", "deflate"})


def max_response_size(request: httpx.Request) -> int | None:
    """The request's bound on a success body (``None``: unbounded, by explicit choice)."""
    extensions = request.extensions
    if MAX_RESPONSE_SIZE_EXTENSION not in extensions:
        return DEFAULT_MAX_RESPONSE_SIZE
    value = extensions[MAX_RESPONSE_SIZE_EXTENSION]
    return None if value is None else int(value)


class _Inflater:
    """One ``gzip`` or ``deflate`` layer, inflated in bounded steps."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding != "deflate"
        # deflate is meant to be zlib-wrapped, but some servers send it raw
        # (as browsers and httpx accept): the first failure retries raw.
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        z = self._zlib
        while data and not z.eof:
            try:
                out = z.decompress(data, _STEP)
            except zlib.error as exc:
                if self._gzip or self._started:
                    raise httpx.DecodingError(f"the body is not valid {self.name}: {exc}") from exc
                self._zlib = z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                continue
            self._started = True
            data = z.unconsumed_tail
            if out:
                yield out
            if not data and len(out) == _STEP:
                # The output was cut at the step: inflate may hold more.
                data = b""
                while not z.eof:
                    out = z.decompress(b"", _STEP)
                    if out:
                        yield out
                    if len(out) < _STEP:
                        break

    def finish(self) -> bytes:
        """What is left at the end of the body; a stream cut before its end
        (a gzip body without its CRC-32 and size trailer, say) is refused."""
        if self._zlib.eof or not self._started:
            return b""  # complete, or an empty body
        rest = self._zlib.flush()
        if not self._zlib.eof:
            raise httpx.DecodingError(
                f"the {self.name} body ended before its end (truncated): it may be incomplete"
            )
        return rest

    @property
    def name(self) -> str:
        return "gzip" if self._gzip else "deflate"


def _codings(content_encoding: str | None) -> list[_Inflater]:
    """The inflaters for a ``Content-Encoding``, outermost (applied last) first."""
    if not content_encoding:
        return []
    names = [n.strip().lower() for n in content_encoding.split(",")]
    names = [n for n in names if n and n != "identity"]
    if len(names) > _MAX_CODINGS:
        raise httpx.DecodingError(f"Content-Encoding with {len(names)} codings")
    for name in names:
        if name not in _SUPPORTED:
            raise httpx.DecodingError(f"unsupported Content-Encoding {name[:40]!r}")
    return [_Inflater(name) for name in reversed(names)]


def _through(inflaters: list[_Inflater], data: bytes) -> Iterator[bytes]:
    if not inflaters:
        if data:
            yield data
        return
    for piece in inflaters[0].feed(data):
        yield from _through(inflaters[1:], piece)


def _finish(inflaters: list[_Inflater]) -> Iterator[bytes]:
    for i, inflater in enumerate(inflaters):
        yield from _through(inflaters[i + 1 :], inflater.finish())


def too_large(request: httpx.Request, limit: int) -> ResponseTooLargeError:
    url = request.url.copy_with(username=None, password=None, query=None)
    return ResponseTooLargeError(
        f"the response to {request.method} {url} is larger than the limit of "
        f"{limit:,} bytes (max_response_size); reading stopped there",
        limit=limit,
    )


def network_abort(extensions: Mapping[str, Any]) -> Callable[[], Awaitable[object]] | None:
    """How to cut the connection under an httpcore response (its ``network_stream``)."""
    stream = extensions.get("network_stream")
    aclose = getattr(stream, "aclose", None)
    return aclose if callable(aclose) else None


async def _abandon(
    iterator: AsyncIterator[bytes], abort: Callable[[], Awaitable[object]] | None
) -> None:
    """Stop reading a body before its end, so that no async generator is left suspended.

    httpx and httpcore stream a body through nested async generators;
    closing the outer one leaves the inner ones to the garbage collector
    (trio warns about each). Closing the connection first makes the next
    read fail inside the innermost one, and that failure ends them all.
    """
    with anyio.CancelScope(shield=True):
        if abort is not None:
            try:
                await abort()
                for _ in range(_DRAIN_STEPS):
                    await iterator.__anext__()
            except Exception:  # the end we want: StopAsyncIteration, or the closed connection
                return
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            # A stream that fails to close is closed enough.
            with contextlib.suppress(Exception):
                await aclose()


async def read_body(
    chunks: AsyncIterable[bytes],
    *,
    status_code: int,
    content_encoding: str | None,
    content_length: str | None,
    request: httpx.Request,
    abort: Callable[[], Awaitable[object]] | None = None,
) -> tuple[bytes, bool]:
    """The decoded body, and whether it is whole (``False``: an error body cut short).

    Raises :class:`ResponseTooLargeError` when a success body (counted on
    the wire or decoded) passes the request's limit, and
    ``httpx.DecodingError`` when a success body cannot be decoded. An
    error body that cannot be decoded is kept as far as it could be.
    ``abort`` cuts the connection when the body is not read to its end
    (see :func:`network_abort`).
    """
    iterator = chunks.__aiter__()
    ended = False
    try:
        body, ended = await _read(iterator, status_code, content_encoding, content_length, request)
    finally:
        if not ended:
            await _abandon(iterator, abort)
    return body, ended


async def _read(
    chunks: AsyncIterator[bytes],
    status_code: int,
    content_encoding: str | None,
    content_length: str | None,
    request: httpx.Request,
) -> tuple[bytes, bool]:
    success = 200 <= status_code < 300
    limit = max_response_size(request) if success else ERROR_BODY_READ_LIMIT
    if success and limit is not None and content_length is not None:
        declared = content_length.strip()
        if declared.isdigit() and len(declared) < 30 and int(declared) > limit:
            raise too_large(request, limit)
    try:
        inflaters = _codings(content_encoding)
    except httpx.DecodingError:
        if success:
            raise
        return b"", False
    if not inflaters:
        return await _read_plain(chunks, limit, success, request)
    parts: list[bytes] = []
    size = 0

    def keep(piece: bytes) -> bool:
        """Keep ``piece``; ``False`` once an error body is full."""
        nonlocal size
        size += len(piece)
        if limit is not None and size > limit:
            if success:
                raise too_large(request, limit)
            parts.append(piece[: len(piece) - (size - limit)])
            return False
        parts.append(piece)
        return True

    wire = 0
    try:
        async for chunk in chunks:
            wire += len(chunk)
            # A compressed body longer than the limit on the wire: no need to
            # inflate it to know (and a stream that inflates to nothing ends).
            over = limit is not None and wire > limit
            if success and limit is not None and wire > limit:
                raise too_large(request, limit)
            first = True
            for piece in _through(inflaters, chunk):
                if not first:
                    await anyio.lowlevel.checkpoint()
                first = False
                if not keep(piece):
                    return b"".join(parts), False
            if over:
                return b"".join(parts), False
        for piece in _finish(inflaters):
            if not keep(piece):
                return b"".join(parts), False
    except httpx.DecodingError:
        if success:
            raise
        return b"".join(parts), False
    return b"".join(parts), True


async def _read_plain(
    chunks: AsyncIterator[bytes], limit: int | None, success: bool, request: httpx.Request
) -> tuple[bytes, bool]:
    """:func:`_read` of a body without a ``Content-Encoding``: only counted."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if limit is not None and size > limit:
            if success:
                raise too_large(request, limit)
            parts.append(chunk[: len(chunk) - (size - limit)])
            return b"".join(parts), False
        parts.append(chunk)
    return b"".join(parts), True


async def _once(data: bytes) -> AsyncIterable[bytes]:
    yield data


async def read_body_in_memory(
    body: bytes,
    *,
    status_code: int,
    content_encoding: str | None,
    request: httpx.Request,
) -> tuple[bytes, bool]:
    """:func:`read_body` on a body already in memory (a mock's, the emulator's)."""
    if not content_encoding:
        # The common case (the SDK's transports have decoded already): no copy.
        success = 200 <= status_code < 300
        limit = max_response_size(request) if success else ERROR_BODY_READ_LIMIT
        if limit is None or len(body) <= limit:
            return body, True
        if success:
            raise too_large(request, limit)
        return body[:limit], False
    return await read_body(
        _once(body),
        status_code=status_code,
        content_encoding=content_encoding,
        content_length=None,
        request=request,
    )


_DROPPED = frozenset({b"content-encoding", b"content-length"})


def decoded_headers(raw: Iterable[tuple[bytes, bytes]], decoded: bool) -> list[tuple[bytes, bytes]]:
    """The response headers for a body that :func:`read_body` decoded.

    Without ``Content-Encoding`` (httpx would decode it again) and without
    the wire's ``Content-Length`` (it counted the encoded bytes).
    """
    if not decoded:
        return list(raw)
    return [(k, v) for k, v in raw if k.lower() not in _DROPPED]
