"""What clients share instead of rebuilding: the default TLS context, URLs for logs.

Loading a CA bundle takes about 25 ms; every ``AsyncAnalytics()`` (and every
``fan_out``/``watch``) used to pay it. Clients with the default verification
now share one context per CA setting.
"""

from __future__ import annotations

import ssl

import certifi
import httpx
import pytest

from memcachier_async import AsyncAnalytics, _stack
from memcachier_async._stack import ssl_context
from memcachier_async._transports.retry import public_url


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every context httpx builds for verify=True from now on (the cache emptied)."""
    made: list[object] = []
    real = httpx.create_ssl_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = real(*args, **kwargs)  # type: ignore[arg-type]
        made.append(context)
        return context

    monkeypatch.setattr(_stack, "_contexts", {})
    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return made


@pytest.mark.anyio
async def test_clients_with_default_verification_share_one_context(built: list[object]) -> None:
    """Six clients, on both backends: one CA bundle loaded, one context for all."""
    pytest.importorskip("aiohttp")
    for backend in ("httpx", "aiohttp", "httpx", "aiohttp", "httpx", "aiohttp"):
        api = AsyncAnalytics(
            "u", "pw", base_url="https://api.example.invalid/api/v1", http_backend=backend
        )  # type: ignore[arg-type]
        await api.aclose()
    assert len(built) == 1
    context = ssl_context(True, None)
    assert context is built[0]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_another_ca_setting_gets_its_own_context(
    built: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE set after the first client: the next one loads that file, not the
    cached bundle; unset again, the first context comes back."""
    first = ssl_context(True, None)
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    second = ssl_context(True, None)
    monkeypatch.delenv("SSL_CERT_FILE")
    assert second is not first
    assert ssl_context(True, None) is first
    assert len(built) == 2


def test_verification_off_is_never_the_shared_context(
    built: list[object],
) -> None:
    """verify=False builds its own unverified context, never the shared verified one."""
    shared = ssl_context(True, None)
    off = ssl_context(False, None)
    assert off is not shared
    assert off.verify_mode == ssl.CERT_NONE
    assert shared.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8000/api/v1/1/stats", "http://127.0.0.1:8000/api/v1/1/stats"),
        ("https://u:secret@h.example/api/v1/1/stats", "https://h.example/api/v1/1/stats"),
        ("https://h.example/api/v1/x?token=secret", "https://h.example/api/v1/x"),
        (
            "https://h.example/api/v1/credentials/a%2Fb",
            "https://h.example/api/v1/credentials/a%2Fb",
        ),
        ("https://u@h.example:8443/p", "https://h.example:8443/p"),
    ],
)
def test_the_url_in_logs_has_no_user_info_and_no_query(url: str, shown: str) -> None:
    """Logs and hooks get the URL without credentials or query, whether or not there
    was anything to take out."""
    assert public_url(httpx.URL(url)) == shown


@pytest.mark.anyio
async def test_a_plain_http_base_loads_no_ca_bundle(built: list[object]) -> None:
    """An http:// (loopback) base never negotiates TLS: making and using its clients
    loads no CA bundle, on either backend."""
    from memcachier_async.testing import Emulator

    backends = ["httpx"]
    try:
        import aiohttp  # noqa: F401
        import sniffio

        if sniffio.current_async_library() == "asyncio":
            backends.append("aiohttp")
    except ImportError:  # pragma: no cover - without the aiohttp extra
        pass
    emulator = Emulator()
    async with emulator, emulator.serve() as base_url:
        for backend in backends:
            async with AsyncAnalytics(
                emulator.username,
                emulator.password,
                base_url=base_url,
                http_backend=backend,  # type: ignore[arg-type]
            ) as api:
                await api.stats()
    assert built == []


def test_the_plain_http_context_trusts_nothing() -> None:
    """Were TLS ever attempted with it, the plain-http context would verify against
    no CA at all: it fails closed."""
    from memcachier_async._stack import _trusts_nothing

    context = _trusts_nothing()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
