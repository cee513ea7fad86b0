"""Echoed credentials never leave the SDK as text, whoever echoed them and wherever.

A loopback server answers with the password or the Basic token planted in
one place each: the reason phrase, a response header, a WWW-Authenticate
realm, a malformed header line (which the engine's parser quotes in its
error), the error body, the key of a success body's object (which a decode
error's field path quotes), small and big. On both engines, neither secret may appear in the
exception's str or repr, its whole traceback (every chained cause), the
log records at DEBUG, or ``APIError.headers``.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
from collections.abc import Callable

import pytest
from _limits_server import LoopbackServer, head

from memcachier_async import APIError, AsyncAnalytics, DecodeError, MemcachierError, RetryPolicy
from memcachier_async._convert import THREAD_FROM

pytestmark = pytest.mark.anyio

USER, PASSWORD = "scrub-user", "pw-Zq81-secret"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, TOKEN, f"{USER}:{PASSWORD}")


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("aiohttp runs on asyncio only")
    return str(request.param)


def answer(raw: bytes) -> Callable[[bytes], list[bytes]]:
    return lambda request: [raw]


BODY = b"denied"
CASES = {
    "reason-phrase": head(f"401 Nope {PASSWORD} Basic {TOKEN}", f"Content-Length: {len(BODY)}")
    + BODY,
    "echo-header": head(
        "403 Forbidden", f"X-Echo-Authorization: Basic {TOKEN}", f"Content-Length: {len(BODY)}"
    )
    + BODY,
    "realm": head(
        "401 Unauthorized",
        f'WWW-Authenticate: Basic realm="{USER}:{PASSWORD}"',
        f"Content-Length: {len(BODY)}",
    )
    + BODY,
    "body": head("500 Internal Server Error", "Content-Length: 60")
    + f"you sent {TOKEN} and {PASSWORD}".ljust(60).encode(),
    "malformed-header-line": b"HTTP/1.1 200 OK\r\nX-Broken "
    + PASSWORD.encode()
    + b" "
    + TOKEN.encode()
    + b"\r\nContent-Length: 2\r\n\r\n[]",
}
# A success body whose object key echoes the credentials: the decode error's
# field path quotes the key. Small bodies are decoded on the loop, big ones
# (from 1 MiB, padded with JSON whitespace) in a worker thread.
_KEYED = json.dumps({f"{USER}:{PASSWORD} Basic {TOKEN}": 5}).encode()
CASES["json-key"] = head("200 OK", f"Content-Length: {len(_KEYED)}") + _KEYED
_BIG = _KEYED + b" " * THREAD_FROM
CASES["json-key-big-body"] = head("200 OK", f"Content-Length: {len(_BIG)}") + _BIG
#: The call each case makes: stats, whose body is an object keyed by server.
CALLS = {"json-key": "stats", "json-key-big-body": "stats"}


@pytest.mark.parametrize("case", list(CASES))
async def test_no_echoed_credential_leaves_as_text(
    case: str, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The password and the token planted in {case}: in no text the call leaves behind."""
    with LoopbackServer(answer(CASES[case])) as server:
        async with AsyncAnalytics(
            USER,
            PASSWORD,
            cache_id=1,
            base_url=server.url(),
            http_backend=backend,  # type: ignore[arg-type]
            retry=RetryPolicy.disabled(),
        ) as api:
            with (
                caplog.at_level(logging.DEBUG, logger="memcachier_async"),
                pytest.raises(MemcachierError) as caught,
            ):
                await getattr(api, CALLS.get(case, "list_credentials"))()
    error = caught.value
    texts = [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text]
    if isinstance(error, DecodeError):
        texts += [str(error.path), error.message]
    if isinstance(error, APIError):
        texts += [f"{k}: {v}" for k, v in error.headers.items()]
        texts.append(error.body)
    for secret in SECRETS:
        for text in texts:
            assert secret not in text, (case, text[:300])


def test_scrub_error_cuts_every_text_of_an_exception() -> None:
    """The one scrubber: an exception's args and its message, path and body attributes;
    False (and nothing changed) when no secret is there."""
    from memcachier_async._errors import scrub_error

    error = DecodeError(f"bad key {TOKEN}", endpoint="stats", path=f"$['{PASSWORD}']")
    assert scrub_error(error, SECRETS)
    assert TOKEN not in str(error)
    assert TOKEN not in error.message
    assert error.path == "$['[REDACTED]']"
    plain = ValueError("no secret here", 3)
    assert not scrub_error(plain, SECRETS)
    assert plain.args == ("no secret here", 3)
    foreign = OSError(f"echo {PASSWORD}")
    assert scrub_error(foreign, SECRETS)
    assert PASSWORD not in str(foreign)
