"""AsyncAnalytics against respx: requests sent, bodies decoded, errors raised."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from memcachier_async import (
    APIError,
    AsyncAnalytics,
    AuthenticationError,
    Capabilities,
    Credential,
    NewCredential,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServerStats,
    Stats,
    TransportError,
    UnknownCredentialError,
)
from memcachier_async._stack import USER_AGENT

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
SAMPLES = Path(__file__).parent / "samples"
# These tests pin one request per call.
NO_RETRY = RetryPolicy.disabled()


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def client(**kwargs: Any) -> AsyncAnalytics:
    # No retries: these tests pin the one-request behaviour of each call.
    kwargs.setdefault("cache_id", 14)
    return AsyncAnalytics("user", "hunter2-password", retry=NO_RETRY, **kwargs)


# --- every endpoint: what is sent, what comes back -------------------------


async def test_login_sends_get_with_basic_auth_and_returns_cache_id(
    router: respx.MockRouter,
) -> None:
    """login is GET /login with Basic auth and our User-Agent, and returns the id."""
    route = router.get("/login").respond(json=sample("login.json"))
    async with AsyncAnalytics("user", "pw", retry=NO_RETRY) as api:
        assert await api.login() == 1561
        assert api.cache_id == 1561
    request = route.calls.last.request
    assert request.headers["authorization"] == httpx.BasicAuth("user", "pw")._auth_header
    assert request.headers["user-agent"] == USER_AGENT
    assert request.url == f"{BASE}/login"


async def test_stats_decodes_reference_example(router: respx.MockRouter) -> None:
    """stats is GET /<id>/stats and decodes every field, time as aware UTC."""
    route = router.get("/14/stats").respond(json=sample("stats_reference.json"))
    async with client() as api:
        stats = await api.stats()
    assert route.calls.last.request.method == "GET"
    assert isinstance(stats, Stats)
    assert list(stats) == ["a.b.c.totallyaserver.com:12345"]
    server = stats["a.b.c.totallyaserver.com:12345"]
    assert isinstance(server, ServerStats)
    assert server.auth_cmds == 19
    assert server.bytes_written == 22233
    assert server.limit_maxbytes == 28835840
    assert server.time == datetime(2017, 7, 21, 15, 31, 25, tzinfo=timezone.utc)
    assert dict(server.extra) == {}


async def test_stats_keeps_unknown_integer_fields_in_extra(router: respx.MockRouter) -> None:
    """A stat the SDK does not know yet is readable from ``extra``, read-only."""
    router.get("/14/stats").respond(json=sample("stats_two_servers.json"))
    async with client() as api:
        stats = await api.stats()
    assert len(stats) == 2
    assert stats["mc1.example.com:11211"].extra["uptime"] == 12345
    with pytest.raises(TypeError):
        stats["mc1.example.com:11211"].extra["uptime"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        stats["x"] = stats["mc1.example.com:11211"]  # type: ignore[index]


async def test_history_decodes_and_orders_by_timestamp(router: respx.MockRouter) -> None:
    """history parses digit-string ids and ms-string timestamps, oldest first."""
    router.get("/14/history").respond(json=sample("history.json"))
    async with client() as api:
        history = await api.history()
    assert [r.timestamp for r in history] == sorted(r.timestamp for r in history)
    first = history[0]
    assert first.memcachier_id == 11
    assert first.server == "a.b.c.totallyaserver.memcachier.com"
    assert first.timestamp == datetime(2017, 3, 28, 20, 5, 41, 96000, tzinfo=timezone.utc)
    assert first.stats.auth_cmds == 158
    assert history[-1].stats.auth_cmds == 160


async def test_flush_posts_and_returns_none(router: respx.MockRouter) -> None:
    """flush is POST /<id>/flush and returns None on an empty or "" body."""
    route = router.post("/14/flush").mock(
        side_effect=[httpx.Response(200, text=""), httpx.Response(200, json="")]
    )
    async with client() as api:
        assert await api.flush() is None
        assert await api.flush() is None
    assert route.call_count == 2


async def test_list_credentials(router: respx.MockRouter) -> None:
    """list_credentials is GET /<id>/credentials and returns Credential objects."""
    router.get("/14/credentials").respond(json=sample("credentials.json"))
    async with client() as api:
        creds = await api.list_credentials()
    assert [c.sasl_username for c in creds] == ["CRED_USERNAME", "789101"]
    assert creds[0] == Credential(
        cache_id=14,
        id=44,
        sasl_username="CRED_USERNAME",
        uuid=None,
        primary=True,
        flush_capability=False,
        write_capability=True,
        api_capability=True,
    )


async def test_unknown_credential_fields_are_ignored(router: respx.MockRouter) -> None:
    """A field the reference does not list does not break decoding."""
    router.get("/14/credentials").respond(json=[sample("credential_with_new_field.json")])
    async with client() as api:
        (cred,) = await api.list_credentials()
    assert cred.uuid == "8a2f"
    assert cred.capabilities == Capabilities(
        flush_capability=True, write_capability=False, api_capability=True
    )


async def test_create_credential_posts_without_body(router: respx.MockRouter) -> None:
    """create_credential is POST /<id>/credentials with no body; the password is kept."""
    route = router.post("/14/credentials").respond(json=sample("credential_created.json"))
    async with client() as api:
        new = await api.create_credential()
    assert route.calls.last.request.content == b""
    assert isinstance(new, NewCredential)
    assert isinstance(new, Credential)
    assert new.id is None
    assert new.sasl_password == "s3cr3t-Pa55w0rd-xyz"
    assert "s3cr3t" not in repr(new)
    assert "s3cr3t" not in str(new)


async def test_update_with_all_three_sends_one_patch(router: respx.MockRouter) -> None:
    """With all three capabilities given, update is one PATCH with JSON booleans."""
    listed = router.get("/14/credentials").respond(json=sample("credentials.json"))
    route = router.patch("/14/credentials/789101").respond(json=sample("capabilities.json"))
    async with client() as api:
        caps = await api.update_credential(
            "789101", flush_capability=False, write_capability=True, api_capability=True
        )
    assert caps == Capabilities(flush_capability=False, write_capability=True, api_capability=True)
    assert not listed.called
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "flush_capability": False,
        "write_capability": True,
        "api_capability": True,
    }


async def test_update_keeps_unspecified_capabilities(router: respx.MockRouter) -> None:
    """A capability left as None is sent with its current value, read by one list call."""
    listed = router.get("/14/credentials").respond(json=sample("credentials.json"))
    route = router.patch("/14/credentials/789101").respond(json=sample("capabilities.json"))
    creds = sample("credentials.json")
    assert creds[1]["write_capability"] is True
    async with client() as api:
        await api.update_credential("789101", flush_capability=True)
    assert listed.call_count == 1
    assert json.loads(route.calls.last.request.content) == {
        "flush_capability": True,
        "write_capability": True,
        "api_capability": True,
    }


async def test_update_accepts_a_credential_object(router: respx.MockRouter) -> None:
    """update/promote/delete take a Credential as well as a username."""
    router.get("/14/credentials").respond(json=sample("credentials.json"))
    patch = router.patch("/14/credentials/CRED_USERNAME").respond(json=sample("capabilities.json"))
    async with client() as api:
        (cred, _) = await api.list_credentials()
        await api.update_credential(cred, write_capability=False)
    assert json.loads(patch.calls.last.request.content)["write_capability"] is False


async def test_update_of_unknown_username_raises_before_patching(
    router: respx.MockRouter,
) -> None:
    """A partial update of a username the cache lacks raises UnknownCredentialError."""
    router.get("/14/credentials").respond(json=sample("credentials.json"))
    patch = router.patch(path__regex=r".*").respond(json=sample("capabilities.json"))
    async with client() as api:
        with pytest.raises(UnknownCredentialError, match="nobody"):
            await api.update_credential("nobody", api_capability=False)
    assert not patch.called


async def test_update_rejects_non_bool_capability(router: respx.MockRouter) -> None:
    """A string "false" is refused, not sent (it would mean true to some servers)."""
    async with client() as api:
        with pytest.raises(TypeError, match="flush_capability"):
            await api.update_credential("x", flush_capability="false")  # type: ignore[arg-type]


async def test_promote_posts_to_primary_path(router: respx.MockRouter) -> None:
    """promote is POST /<id>/credentials/primary/<username> and returns the credential."""
    route = router.post("/14/credentials/primary/CRED_USERNAME").respond(
        json=sample("credential_promoted.json")
    )
    async with client() as api:
        cred = await api.promote_credential("CRED_USERNAME")
    assert route.called
    assert cred.primary is True
    assert not isinstance(cred, NewCredential)


async def test_delete_uses_delete_on_primary_path(router: respx.MockRouter) -> None:
    """delete is DELETE /<id>/credentials/primary/<username> (never POST: that promotes)."""
    route = router.delete("/14/credentials/primary/789101").respond(200, text="")
    promote = router.post(path__regex=r".*").respond(200)
    async with client() as api:
        assert await api.delete_credential("789101") is None
    assert route.called
    assert not promote.called


# --- lazy login -------------------------------------------------------------


async def test_fifty_concurrent_first_calls_log_in_once(router: respx.MockRouter) -> None:
    """Without a cache_id, concurrent first calls share exactly one login request."""

    async def slow_login(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.01)
        return httpx.Response(200, json={"cache_id": 77})

    login = router.get("/login").mock(side_effect=slow_login)
    stats = router.get("/77/stats").respond(json=sample("stats_reference.json"))
    async with AsyncAnalytics("u", "p", retry=NO_RETRY) as api, anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(api.stats)
    assert login.call_count == 1
    assert stats.call_count == 50


async def test_given_cache_id_skips_login(router: respx.MockRouter) -> None:
    """A client given the cache id never calls /login."""
    login = router.get("/login").respond(json={"cache_id": 1})
    router.get("/14/stats").respond(json=sample("stats_reference.json"))
    async with client(cache_id=14) as api:
        await api.stats()
        assert await api.login() == 14
    assert not login.called


async def test_failed_login_is_not_cached(router: respx.MockRouter) -> None:
    """A login that fails is tried again by the next call."""
    router.get("/login").mock(
        side_effect=[
            httpx.Response(500, text="Server error"),
            httpx.Response(200, json={"cache_id": 3}),
        ]
    )
    async with AsyncAnalytics("u", "p", retry=NO_RETRY) as api:
        with pytest.raises(ServerError):
            await api.login()
        assert await api.login() == 3


# --- statuses and error bodies -------------------------------------------

ERROR_CASES = [
    (401, "Unauthorized", AuthenticationError, "Unauthorized"),
    (403, "You are not authorized to perform this action.", PermissionDeniedError, None),
    (403, '"You are not authorized to perform this action."', PermissionDeniedError, None),
    (404, "No cache found.", NotFoundError, None),
    (404, '"No cache found."', NotFoundError, None),
    (429, "slow down", RateLimitError, None),
    (500, "Server error", ServerError, None),
    (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", ServerError, None),
    (503, "<html>Service Unavailable</html>", ServerError, None),
    (504, "<html>Gateway Timeout</html>", ServerError, None),
    (400, "bad request", APIError, None),
    (409, "conflict", APIError, None),
    (302, "", APIError, None),
]


@pytest.mark.parametrize(("status", "body", "exc_class", "_"), ERROR_CASES)
async def test_status_maps_to_exception(
    router: respx.MockRouter, status: int, body: str, exc_class: type[APIError], _: object
) -> None:
    """Each status raises its exception class with status, method, URL and body text."""
    router.get("/14/stats").respond(status, text=body)
    async with client() as api:
        with pytest.raises(exc_class) as info:
            await api.stats()
    error = info.value
    assert type(error) is exc_class
    assert error.status_code == status
    assert error.method == "GET"
    assert error.url == f"{BASE}/14/stats"
    text = json.loads(body) if body.startswith('"') else body
    assert error.body == text
    assert str(status) in str(error)
    if text:
        assert " ".join(text.split())[:50] in str(error)


async def test_json_string_and_plain_bodies_give_same_message(router: respx.MockRouter) -> None:
    """An error body sent as a JSON string reads the same as plain text."""
    route = router.get("/14/stats").mock(
        side_effect=[
            httpx.Response(403, text="You are not authorized to perform this action."),
            httpx.Response(403, json="You are not authorized to perform this action."),
        ]
    )
    messages = []
    async with client() as api:
        for _ in range(2):
            with pytest.raises(PermissionDeniedError) as info:
                await api.stats()
            messages.append(str(info.value))
    assert route.call_count == 2
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    ("body", "servers"),
    [
        (
            "Server error: a.b.c.example.com:1234,d.e.f.example.com:5678",
            ("a.b.c.example.com:1234", "d.e.f.example.com:5678"),
        ),
        ('"Server error: a:1, b:2,"', ("a:1", "b:2")),
        ("Server error: only.one:11211", ("only.one:11211",)),
        ("Server error", ()),
        ("<html>oops</html>", ()),
    ],
)
async def test_server_error_lists_servers(
    router: respx.MockRouter, body: str, servers: tuple[str, ...]
) -> None:
    """ServerError.servers holds the host:port list of a partial failure."""
    router.post("/14/flush").respond(500, text=body)
    async with client() as api:
        with pytest.raises(ServerError) as info:
            await api.flush()
    assert info.value.servers == servers


@pytest.mark.parametrize(
    ("header", "expected"),
    # RFC 9110's delay-seconds is a whole number: "0.5" is not one.
    [("7", 7.0), ("0.5", None), (None, None), ("soon", None)],
)
async def test_rate_limit_error_carries_retry_after(
    router: respx.MockRouter, header: str | None, expected: float | None
) -> None:
    """RateLimitError.retry_after is read from the Retry-After header."""
    headers = {"Retry-After": header} if header is not None else {}
    router.get("/14/stats").respond(429, text="Too Many Requests", headers=headers)
    async with client() as api:
        with pytest.raises(RateLimitError) as info:
            await api.stats()
    assert info.value.retry_after == expected


async def test_transport_failure_chains_httpx_error(router: respx.MockRouter) -> None:
    """A connection failure raises TransportError with the httpx exception as cause."""
    router.get("/14/stats").mock(side_effect=httpx.ConnectError("refused"))
    async with client() as api:
        with pytest.raises(TransportError) as info:
            await api.stats()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "/14/stats" in str(info.value)


# --- usernames in paths ---------------------------------------------------


@pytest.mark.parametrize(
    ("username", "segment"),
    [
        ("../flush", "..%2Fflush"),
        ("a/b", "a%2Fb"),
        ("%2e%2e", "%252e%252e"),
        ("x?y", "x%3Fy"),
        ("x#y", "x%23y"),
        ("é", "%C3%A9"),
        ("with space", "with%20space"),
    ],
)
async def test_hostile_usernames_stay_one_path_segment(
    router: respx.MockRouter, username: str, segment: str
) -> None:
    """A username is escaped as exactly one segment of the promote path."""
    route = router.post(path__regex=r".*").respond(json=sample("credential_promoted.json"))
    async with client() as api:
        await api.promote_credential(username)
    raw = route.calls.last.request.url.raw_path.decode()
    assert raw == f"/api/v1/14/credentials/primary/{segment}"


@pytest.mark.parametrize("username", ["", ".", "..", "a\nb", "a\x00b"])
async def test_unroutable_usernames_are_refused(router: respx.MockRouter, username: str) -> None:
    """Names that no escaping keeps in place are refused with ValueError, unsent."""
    route = router.route().respond(200)
    async with client() as api:
        for call in (api.promote_credential, api.delete_credential):
            with pytest.raises(ValueError, match="username"):
                await call(username)
        with pytest.raises(ValueError, match="username"):
            await api.update_credential(
                username, flush_capability=True, write_capability=True, api_capability=True
            )
    assert not route.called


async def test_credential_argument_of_wrong_type_is_refused() -> None:
    """Passing something that is neither str nor Credential is a TypeError."""
    async with client() as api:
        with pytest.raises(TypeError, match="username or a Credential"):
            await api.delete_credential(42)  # type: ignore[arg-type]


# --- configuration --------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/v1",
        "http://127.5.6.7/api/v1",
        "http://localhost:9000/api/v1",
        "http://[::1]:8080/api/v1",
        "https://analytics.memcachier.com/api/v1",
        "https://example.test/api/v1/",
    ],
)
def test_allowed_base_urls(url: str) -> None:
    """https anywhere and plain http to loopback are accepted."""
    api = AsyncAnalytics("u", "p", base_url=url)
    assert api.base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://analytics.memcachier.com/api/v1",
        "http://10.0.0.1/api/v1",
        "http://[2001:db8::1]/api/v1",
        "http://localhost.evil.example/api/v1",
        "ftp://127.0.0.1/x",
        "https://example.test/api/v1?x=1",
    ],
)
def test_refused_base_urls(url: str) -> None:
    """Plain http beyond loopback (Basic auth in clear text) is refused."""
    with pytest.raises(ValueError, match=r"base_url|http"):
        AsyncAnalytics("u", "p", base_url=url)


async def test_requests_go_to_custom_loopback_base_url() -> None:
    """Calls are sent under the given base URL."""
    with respx.mock(base_url="http://127.0.0.1:8080/api/v1") as router:
        route = router.get("/3/stats").respond(json=sample("stats_reference.json"))
        async with AsyncAnalytics(
            "u", "p", cache_id=3, base_url="http://127.0.0.1:8080/api/v1", retry=NO_RETRY
        ) as api:
            await api.stats()
    assert route.called


def test_from_env_reads_conventional_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env reads MEMCACHIER_USERNAME/PASSWORD; keyword overrides win."""
    monkeypatch.setenv("MEMCACHIER_USERNAME", "env-user")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "env-pass")
    api = AsyncAnalytics.from_env(cache_id=9)
    assert api.username == "env-user"
    assert api.cache_id == 9
    assert AsyncAnalytics.from_env(username="other").username == "other"


def test_from_env_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing variable is a clear ValueError naming it."""
    monkeypatch.setenv("MEMCACHIER_USERNAME", "env-user")
    monkeypatch.delenv("MEMCACHIER_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="MEMCACHIER_PASSWORD"):
        AsyncAnalytics.from_env()


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("", "p"), {}, "username"),
        (("u", "p"), {"cache_id": -1}, "cache_id"),
        (("u", "p"), {"cache_id": "14"}, "cache_id"),
        (("u", "p"), {"http_client": object(), "transport": object()}, "not both"),
    ],
)
def test_bad_constructor_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    """Bad configuration fails at construction with a ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=match):
        AsyncAnalytics(*args, **kwargs)


def test_non_string_credentials_are_type_errors() -> None:
    """A username or password that is not a str is a TypeError."""
    with pytest.raises(TypeError):
        AsyncAnalytics("u", None)  # type: ignore[arg-type]


async def test_user_http_client_is_used_and_not_closed(router: respx.MockRouter) -> None:
    """A user-given httpx.AsyncClient sends the calls and stays open after aclose."""
    router.get("/14/stats").respond(json=sample("stats_reference.json"))
    async with httpx.AsyncClient() as http:
        async with AsyncAnalytics("u", "p", cache_id=14, http_client=http) as api:
            assert api.http_client is http
            await api.stats()
        assert not http.is_closed


async def test_owned_client_is_closed() -> None:
    """The client AsyncAnalytics creates is closed by aclose / the context manager."""
    async with AsyncAnalytics("u", "p") as api:
        pass
    assert api.http_client.is_closed


async def test_transport_argument_is_used() -> None:
    """A given httpx transport carries the requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=sample("login.json"))

    async with AsyncAnalytics(
        "u", "p", transport=httpx.MockTransport(handler), retry=NO_RETRY
    ) as api:
        assert await api.login() == 1561
    assert [r.url.path for r in seen] == ["/api/v1/login"]


def test_client_repr_hides_password() -> None:
    """repr(AsyncAnalytics) names the user and never the password."""
    api = AsyncAnalytics("someone", "hunter2-password", cache_id=5)
    assert "someone" in repr(api)
    assert "hunter2" not in repr(api)
