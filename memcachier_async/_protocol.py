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
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import attrs

from ._convert import decode, sort_history
from ._errors import api_error
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
        extensions={
            ENDPOINT_EXTENSION: endpoint.name,
            IDEMPOTENT_EXTENSION: endpoint.idempotent,
            MAX_RESPONSE_SIZE_EXTENSION: max_response_size,
        },
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
    )
