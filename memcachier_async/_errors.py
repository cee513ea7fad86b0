"""Every exception the SDK raises.

One base class, so ``except MemcachierError`` catches anything we raise::

    MemcachierError
    ├── APIError                  the service answered with a non-2xx status
    │   ├── AuthenticationError   401: unknown username or wrong password
    │   ├── PermissionDeniedError 403: the credential lacks a capability
    │   ├── NotFoundError         404: "No cache found."
    │   ├── RateLimitError        429: ``retry_after`` seconds, when given
    │   └── ServerError           5xx: ``servers`` that did not answer
    ├── TransportError            no usable answer: connection failures,
    │   │                         timeouts, resets (chains the httpx error)
    │   └── OutcomeUnknownError   a call that is not safe to repeat failed
    │                             after it may have reached the server
    ├── DecodeError               a 2xx body that is not what the endpoint
    │                             returns; names the endpoint and the field
    ├── ResponseTooLargeError     a body past the client's max_response_size
    │                             (counted as it arrives; never retried)
    └── UnknownCredentialError    no credential of that username on the cache

``APIError`` also stands for any other non-2xx status (a 400, a 3xx).

Every error carries ``attempts``: one :class:`Attempt` per request sent for
the call that failed (more than one when the retry layer retried it).

No password ever appears in these messages: they are built from the
status, the method, the URL (usernames, never passwords, appear in paths)
and the body the service sent, cut to :data:`ERROR_BODY_LIMIT` characters
and scrubbed of the request's credentials (an error page that echoes the
request headers would otherwise quote the ``Authorization`` value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

import attrs

__all__ = [
    "APIError",
    "Attempt",
    "AuthenticationError",
    "DecodeError",
    "MemcachierError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ServerError",
    "TransportError",
    "UnknownCredentialError",
]

# Long HTML error pages from proxies are cut in messages (more of the text
# stays in ``.body``).
_MESSAGE_BODY_LIMIT = 300
#: The most characters of an error body an :class:`APIError` keeps in ``body``.
ERROR_BODY_LIMIT = 4096
_REDACTED = "[REDACTED]"


@attrs.frozen
class Attempt:
    """One request sent for a call: what came back and when.

    ``outcome`` is the HTTP status (``503``) or the name of the exception
    (``"ConnectTimeout"``); ``elapsed`` is seconds since the call started,
    at the moment the attempt ended.
    """

    number: int
    outcome: int | str
    elapsed: float


class MemcachierError(Exception):
    """Base class of every error raised by memcachier-async."""

    attempts: tuple[Attempt, ...] = ()


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class APIError(MemcachierError):
    """The service answered, with a status that is not a success.

    ``headers`` are the response's headers (lower-case names, repeated
    headers joined with ``", "``), without any that can carry a secret
    (cookies, authorization).
    """

    headers: Mapping[str, str] = _NO_HEADERS

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        url: str,
        body: str,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.method = method
        self.url = url
        self.body = body


class AuthenticationError(APIError):
    """401: the service does not know this username and password."""


class PermissionDeniedError(APIError):
    """403: the credential lacks the API, flush or management capability."""


class NotFoundError(APIError):
    """404: for login, no cache belongs to this credential."""


class RateLimitError(APIError):
    """429: too many requests; wait ``retry_after`` seconds when it is set."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        url: str,
        body: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, method=method, url=url, body=body)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the service (or a proxy in front of it) failed.

    ``servers`` lists the ``host:port`` of the cache's servers that did not
    answer, parsed from ``Server error: a:1,b:2``; it is empty when the body
    names none. After a failed flush, the servers not listed may have been
    flushed.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        url: str,
        body: str,
        servers: Sequence[str] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, method=method, url=url, body=body)
        self.servers = tuple(servers)
        self.retry_after = retry_after


class TransportError(MemcachierError):
    """No usable answer: the connection failed, timed out or was reset.

    The httpx exception is chained as ``__cause__``.
    """


class OutcomeUnknownError(TransportError):
    """A call that is not safe to repeat failed after it may have acted.

    The request may have reached the service and been carried out (a
    credential created) before the connection failed, so it was not retried.
    The message says how to find out what happened.
    """


class DecodeError(MemcachierError):
    """A success body that does not have the shape the endpoint returns."""

    def __init__(self, message: str, *, endpoint: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.path = path


class ResponseTooLargeError(MemcachierError):
    """A response body larger than the client's ``max_response_size``.

    Counted as the bytes arrive, on the wire and decompressed, so reading
    stopped at the limit; nothing of the body is kept. Never retried: the
    next answer would be as large. ``limit`` is the bound in bytes.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit


class UnknownCredentialError(MemcachierError, LookupError):
    """The cache has no credential with this username."""

    def __init__(self, username: str) -> None:
        super().__init__(f"no credential with username {username!r} on this cache")
        self.username = username


# --- building API errors from a response (pure) ---------------------------

_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}

_SERVERS_RE = re.compile(r"^\s*Server error:\s*(?P<servers>.+?)\s*$", re.DOTALL)


def servers_from_body(text: str) -> tuple[str, ...]:
    """The ``host:port`` list of a ``Server error: a:1,b:2`` body, else ``()``."""
    match = _SERVERS_RE.match(text)
    if match is None:
        return ()
    return tuple(s for s in (part.strip() for part in match["servers"].split(",")) if s)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of each secret replaced (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, _REDACTED)
    return text


#: The attributes of an SDK exception that hold text a server may have written.
_TEXT_ATTRIBUTES = ("message", "path", "body")


def scrub_error(error: BaseException, secrets: Sequence[str]) -> bool:
    """Cut ``secrets`` out of ``error``'s text in place: its ``args`` and the
    text attributes (``message``, ``path``, ``body``) of an SDK exception.

    True when one was there. ``APIError.headers`` are scrubbed as they are
    built (:func:`public_headers`); a chained cause is the caller's to drop.
    """
    found = False
    args = list(error.args)
    for index, value in enumerate(args):
        if isinstance(value, str) and any(s and s in value for s in secrets):
            args[index] = scrub(value, secrets)
            found = True
    if found:
        error.args = tuple(args)
    for name in _TEXT_ATTRIBUTES:
        value = getattr(error, name, None) if isinstance(error, MemcachierError) else None
        if isinstance(value, str) and any(s and s in value for s in secrets):
            setattr(error, name, scrub(value, secrets))
            found = True
    return found


def _summary(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > _MESSAGE_BODY_LIMIT:
        flat = flat[:_MESSAGE_BODY_LIMIT] + "…"
    return flat


# Response headers never copied into an error: they can carry a secret.
_SECRET_HEADERS = frozenset(
    {"set-cookie", "set-cookie2", "cookie", "authorization", "proxy-authorization"}
)


def public_headers(
    headers: Iterable[tuple[str, str]], secrets: Sequence[str] = ()
) -> Mapping[str, str]:
    """Response headers as a read-only mapping, without the secret-bearing ones,
    and with any of ``secrets`` a server echoed in another one cut out."""
    kept: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in _SECRET_HEADERS:
            continue
        value = scrub(value, secrets)
        kept[key] = f"{kept[key]}, {value}" if key in kept else value
    return MappingProxyType(kept)


def api_error(
    *,
    status_code: int,
    reason: str,
    method: str,
    url: str,
    text: str,
    retry_after: float | None,
    secrets: Sequence[str] = (),
    headers: Iterable[tuple[str, str]] = (),
) -> APIError:
    """The exception for a non-2xx answer, with a message a person can act on.

    ``text`` is scrubbed of ``secrets`` (the request's credentials) and cut
    to :data:`ERROR_BODY_LIMIT` characters before it is kept or quoted;
    ``headers`` are kept as :func:`public_headers`.
    """
    error = _api_error(
        status_code=status_code,
        # A reason phrase is the server's text too: it may echo the credentials.
        reason=scrub(reason, secrets),
        method=method,
        url=url,
        text=text,
        retry_after=retry_after,
        secrets=secrets,
    )
    error.headers = public_headers(headers, secrets)
    return error


def _api_error(
    *,
    status_code: int,
    reason: str,
    method: str,
    url: str,
    text: str,
    retry_after: float | None,
    secrets: Sequence[str],
) -> APIError:
    full = scrub(text, secrets)
    text = full[:ERROR_BODY_LIMIT]
    head = f"{status_code} {reason}".rstrip()
    message = f"{head} from {method} {url}"
    body = _summary(text)
    if body:
        message = f"{message}: {body}"
    if status_code >= 500:
        return ServerError(
            message,
            status_code=status_code,
            method=method,
            url=url,
            body=text,
            servers=servers_from_body(full),
            retry_after=retry_after,
        )
    cls = _BY_STATUS.get(status_code, APIError)
    if cls is RateLimitError:
        return RateLimitError(
            message,
            status_code=status_code,
            method=method,
            url=url,
            body=text,
            retry_after=retry_after,
        )
    return cls(message, status_code=status_code, method=method, url=url, body=text)
