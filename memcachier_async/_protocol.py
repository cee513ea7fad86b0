"""The API as data, and the pure functions around it. No I/O here.

Each endpoint is an :class:`Endpoint`: method, path template, what a
success body decodes to, and whether repeating the call is safe.
:func:`build_request` turns a call into a :class:`RequestSpec`;
:func:`parse_response` turns (status, headers, body) into a model or raises.
``AsyncAnalytics`` only sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import attrs

from ._convert import _loads, decode, sort_history
from ._errors import DecodeError, api_error
from ._models import Capabilities, Credential, HistoryRecord, NewCredential, Stats
from ._transports.rules import (
    ENDPOINT_EXTENSION,
    IDEMPOTENT_EXTENSION,
    MAX_RESPONSE_SIZE_EXTENSION,
    parse_retry_after,
)

__all__ = [
    "ENDPOINTS",
    "ENDPOINT_EXTENSION",
    "IDEMPOTENT_EXTENSION",
    "MAX_RESPONSE_SIZE_EXTENSION",
    "Endpoint",
    "RequestSpec",
    "build_request",
    "custom_endpoint",
    "parse_response",
    "parse_retry_after",
]

T = TypeVar("T")


@attrs.frozen
class _Login:
    cache_id: int


def _nothing(body: bytes, endpoint: str) -> None:
    # A call that returns nothing succeeded on a 2xx, whatever the body says:
    # the API sends "" or an empty body, and failing a flush that happened
    # over a stray body would mislead the caller.
    return None


def _decoder(cls: Any, after: Callable[[Any], Any] | None = None) -> Callable[[bytes, str], Any]:
    def run(body: bytes, endpoint: str) -> Any:
        value = decode(body, cls, endpoint)
        return after(value) if after is not None else value

    return run


@attrs.frozen
class Endpoint(Generic[T]):
    """One call of the API.

    ``path`` is a template with ``{cache_id}`` and ``{username}``; the
    username is escaped as one path segment. ``idempotent`` says whether a
    call that may have reached the server can be sent again.
    """

    name: str
    method: str
    path: str
    decode: Callable[[bytes, str], T] = attrs.field(repr=False)
    idempotent: bool = True
    json_body: bool = False
    #: A path given by the caller (``request()``): only ``{cache_id}`` is filled
    #: in, and a body is sent only when there is one.
    raw_path: bool = False

    @property
    def needs_cache_id(self) -> bool:
        return "{cache_id}" in self.path


LOGIN: Endpoint[int] = Endpoint(
    "login", "GET", "/login", _decoder(_Login, lambda login: login.cache_id)
)
STATS: Endpoint[Stats] = Endpoint("stats", "GET", "/{cache_id}/stats", _decoder(Stats))
HISTORY: Endpoint[list[HistoryRecord]] = Endpoint(
    "history", "GET", "/{cache_id}/history", _decoder(list[HistoryRecord], sort_history)
)
FLUSH: Endpoint[None] = Endpoint("flush", "POST", "/{cache_id}/flush", _nothing)
LIST_CREDENTIALS: Endpoint[list[Credential]] = Endpoint(
    "list_credentials", "GET", "/{cache_id}/credentials", _decoder(list[Credential])
)
# Not idempotent: each call creates one more credential.
CREATE_CREDENTIAL: Endpoint[NewCredential] = Endpoint(
    "create_credential",
    "POST",
    "/{cache_id}/credentials",
    _decoder(NewCredential),
    idempotent=False,
)
UPDATE_CREDENTIAL: Endpoint[Capabilities] = Endpoint(
    "update_credential",
    "PATCH",
    "/{cache_id}/credentials/{username}",
    _decoder(Capabilities),
    json_body=True,
)
PROMOTE_CREDENTIAL: Endpoint[Credential] = Endpoint(
    "promote_credential",
    "POST",
    "/{cache_id}/credentials/primary/{username}",
    _decoder(Credential),
)
DELETE_CREDENTIAL: Endpoint[None] = Endpoint(
    "delete_credential", "DELETE", "/{cache_id}/credentials/primary/{username}", _nothing
)

ENDPOINTS: Mapping[str, Endpoint[Any]] = {
    e.name: e
    for e in (
        LOGIN,
        STATS,
        HISTORY,
        FLUSH,
        LIST_CREDENTIALS,
        CREATE_CREDENTIAL,
        UPDATE_CREDENTIAL,
        PROMOTE_CREDENTIAL,
        DELETE_CREDENTIAL,
    )
}


# --- any path: AsyncAnalytics.request() -------------------------------------------

# Deeper JSON than this is not an answer of this API: refused before anyone walks it.
MAX_JSON_DEPTH = 64
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _json_depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def _any_json(body: bytes, endpoint: str) -> Any:
    """Any JSON value (``None`` for an empty body), nesting bounded."""
    if not body.strip():
        return None
    try:
        value = _loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(
            f"unexpected {endpoint} response: the body is not JSON ({exc.__class__.__name__})",
            endpoint=endpoint,
        ) from None
    if not _json_depth_ok(value, MAX_JSON_DEPTH):
        raise DecodeError(
            f"unexpected {endpoint} response: JSON nested deeper than {MAX_JSON_DEPTH}",
            endpoint=endpoint,
        )
    return value


def custom_endpoint(method: str, path: str) -> Endpoint[Any]:
    """The endpoint of ``request(method, path)``: any JSON back, idempotent by method.

    ``path`` starts with ``/`` and stays under the base URL: no ``.`` or
    ``..`` segment, no ``//``, backslash, fragment, whitespace or control
    character. ``{cache_id}`` in it is filled in after login.
    """
    if not isinstance(method, str) or not isinstance(path, str):
        raise TypeError("method and path must be str")
    method = method.upper()
    if not method or not _METHOD_CHARS.issuperset(method):
        raise ValueError(f"invalid HTTP method: {method!r}")
    route = path.partition("?")[0]
    if not route.startswith("/") or route.startswith("//"):
        raise ValueError(f"path must start with a single '/': {path!r}")
    if any(c in path for c in "#\\") or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError(f"path has a character it cannot have: {path!r}")
    if any(segment in (".", "..") for segment in route.split("/")):
        raise ValueError(f"path must not have '.' or '..' segments: {path!r}")
    return Endpoint(
        "request", method, path, _any_json, idempotent=method in _SAFE_METHODS, raw_path=True
    )


@attrs.frozen
class RequestSpec:
    """Everything needed to send one call, independent of the HTTP client."""

    method: str
    url: str
    content: bytes | None
    headers: Mapping[str, str]
    extensions: Mapping[str, Any]


def path_segment(username: str) -> str:
    """``username`` escaped as exactly one path segment.

    ``/``, ``?``, ``#`` and ``%`` are percent-encoded, so ``../flush`` or
    ``a/b`` cannot reach another route. ``.`` and ``..`` (which URL
    normalisation removes), the empty name and names with control
    characters are refused.
    """
    if not isinstance(username, str):
        raise TypeError(f"a username must be a str, not {type(username).__name__}")
    if username in ("", ".", ".."):
        raise ValueError(f"invalid credential username: {username!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in username):
        raise ValueError("invalid credential username: it contains control characters")
    return quote(username, safe="")


_JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}
_NO_HEADERS: Mapping[str, str] = {}


def build_request(
    endpoint: Endpoint[Any],
    base_url: str,
    *,
    cache_id: int | None = None,
    username: str | None = None,
    body: Any = None,
    max_response_size: int | None,
) -> RequestSpec:
    """The request for one call of ``endpoint``.

    ``max_response_size`` bounds the success body (``None``: no bound); the
    transports read it from the request's extensions.
    """
    if endpoint.raw_path:
        return _raw_request(endpoint, base_url, cache_id, body, max_response_size)
    params: dict[str, object] = {}
    if endpoint.needs_cache_id:
        if cache_id is None:
            raise ValueError(f"{endpoint.name} needs a cache id")
        params["cache_id"] = cache_id
    if "{username}" in endpoint.path:
        if username is None:
            raise ValueError(f"{endpoint.name} needs a credential username")
        params["username"] = path_segment(username)
    content = None
    headers = _NO_HEADERS
    if endpoint.json_body:
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = _JSON_HEADERS
    return RequestSpec(
        method=endpoint.method,
        url=base_url + endpoint.path.format_map(params),
        content=content,
        headers=headers,
        # Read-only: the spec of a call without a body is reused.
        extensions=MappingProxyType(
            {
                ENDPOINT_EXTENSION: endpoint.name,
                IDEMPOTENT_EXTENSION: endpoint.idempotent,
                MAX_RESPONSE_SIZE_EXTENSION: max_response_size,
            }
        ),
    )


def _raw_request(
    endpoint: Endpoint[Any],
    base_url: str,
    cache_id: int | None,
    body: Any,
    max_response_size: int | None,
) -> RequestSpec:
    path = endpoint.path
    if endpoint.needs_cache_id:
        if cache_id is None:
            raise ValueError("this path needs a cache id")
        path = path.replace("{cache_id}", str(cache_id))
    content = None
    headers = _NO_HEADERS
    if body is not None:
        content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        headers = _JSON_HEADERS
    return RequestSpec(
        method=endpoint.method,
        url=base_url + path,
        content=content,
        headers=headers,
        # Read-only: the spec of a call without a body is reused.
        extensions=MappingProxyType(
            {
                ENDPOINT_EXTENSION: endpoint.name,
                IDEMPOTENT_EXTENSION: endpoint.idempotent,
                MAX_RESPONSE_SIZE_EXTENSION: max_response_size,
            }
        ),
    )


def error_text(body: bytes) -> str:
    """An error body as text: plain text, or the string inside a JSON string."""
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, str):
            return value.strip()
    return text


def parse_response(
    endpoint: Endpoint[T],
    *,
    status_code: int,
    reason: str,
    headers: Mapping[str, str],
    body: bytes,
    method: str,
    url: str,
    secrets: Sequence[str] = (),
) -> T:
    """The model a success body holds, or the exception for any other status.

    ``secrets`` (the request's credentials) are scrubbed from an error body.
    """
    if 200 <= status_code < 300:
        return endpoint.decode(body, endpoint.name)
    raise api_error(
        status_code=status_code,
        reason=reason,
        method=method,
        url=url,
        text=error_text(body),
        retry_after=parse_retry_after(headers.get("retry-after")),
        secrets=secrets,
        headers=_header_pairs(headers),
    )


def _header_pairs(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    # Every value of a repeated header (httpx.Headers keeps them all).
    multi = getattr(headers, "multi_items", None)
    return list(multi()) if callable(multi) else list(headers.items())
