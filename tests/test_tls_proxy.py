"""Proxies, TLS options and default headers of the client's own transport, on both backends.

A recording proxy on loopback (``tests/_proxy_server.py``) is set as
HTTP_PROXY, HTTPS_PROXY and ALL_PROXY: it must never receive a credential
in clear text, whatever the backend and the base URL. Loopback origins are
reached directly; an ``https://`` origin beyond loopback goes through a
CONNECT tunnel (the proxy sends it on to a TLS server on loopback, with a
certificate from a test CA made by trustme).
"""

from __future__ import annotations

import base64
import gc
import ssl
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _limits_server import LoopbackServer, plain
from _proxy_server import RecordingProxy, TLSOrigin

from memcachier_async import (
    AsyncAnalytics,
    OutcomeUnknownError,
    RetryPolicy,
    TransportError,
)
from memcachier_async._transports.retry import certificate_failure

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.anyio

PASSWORD = "proxy-Pa55word-never-seen"
TOKEN = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
TLS_NAME = "analytics.example.test"
FAST = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, budget=None)


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("aiohttp runs on asyncio only")
    return str(request.param)


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(TLS_NAME, "localhost", "127.0.0.1", "::1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def tls_origin(server_context: ssl.SSLContext) -> Iterator[TLSOrigin]:
    origin = TLSOrigin(server_context, b"[]")
    yield origin
    origin.close()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch, tls_origin: TLSOrigin) -> Iterator[RecordingProxy]:
    """A recording proxy in every proxy variable; its tunnels lead to ``tls_origin``."""
    proxy = RecordingProxy(tunnel_to=tls_origin.port)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
        monkeypatch.setenv(name.lower(), proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield proxy
    proxy.close()


def assert_no_credential(proxy: RecordingProxy) -> None:
    assert proxy.authorization_headers() == 0
    assert all(TOKEN.encode() not in head for head in proxy.heads)
    assert TOKEN.encode() not in bytes(proxy.tunnelled)
    assert PASSWORD.encode() not in bytes(proxy.tunnelled)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_http_loopback_never_goes_through_a_proxy(
    proxy_env: RecordingProxy, backend: str, host: str
) -> None:
    """http:// to loopback is reached directly, with every proxy variable set."""
    bind = "::1" if host == "[::1]" else "127.0.0.1"
    with LoopbackServer(plain("200 OK", b"[]", "Content-Type: application/json"), bind) as origin:
        url = f"http://{host}:{origin.port}/api/v1"
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=url,
            http_backend=backend,  # type: ignore[arg-type]
        ) as api:
            assert await api.list_credentials() == []
        assert len(origin.requests) == 1
    assert proxy_env.heads == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_https_loopback_never_goes_through_a_proxy(
    proxy_env: RecordingProxy,
    tls_origin: TLSOrigin,
    client_context: ssl.SSLContext,
    backend: str,
    host: str,
) -> None:
    """https:// to loopback is reached directly too (verify= trusts the test CA)."""
    url = f"https://{host}:{tls_origin.port}/api/v1"
    async with AsyncAnalytics(
        "user",
        PASSWORD,
        cache_id=1,
        base_url=url,
        http_backend=backend,  # type: ignore[arg-type]
        verify=client_context,
    ) as api:
        assert await api.list_credentials() == []
    assert proxy_env.heads == []
    assert len(tls_origin.heads) == 1


async def test_https_beyond_loopback_goes_through_a_connect_tunnel(
    proxy_env: RecordingProxy,
    tls_origin: TLSOrigin,
    client_context: ssl.SSLContext,
    backend: str,
) -> None:
    """https:// to a remote name uses CONNECT: the proxy sees the tunnel, never the credentials."""
    async with AsyncAnalytics(
        "user",
        PASSWORD,
        cache_id=1,
        base_url=f"https://{TLS_NAME}/api/v1",
        http_backend=backend,  # type: ignore[arg-type]
        verify=client_context,
    ) as api:
        assert await api.list_credentials() == []
    assert proxy_env.heads
    assert all(head.startswith(f"CONNECT {TLS_NAME}:443 ".encode()) for head in proxy_env.heads)
    assert proxy_env.tunnelled  # TLS went through it ...
    assert_no_credential(proxy_env)  # ... and nothing readable
    assert TOKEN.encode() in tls_origin.heads[0]  # the origin got them, inside TLS


async def test_explicit_proxy_is_used_for_https_and_ignored_for_loopback(
    tls_origin: TLSOrigin, client_context: ssl.SSLContext, backend: str
) -> None:
    """proxy= sends https:// through a tunnel; a loopback base URL still goes direct."""
    proxy = RecordingProxy(tunnel_to=tls_origin.port)
    try:
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=f"https://{TLS_NAME}/api/v1",
            http_backend=backend,  # type: ignore[arg-type]
            verify=client_context,
            proxy=proxy.url,
        ) as api:
            assert await api.list_credentials() == []
        assert len(proxy.heads) == 1
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=f"https://127.0.0.1:{tls_origin.port}/api/v1",
            http_backend=backend,  # type: ignore[arg-type]
            verify=client_context,
            proxy=proxy.url,
        ) as api:
            assert await api.list_credentials() == []
        assert len(proxy.heads) == 1
        assert_no_credential(proxy)
    finally:
        proxy.close()


async def test_refused_tunnel_counts_as_not_sent(
    monkeypatch: pytest.MonkeyPatch, client_context: ssl.SSLContext, backend: str
) -> None:
    """A proxy that refuses CONNECT: even a create (not idempotent) is retried, never "unknown"."""
    proxy = RecordingProxy(tunnel_to=1, connect_status="407")
    try:
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=f"https://{TLS_NAME}/api/v1",
            http_backend=backend,  # type: ignore[arg-type]
            verify=client_context,
            proxy=proxy.url,
            retry=FAST,
        ) as api:
            with pytest.raises(TransportError) as caught:
                await api.create_credential()
        assert not isinstance(caught.value, OutcomeUnknownError)
        assert [a.outcome for a in caught.value.attempts] == ["ProxyError"] * 3
        assert len(proxy.heads) == 3
        assert_no_credential(proxy)
    finally:
        proxy.close()


async def test_user_client_that_would_proxy_plain_http_is_refused(
    proxy_env: RecordingProxy,
) -> None:
    """An http_client routing http:// through HTTP_PROXY is refused; trust_env=False is fine."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="trust_env=False") as caught:
            AsyncAnalytics("user", PASSWORD, base_url="http://127.0.0.1:9/api/v1", http_client=http)
    assert PASSWORD not in str(caught.value)
    with LoopbackServer(plain("200 OK", b"[]", "Content-Type: application/json")) as origin:
        async with httpx.AsyncClient(trust_env=False) as http:
            api = AsyncAnalytics(
                "user", PASSWORD, cache_id=1, base_url=origin.url(), http_client=http
            )
            assert await api.list_credentials() == []
    assert proxy_env.heads == []


# --- TLS -----------------------------------------------------------------------


async def test_certificate_failure_is_not_retried(tls_origin: TLSOrigin, backend: str) -> None:
    """An untrusted certificate fails the call at once: one attempt, not four."""
    async with AsyncAnalytics(
        "user",
        PASSWORD,
        cache_id=1,
        base_url=f"https://127.0.0.1:{tls_origin.port}/api/v1",
        http_backend=backend,  # type: ignore[arg-type]
        retry=FAST,
    ) as api:
        with pytest.raises(TransportError) as caught:
            await api.list_credentials()
    assert len(caught.value.attempts) == 1
    assert certificate_failure(caught.value.__cause__ or caught.value)
    assert tls_origin.heads == []


@pytest.mark.parametrize("how", ["context", "path", "off"])
async def test_verify_options(
    tls_origin: TLSOrigin,
    ca: Any,
    client_context: ssl.SSLContext,
    tmp_path: Path,
    backend: str,
    how: str,
) -> None:
    """verify= takes an SSLContext, a CA bundle path, or False, on the client's own transport."""
    verify: Any
    if how == "context":
        verify = client_context
    elif how == "path":
        verify = str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(verify)
    else:
        verify = False
    async with AsyncAnalytics(
        "user",
        PASSWORD,
        cache_id=1,
        base_url=f"https://127.0.0.1:{tls_origin.port}/api/v1",
        http_backend=backend,  # type: ignore[arg-type]
        verify=verify,
    ) as api:
        assert await api.list_credentials() == []


async def test_client_certificate(
    ca: Any, client_context: ssl.SSLContext, tmp_path: Path, backend: str
) -> None:
    """cert= presents a client certificate; a server that requires one refuses a client without."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_context)
    client_cert = ca.issue_cert("client@example.test")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(cert_file)
    client_cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    origin = TLSOrigin(server_context, b"[]")
    try:
        url = f"https://127.0.0.1:{origin.port}/api/v1"
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=url,
            http_backend=backend,  # type: ignore[arg-type]
            verify=str(tmp_path / "ca.pem"),
            cert=(str(cert_file), str(key_file)),
        ) as api:
            assert await api.list_credentials() == []
        with warnings.catch_warnings():
            if backend == "aiohttp" and sys.version_info < (3, 11):
                # Python 3.10's asyncio SSL transport is left unclosed after the
                # server's handshake alert (sslproto was rewritten in 3.11);
                # its ResourceWarning on collection is expected here.
                warnings.simplefilter("ignore", ResourceWarning)
            async with AsyncAnalytics(
                "user",
                PASSWORD,
                cache_id=1,
                base_url=url,
                http_backend=backend,  # type: ignore[arg-type]
                verify=client_context,
                retry=RetryPolicy.disabled(),
            ) as api:
                with pytest.raises(TransportError):
                    await api.list_credentials()
            gc.collect()
        assert len(origin.heads) == 1
    finally:
        origin.close()


async def test_own_transport_options_keep_retries(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, backend: str
) -> None:
    """With verify= (and headers=) the SDK's pool and retries stay: a 503 is retried."""
    origin = TLSOrigin(server_context, b"[]", statuses=["503 Service Unavailable"])
    try:
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=f"https://127.0.0.1:{origin.port}/api/v1",
            http_backend=backend,  # type: ignore[arg-type]
            verify=client_context,
            headers={"X-Request-Source": "tests"},
            retry=FAST,
        ) as api:
            assert await api.list_credentials() == []
        assert len(origin.heads) == 2
        assert all(b"x-request-source: tests" in head.lower() for head in origin.heads)
    finally:
        origin.close()


# --- default headers -------------------------------------------------------------


async def test_default_headers_reach_the_server(backend: str) -> None:
    """headers= are sent with every request; User-Agent may be replaced, credentials kept."""
    with LoopbackServer(plain("200 OK", b"[]", "Content-Type: application/json")) as origin:
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=origin.url(),
            http_backend=backend,  # type: ignore[arg-type]
            headers={"X-Tenant": "blue", "User-Agent": "my-app/1.0"},
        ) as api:
            await api.list_credentials()
        head = origin.requests[0].lower()
    assert b"x-tenant: blue" in head
    assert b"user-agent: my-app/1.0" in head
    assert b"memcachier-async" not in head
    assert b"authorization: basic " + TOKEN.lower().encode() in head


async def test_default_headers_with_a_user_client() -> None:
    """headers= apply to requests sent through the user's own http_client too."""
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json=[])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        api = AsyncAnalytics("u", "p", cache_id=1, http_client=http, headers={"X-Tenant": "blue"})
        await api.list_credentials()
    assert seen[0]["x-tenant"] == "blue"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"headers": {"Authorization": "Bearer x"}}, "Authorization"),
        ({"headers": {"host": "evil.example"}}, "host"),
        ({"verify": False, "transport": "mock"}, "own transport"),
        ({"proxy": "http://127.0.0.1:3128", "transport": "mock"}, "own transport"),
        ({"cert": "client.pem", "transport": "mock"}, "own transport"),
    ],
)
def test_refused_transport_options(kwargs: dict[str, Any], match: str) -> None:
    """Credentials cannot be overridden by headers; TLS and proxy options need the SDK's transport."""
    if kwargs.get("transport") == "mock":
        kwargs = {**kwargs, "transport": httpx.MockTransport(lambda r: httpx.Response(200))}
    with pytest.raises(ValueError, match=match):
        AsyncAnalytics("u", "p", **kwargs)


def test_cert_with_an_ssl_context_is_refused(client_context: ssl.SSLContext) -> None:
    """A client certificate goes into the SSLContext given as verify=, not beside it."""
    with pytest.raises(ValueError, match="load the client certificate"):
        AsyncAnalytics("u", "p", verify=client_context, cert="client.pem")


# --- the same options for many caches ----------------------------------------------


async def test_fan_out_and_watch_take_verify_and_proxy(
    tls_origin: TLSOrigin, client_context: ssl.SSLContext, backend: str
) -> None:
    """fan_out and watch build their shared client with verify= and proxy=, as
    AsyncAnalytics does: each cache's call goes through the tunnel, trusted by the test CA."""
    from memcachier_async import CacheCredentials, fan_out, watch

    proxy = RecordingProxy(tunnel_to=tls_origin.port)
    targets = [CacheCredentials("user", PASSWORD, cache_id=i) for i in (1, 2)]
    options: dict[str, Any] = {
        "base_url": f"https://{TLS_NAME}/api/v1",
        "http_backend": backend,
        "verify": client_context,
        "proxy": proxy.url,
    }
    try:
        async with fan_out(targets, AsyncAnalytics.list_credentials, **options) as results:
            got = [result async for result in results]
        assert [(r.ok, r.value) for r in got] == [(True, []), (True, [])]
        async with watch(targets, 5.0, rounds=1, **options) as poller:
            rounds = [r async for r in poller]
        # watch() asks for stats: this origin answers [] to everything, a decode error
        # per cache, which shows the calls went through (and failed as that cache's result).
        assert [r.status for r in rounds[0].results] == ["failed", "failed"]
        assert len(tls_origin.heads) == 4
        assert len(proxy.heads) >= 1  # CONNECT, one per tunnel
        assert_no_credential(proxy)
    finally:
        proxy.close()
    # Straight to the origin on loopback without the test CA: the certificate
    # fails, as each cache's own error.
    async with fan_out(
        targets,
        AsyncAnalytics.list_credentials,
        base_url=f"https://127.0.0.1:{tls_origin.port}/api/v1",
        http_backend=backend,  # type: ignore[arg-type]
        retry=RetryPolicy.disabled(),
    ) as results:
        failed = [result async for result in results]
    assert [type(r.error) for r in failed] == [TransportError, TransportError]
    assert all(certificate_failure(r.error.__cause__) for r in failed if r.error)


async def test_a_refusing_proxy_never_shows_its_password(
    client_context: ssl.SSLContext, backend: str
) -> None:
    """A proxy with user:password in its URL refuses CONNECT: neither the password
    nor user:password is in the error's str, repr or whole traceback, on either engine."""
    import traceback

    proxy = RecordingProxy(tunnel_to=1, connect_status="407")
    secret = "proxy-pass-123"
    try:
        async with AsyncAnalytics(
            "user",
            PASSWORD,
            cache_id=1,
            base_url=f"https://{TLS_NAME}/api/v1",
            http_backend=backend,  # type: ignore[arg-type]
            verify=client_context,
            proxy=f"http://puser:{secret}@127.0.0.1:{proxy.port}",
            retry=RetryPolicy.disabled(),
        ) as api:
            with pytest.raises(TransportError) as caught:
                await api.list_credentials()
        shown = "".join(traceback.format_exception(caught.value))
        for text in (str(caught.value), repr(caught.value), shown):
            assert secret not in text
            assert "puser:" + secret not in text
        assert "ProxyError" in shown
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("kwargs", "match", "secret"),
    [
        ({"base_url": "https://h.example:65536/api/v1"}, "port must be from 1 to 65535", None),
        ({"base_url": "https://h.example:0/api/v1"}, "port must be from 1 to 65535", None),
        ({"headers": {"X-Token": "tok-9f8e7d\r\nX-Evil: 1"}}, "line break", "tok-9f8e7d"),
        ({"headers": {"X-Token": "tok-9f8e7d\x00"}}, "control character", "tok-9f8e7d"),
        ({"headers": {"X Token": "v"}}, "not a header name", None),
        ({"headers": {"X-Tökén": "v"}}, "not a header name", None),
        ({"proxy": "ftp://u:ppw-secret-1@127.0.0.1:21"}, "not supported", "ppw-secret-1"),
        (
            {"proxy": "socks5://u:ppw-secret-1@127.0.0.1:1080", "http_backend": "aiohttp"},
            "not supported",
            "ppw-secret-1",
        ),
    ],
)
def test_bad_configuration_is_refused_when_given(
    kwargs: dict[str, Any], match: str, secret: str | None
) -> None:
    """A port out of range, a header name or value that is not header text, a proxy
    scheme the engine cannot use: a ValueError at construction, in AsyncAnalytics,
    fan_out and watch alike, naming the argument and never quoting a secret."""
    from memcachier_async import AsyncAnalytics, fan_out, watch

    makers = [
        lambda: AsyncAnalytics("u", "p", **kwargs),
        lambda: fan_out([("u", "p")], AsyncAnalytics.stats, **kwargs),
        lambda: watch([("u", "p")], 1.0, **kwargs),
    ]
    for make in makers:
        with pytest.raises(ValueError, match=match) as caught:
            make()
        if secret is not None:
            assert secret not in str(caught.value)


def test_a_socks_proxy_without_socksio_is_refused_when_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ALL_PROXY=socks5://... or proxy="socks5://..." without the socksio package: a
    ValueError at construction saying what to install, not an ImportError from a call."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "socksio" else real(name, *a)
    )
    with pytest.raises(ValueError, match="socksio") as caught:
        AsyncAnalytics("u", "p", proxy="socks5://u:sockspw-1@127.0.0.1:1080")
    assert "sockspw-1" not in str(caught.value)
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks5://u:sockspw-1@127.0.0.1:1080")
    with pytest.raises(ValueError, match=r"environment's proxy.*socksio") as caught:
        AsyncAnalytics("u", "p")
    assert "sockspw-1" not in str(caught.value)
