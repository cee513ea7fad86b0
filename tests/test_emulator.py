"""The emulator's contract: every endpoint and status, over the in-process transport.

These tests speak raw HTTP (httpx, no SDK) so they pin exactly what the
emulator sends: paths, methods, statuses, bodies and headers.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from memcachier_async import DecodeError
from memcachier_async._protocol import ENDPOINTS
from memcachier_async.testing import STATS_FIELDS, Emulator, FaultPlan, Faults, SimulatedServer

BASE = "https://analytics.memcachier.com/api/v1"
NOT_AUTHORIZED = "You are not authorized to perform this action."
ALL_CAPS = {"flush_capability": True, "write_capability": True, "api_capability": True}

# endpoint -> (method, path template, JSON body)
CALLS: dict[str, tuple[str, str, Any]] = {
    "login": ("GET", "/login", None),
    "stats": ("GET", "/{id}/stats", None),
    "history": ("GET", "/{id}/history", None),
    "flush": ("POST", "/{id}/flush", None),
    "list_credentials": ("GET", "/{id}/credentials", None),
    "create_credential": ("POST", "/{id}/credentials", None),
    "update_credential": ("PATCH", "/{id}/credentials/{user}", ALL_CAPS),
    "promote_credential": ("POST", "/{id}/credentials/primary/{user}", None),
    "delete_credential": ("DELETE", "/{id}/credentials/primary/{user}", None),
}
WITH_CACHE_ID = [name for name in CALLS if name != "login"]
WITH_BODY = [name for name in CALLS if name not in ("flush", "delete_credential")]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = Emulator()
    emulator.cache.add_credential("SECOND", "second-password")
    emulator.drive_traffic(300)
    emulator.sample()
    yield emulator
    emulator.close()


async def call(
    emu: Emulator,
    name: str,
    *,
    auth: tuple[str, str] | None = None,
    cache_id: int | None = None,
    user: str = "SECOND",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    method, template, default_body = CALLS[name]
    path = template.format(id=cache_id or emu.cache.cache_id, user=user)
    payload = default_body if body is None else body
    async with httpx.AsyncClient(
        transport=emu.transport(),
        base_url=BASE,
        auth=auth or (emu.username, emu.password),
    ) as client:
        return await client.request(
            method,
            BASE + path,
            content=None if payload is None else json.dumps(payload).encode(),
            headers=headers,
        )


# --- success answers ----------------------------------------------------------


@pytest.mark.anyio
async def test_login_returns_the_cache_id(emu: Emulator) -> None:
    """GET /login answers 200 {"cache_id": <int>}."""
    response = await call(emu, "login")
    assert response.status_code == 200
    assert response.json() == {"cache_id": 1561}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_stats_has_every_field_of_every_server(emu: Emulator) -> None:
    """GET /<id>/stats maps each host:port to an object of the 31 integer fields."""
    response = await call(emu, "stats")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [s.name for s in emu.cache.servers]
    for stats in body.values():
        assert set(stats) == set(STATS_FIELDS)
        assert all(type(v) is int for v in stats.values())
        assert stats["cmd_get"] == stats["get_hits"] + stats["get_misses"]
    assert sum(s["cmd_get"] for s in body.values()) > 0


@pytest.mark.anyio
async def test_history_records_have_the_wire_shape(emu: Emulator) -> None:
    """GET /<id>/history: one record per server and sample; digit-string id, ms-string time."""
    emu.sample(now=2_000_000_000.5)
    response = await call(emu, "history")
    assert response.status_code == 200
    records = response.json()
    assert len(records) == 2 * len(emu.cache.servers)
    last = records[-1]
    assert set(last) == {"memcachier_id", "server", "stats", "timestamp"}
    assert last["memcachier_id"] == "11"
    assert last["timestamp"] == "2000000000500"
    assert last["stats"]["time"] == 2_000_000_000
    assert {r["server"] for r in records} == {s.name for s in emu.cache.servers}


@pytest.mark.anyio
async def test_flush_answers_an_empty_string_and_flushes_every_server(emu: Emulator) -> None:
    """POST /<id>/flush answers 200 "" and runs flush on every server."""
    response = await call(emu, "flush")
    assert (response.status_code, response.text) == (200, '""')
    stats = (await call(emu, "stats")).json()
    assert [s["cmd_flush"] for s in stats.values()] == [1, 1, 1]


@pytest.mark.anyio
async def test_list_credentials(emu: Emulator) -> None:
    """GET /<id>/credentials lists every credential, with int ids and no passwords."""
    response = await call(emu, "list_credentials")
    assert response.status_code == 200
    listed = response.json()
    assert [c["sasl_username"] for c in listed] == [emu.username, "SECOND"]
    assert listed[0] == {
        "cache_id": 1561,
        "id": 40,
        "sasl_username": emu.username,
        "uuid": None,
        "primary": True,
        **ALL_CAPS,
    }
    assert "second-password" not in response.text


@pytest.mark.anyio
async def test_create_credential_returns_the_password_once(emu: Emulator) -> None:
    """POST /<id>/credentials creates a non-primary credential; the answer has its password
    and a null id, and the password then authenticates."""
    response = await call(emu, "create_credential")
    assert response.status_code == 200
    created = response.json()
    assert created["id"] is None
    assert created["primary"] is False
    assert {k: created[k] for k in ALL_CAPS} == ALL_CAPS
    assert len(emu.cache.credentials) == 3
    login = await call(emu, "login", auth=(created["sasl_username"], created["sasl_password"]))
    assert login.status_code == 200


@pytest.mark.anyio
async def test_update_credential_sets_the_capabilities(emu: Emulator) -> None:
    """PATCH /<id>/credentials/<user> sets the three capabilities and returns them."""
    wanted = {"flush_capability": False, "write_capability": True, "api_capability": False}
    response = await call(emu, "update_credential", body=wanted)
    assert response.status_code == 200
    assert response.json() == wanted
    stored = emu.cache.credential("SECOND")
    assert (stored.flush_capability, stored.api_capability) == (False, False)


@pytest.mark.anyio
async def test_update_sets_an_omitted_capability_to_false(emu: Emulator) -> None:
    """An update body without a capability revokes it (the newer revision's rule)."""
    response = await call(emu, "update_credential", body={"api_capability": True})
    assert response.json() == {
        "flush_capability": False,
        "write_capability": False,
        "api_capability": True,
    }


@pytest.mark.anyio
async def test_promote_makes_one_primary(emu: Emulator) -> None:
    """POST /<id>/credentials/primary/<user> makes it primary and the old one not."""
    old = emu.username
    response = await call(emu, "promote_credential")
    assert response.status_code == 200
    assert response.json()["primary"] is True
    assert response.json()["sasl_username"] == "SECOND"
    assert "sasl_password" not in response.json()
    assert emu.cache.credential(old).primary is False


@pytest.mark.anyio
async def test_delete_removes_the_credential(emu: Emulator) -> None:
    """DELETE /<id>/credentials/primary/<user> answers 200 "" and the credential is gone."""
    response = await call(emu, "delete_credential")
    assert (response.status_code, response.text) == (200, '""')
    assert [c.sasl_username for c in emu.cache.credentials] == [emu.username]
    again = await call(emu, "login", auth=("SECOND", "second-password"))
    assert again.status_code == 401


# --- authentication and authorization -------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize(
    "auth",
    [("NOBODY", "x"), ("SECOND", "wrong-password")],
    ids=["unknown-user", "wrong-password"],
)
async def test_unknown_credential_gets_401(emu: Emulator, name: str, auth: tuple[str, str]) -> None:
    """Every endpoint answers 401 to an unknown username or a wrong password."""
    response = await call(emu, name, auth=auth)
    assert response.status_code == 401
    assert response.text == "Invalid username or password."
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "header", ["", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()]
)
async def test_missing_or_malformed_authorization_gets_401(emu: Emulator, header: str) -> None:
    """No Authorization header, another scheme or a broken token: 401."""
    async with httpx.AsyncClient(transport=emu.transport()) as client:
        headers = {"Authorization": header} if header else {}
        response = await client.get(BASE + "/login", headers=headers)
    assert response.status_code == 401


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CALLS))
async def test_without_api_capability_gets_403(emu: Emulator, name: str) -> None:
    """Every endpoint answers 403 to a credential without the API capability."""
    emu.cache.add_credential("NOAPI", "pw", api=False)
    response = await call(emu, name, auth=("NOAPI", "pw"))
    assert (response.status_code, response.text) == (403, NOT_AUTHORIZED)


@pytest.mark.anyio
async def test_flush_without_flush_capability_gets_403(emu: Emulator) -> None:
    """Flush needs the flush capability; nothing is flushed without it."""
    emu.cache.add_credential("NOFLUSH", "pw", flush=False)
    response = await call(emu, "flush", auth=("NOFLUSH", "pw"))
    assert (response.status_code, response.text) == (403, NOT_AUTHORIZED)
    stats = (await call(emu, "stats", auth=("NOFLUSH", "pw"))).json()
    assert all(s["cmd_flush"] == 0 for s in stats.values())


@pytest.mark.anyio
@pytest.mark.parametrize("name", WITH_CACHE_ID)
@pytest.mark.parametrize("other", ["existing", "missing"])
async def test_another_cache_id_gets_403(emu: Emulator, name: str, other: str) -> None:
    """A path with a cache id that is not the credential's answers 403, whether it exists."""
    second = emu.add_cache(1)
    cache_id = second.cache_id if other == "existing" else 999_999
    response = await call(emu, name, cache_id=cache_id)
    assert (response.status_code, response.text) == (403, NOT_AUTHORIZED)


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CALLS))
async def test_deactivated_cache_gets_404(emu: Emulator, name: str) -> None:
    """A deactivated cache answers 404 "No cache found." on every endpoint."""
    emu.cache.active = False
    response = await call(emu, name)
    assert (response.status_code, response.text) == (404, "No cache found.")


@pytest.mark.anyio
async def test_json_errors_sends_error_texts_as_json_strings(emu: Emulator) -> None:
    """With json_errors=True, error bodies are JSON strings, as some deployments send."""
    emu.json_errors = True
    emu.cache.active = False
    response = await call(emu, "login")
    assert response.status_code == 404
    assert response.json() == "No cache found."


# --- credentials: the emulator's documented choices ------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["update_credential", "promote_credential", "delete_credential"])
async def test_unknown_username_gets_404(emu: Emulator, name: str) -> None:
    """Update, promote and delete of a username the cache lacks answer 404."""
    response = await call(emu, name, user="NOSUCH")
    assert (response.status_code, response.text) == (404, "No credential found.")


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["update_credential", "promote_credential", "delete_credential"])
async def test_another_caches_username_gets_404(emu: Emulator, name: str) -> None:
    """A credential of another cache is not found through this cache."""
    emu.add_cache(1).add_credential("ELSEWHERE", "pw")
    response = await call(emu, name, user="ELSEWHERE")
    assert response.status_code == 404


@pytest.mark.anyio
async def test_deleting_the_primary_gets_403(emu: Emulator) -> None:
    """The primary credential cannot be deleted; it stays."""
    response = await call(emu, "delete_credential", user=emu.username)
    assert (response.status_code, response.text) == (403, NOT_AUTHORIZED)
    assert len(emu.cache.credentials) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"flush_capability": "false"}',
        b'{"flush_capability": 0}',
        b'{"admin": true}',
    ],
    ids=["not-json", "array", "string-false", "number", "unknown-field"],
)
async def test_update_refuses_a_bad_body_with_400(emu: Emulator, body: bytes) -> None:
    """An update body that is not an object of booleans answers 400 and changes nothing."""
    async with httpx.AsyncClient(
        transport=emu.transport(), auth=(emu.username, emu.password)
    ) as client:
        response = await client.patch(BASE + "/1561/credentials/SECOND", content=body)
    assert response.status_code == 400
    assert emu.cache.credential("SECOND").capabilities() == ALL_CAPS


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["a/b", "a?b", "..", "100%"])
async def test_an_escaped_username_is_one_segment(emu: Emulator, name: str) -> None:
    """A percent-encoded username routes as one path segment, whatever it holds."""
    emu.cache.add_credential(name, "pw")
    escaped = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in name)
    async with httpx.AsyncClient(
        transport=emu.transport(), auth=(emu.username, emu.password)
    ) as client:
        response = await client.post(f"{BASE}/1561/credentials/primary/{escaped}")
    assert response.status_code == 200
    assert response.json()["sasl_username"] == name


# --- routing ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    ["/api/login", "/api/v1/nope", "/api/v1/1561/stats/extra", "/api/v1/abc/stats", "/api/v1/"],
)
async def test_unknown_paths_get_404(emu: Emulator, path: str) -> None:
    """Paths the API does not have answer 404 (the login path needs the v1)."""
    async with httpx.AsyncClient(
        transport=emu.transport(), auth=(emu.username, emu.password)
    ) as client:
        response = await client.get("https://analytics.memcachier.com" + path)
    assert response.status_code == 404


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/login", "GET"),
        ("GET", "/1561/flush", "POST"),
        ("POST", "/1561/credentials/primary/SECOND/", None),
        ("PUT", "/1561/credentials", "GET, POST"),
        ("GET", "/1561/credentials/primary/SECOND", "POST, DELETE"),
    ],
)
async def test_wrong_method_gets_405(
    emu: Emulator, method: str, path: str, allow: str | None
) -> None:
    """A known path with another method answers 405 with Allow (a trailing slash is 404)."""
    async with httpx.AsyncClient(
        transport=emu.transport(), auth=(emu.username, emu.password)
    ) as client:
        response = await client.request(method, BASE + path)
    if allow is None:
        assert response.status_code == 404
    else:
        assert response.status_code == 405
        assert response.headers["allow"] == allow


@pytest.mark.anyio
async def test_auth_comes_before_routing(emu: Emulator) -> None:
    """A request to no endpoint without a valid credential gets 401, not 404."""
    async with httpx.AsyncClient(transport=emu.transport(), auth=("NOBODY", "x")) as client:
        response = await client.get(BASE + "/nope")
    assert response.status_code == 401


# --- injected faults ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CALLS))
async def test_server_error_fault(emu: Emulator, name: str) -> None:
    """A server_error fault answers 500 "Server error" and does not act."""
    emu.faults = FaultPlan().script(name, "server_error")
    before = len(emu.cache.credentials)
    response = await call(emu, name)
    assert (response.status_code, response.text) == (500, "Server error")
    assert len(emu.cache.credentials) == before
    assert emu.faults.count("server_error", name) == 1


@pytest.mark.anyio
async def test_partial_stats_fault_names_one_server(emu: Emulator) -> None:
    """A partial fault on stats answers 500 naming one host:port of the cache."""
    emu.faults = FaultPlan().script("stats", "partial")
    response = await call(emu, "stats")
    assert response.status_code == 500
    head, _, servers = response.text.partition(": ")
    assert head == "Server error"
    assert servers in [s.name for s in emu.cache.servers]


@pytest.mark.anyio
async def test_partial_flush_fault_flushes_the_other_servers(emu: Emulator) -> None:
    """A partial flush names one server, and every other server was flushed."""
    emu.faults = FaultPlan().script("flush", "partial")
    response = await call(emu, "flush")
    assert response.status_code == 500
    failed = response.text.partition(": ")[2]
    stats = (await call(emu, "stats")).json()
    assert {name: s["cmd_flush"] for name, s in stats.items()} == {
        name: 0 if name == failed else 1 for name in stats
    }


@pytest.mark.anyio
async def test_a_server_down_is_named_in_the_500(emu: Emulator) -> None:
    """A simulated server that is down makes stats and flush answer 500 naming it."""
    down = emu.cache.servers[1]
    assert isinstance(down, SimulatedServer)
    down.up = False
    for name in ("stats", "flush"):
        response = await call(emu, name)
        assert (response.status_code, response.text) == (500, f"Server error: {down.name}")


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CALLS))
async def test_rate_limit_fault_sends_retry_after(emu: Emulator, name: str) -> None:
    """A rate_limit fault answers 429 with the plan's Retry-After, rounded up to whole seconds."""
    emu.faults = FaultPlan(retry_after=2.5).script(name, "rate_limit")
    response = await call(emu, name)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "status"), [("bad_gateway", 502), ("unavailable", 503), ("gateway_timeout", 504)]
)
async def test_proxy_faults_send_html(emu: Emulator, kind: str, status: int) -> None:
    """502, 503 and 504 faults answer the proxy's HTML page."""
    emu.faults = FaultPlan().script("stats", kind)
    response = await call(emu, "stats")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert f"<h1>{status} " in response.text


@pytest.mark.anyio
@pytest.mark.parametrize("name", WITH_BODY)
async def test_malformed_fault_sends_a_200_that_does_not_parse(emu: Emulator, name: str) -> None:
    """A malformed fault answers 200 with a body the SDK's decoder for that endpoint refuses."""
    emu.faults = FaultPlan().script(name, "malformed")
    response = await call(emu, name)
    assert response.status_code == 200
    with pytest.raises(DecodeError):
        ENDPOINTS[name].decode(response.content, name)


@pytest.mark.anyio
async def test_reset_fault_raises_read_error_and_does_not_act(emu: Emulator) -> None:
    """In process, a reset raises httpx.ReadError, and the call was not carried out."""
    emu.faults = FaultPlan().script("create_credential", "reset")
    with pytest.raises(httpx.ReadError):
        await call(emu, "create_credential")
    assert len(emu.cache.credentials) == 2


@pytest.mark.anyio
async def test_act_then_drop_creates_then_drops(emu: Emulator) -> None:
    """act_then_drop carries the call out, then the connection closes with no answer."""
    emu.faults = FaultPlan().script("create_credential", "act_then_drop")
    with pytest.raises(httpx.RemoteProtocolError):
        await call(emu, "create_credential")
    assert len(emu.cache.credentials) == 3


@pytest.mark.anyio
async def test_act_then_drop_on_flush_flushes(emu: Emulator) -> None:
    """act_then_drop on flush flushes every server before dropping."""
    emu.faults = FaultPlan().script("flush", "act_then_drop")
    with pytest.raises(httpx.RemoteProtocolError):
        await call(emu, "flush")
    stats = (await call(emu, "stats")).json()
    assert [s["cmd_flush"] for s in stats.values()] == [1, 1, 1]


@pytest.mark.anyio
async def test_latency_fault_delays_the_answer(emu: Emulator) -> None:
    """A latency fault waits at least its delay before answering (then answers normally)."""
    emu.faults = FaultPlan(stats=Faults(latency=1.0, delay=0.05))
    started = time.perf_counter()
    response = await call(emu, "stats")
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.05


@pytest.mark.anyio
async def test_calls_are_counted_by_endpoint(emu: Emulator) -> None:
    """Emulator.calls counts requests per endpoint, faults and failures included."""
    await call(emu, "stats")
    await call(emu, "stats", auth=("NOBODY", "x"))
    await call(emu, "login")
    assert emu.calls == {"stats": 2, "login": 1}
