"""The emulator's HTTP surface as pure functions: routes, answers, fault pages.

No I/O here. :func:`route` maps a method and a raw (percent-encoded) path to
an endpoint; the ``*_reply`` helpers build the answers the service sends.
Both ways of serving (the in-process httpx transport and uvicorn) turn a
:class:`Reply` or :class:`Drop` into bytes on their side.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol
from urllib.parse import unquote

import attrs

__all__ = [
    "API_PREFIX",
    "NOT_AUTHORIZED",
    "NO_CACHE",
    "NO_CREDENTIAL",
    "SERVER_ERROR",
    "Drop",
    "Reply",
    "RequestHandler",
    "Route",
    "json_reply",
    "route",
    "text_reply",
]

API_PREFIX = "/api/v1"

NOT_AUTHORIZED = "You are not authorized to perform this action."
NO_CACHE = "No cache found."
SERVER_ERROR = "Server error"
# Not in the reference (see the emulator's documented choices).
NO_CREDENTIAL = "No credential found."
UNAUTHORIZED = "Invalid username or password."
BAD_CAPABILITIES = (
    "Invalid body: expected a JSON object of flush_capability, write_capability "
    "and api_capability, each true or false."
)

_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"


@attrs.frozen
class Reply:
    """An HTTP answer."""

    status: int
    body: bytes = b""
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Drop:
    """No answer: the connection is closed.

    ``reset``: reset (TCP RST) before the call was carried out; otherwise
    closed after carrying it out, before answering.
    """

    reset: bool


@attrs.frozen
class Route:
    """A request matched to an endpoint."""

    endpoint: str
    cache_id: int | None = None
    username: str | None = None


def text_reply(status: int, text: str, *, as_json: bool = False) -> Reply:
    """An error answer: plain text, or (``as_json``) the text as a JSON string."""
    if as_json:
        return Reply(status, json.dumps(text).encode(), _JSON)
    return Reply(status, text.encode(), _TEXT)


def json_reply(value: Any) -> Reply:
    """A ``200`` with ``value`` as strict JSON."""
    return Reply(200, json.dumps(value, separators=(",", ":")).encode(), _JSON)


#: What a flush or a delete answers: the JSON empty string, as the reference shows.
EMPTY_REPLY = Reply(200, b'""', _JSON)


def not_found() -> Reply:
    return Reply(404, b"Not Found", _TEXT)


def _not_allowed(allowed: tuple[str, ...]) -> Reply:
    return Reply(405, b"Method Not Allowed", _TEXT, (("Allow", ", ".join(allowed)),))


# (segments after the cache id) -> {method: endpoint}; "*" is a username.
_TABLE: dict[tuple[str, ...], dict[str, str]] = {
    ("stats",): {"GET": "stats"},
    ("history",): {"GET": "history"},
    ("flush",): {"POST": "flush"},
    ("credentials",): {"GET": "list_credentials", "POST": "create_credential"},
    ("credentials", "*"): {"PATCH": "update_credential"},
    ("credentials", "primary", "*"): {
        "POST": "promote_credential",
        "DELETE": "delete_credential",
    },
}


def route(method: str, raw_path: str) -> Route | Reply:
    """The endpoint of ``method raw_path``, or a 404/405 answer.

    Routing splits the raw path before percent-decoding, so an escaped
    username (``a%2Fb``) stays one segment, as the service treats it.
    """
    path = raw_path.partition("?")[0]
    if not path.startswith(API_PREFIX + "/"):
        return not_found()
    try:
        segments = [unquote(s, errors="strict") for s in path[len(API_PREFIX) + 1 :].split("/")]
    except UnicodeDecodeError:
        return not_found()
    if any(s == "" for s in segments):
        return not_found()
    if segments == ["login"]:
        return Route("login") if method == "GET" else _not_allowed(("GET",))
    head, *rest = segments
    if not (head.isascii() and head.isdigit()):
        return not_found()
    username = None
    if len(rest) >= 2 and rest[0] == "credentials":
        username = rest[-1]
        rest[-1] = "*"
    methods = _TABLE.get(tuple(rest))
    if methods is None:
        return not_found()
    endpoint = methods.get(method)
    if endpoint is None:
        return _not_allowed(tuple(methods))
    return Route(endpoint, cache_id=int(head), username=username)


# --- what proxies and a failing service send --------------------------------

_PAGES = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def html_error(status: int) -> Reply:
    """A proxy's HTML error page (nginx's, as in front of the service)."""
    title = f"{status} {_PAGES[status]}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Reply(status, page.encode(), _HTML)


def rate_limited(retry_after: float) -> Reply:
    """``429`` with a ``Retry-After`` in whole seconds (RFC 9110's delay-seconds), rounded up."""
    value = str(math.ceil(retry_after))
    return Reply(429, b"Too Many Requests", _TEXT, (("Retry-After", value),))


# Success bodies that are not what the endpoint returns: the kinds of damage
# a client must report as a decode error rather than crash on.
_MALFORMED: tuple[bytes, ...] = (
    b'{"cache_id": 14,',  # cut off
    b"<html><body>Maintenance</body></html>",  # not JSON
    b'"ok"',  # JSON, but not the shape
    b"[1, 2, 3]",
    b'{"cache_id": "x", "server": null, "stats": [], "timestamp": "soon"}',
)


def malformed(pick: float) -> Reply:
    """A ``200`` with one of the damaged bodies, chosen by ``pick`` in [0, 1)."""
    return Reply(200, _MALFORMED[int(pick * len(_MALFORMED))], _JSON)


class RequestHandler(Protocol):
    """What serves the API: the emulator's core, as seen by the two ways of serving it.

    The in-process transport and the uvicorn app depend on this, not on the
    core, so the core can build them without an import circle.
    """

    @property
    def running(self) -> bool: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    async def handle(
        self, method: str, raw_path: str, authorization: str | None, body: bytes
    ) -> Reply | Drop: ...
