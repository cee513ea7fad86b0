"""on_request/on_retry hooks, MEMCACHIER_LOG, and the ready-made Prometheus metrics."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import respx
from prometheus_client import CollectorRegistry, generate_latest

from memcachier_async import (
    AsyncAnalytics,
    RequestEvent,
    RetryEvent,
    RetryPolicy,
    ServerError,
    add_hooks,
    remove_hooks,
)
from memcachier_async._cli.exporter import Exporter
from memcachier_async._logs import setup_from_env
from memcachier_async.contrib.prometheus import ClientMetrics
from memcachier_async.testing import Emulator, FaultPlan

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
FAST = RetryPolicy(initial_backoff=0.0, max_backoff=0.0)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/login").respond(200, json={"cache_id": 7})
        yield router


@pytest.fixture
def events() -> Iterator[tuple[list[RequestEvent], list[RetryEvent]]]:
    requests: list[RequestEvent] = []
    retries: list[RetryEvent] = []
    add_hooks(on_request=requests.append, on_retry=retries.append)  # type: ignore[arg-type]
    yield requests, retries
    remove_hooks(on_request=requests.append, on_retry=retries.append)  # type: ignore[arg-type]


async def test_hooks_see_every_call_and_retry(
    router: respx.MockRouter, events: tuple[list[RequestEvent], list[RetryEvent]]
) -> None:
    """on_request gets login and stats with outcome, status and attempts; on_retry each retry."""
    requests, retries = events
    router.get("/7/stats").mock(side_effect=[httpx.Response(503), httpx.Response(200, json={})])
    router.get("/7/history").respond(403, text="You are not authorized to perform this action.")
    async with AsyncAnalytics("u", "p", retry=FAST) as api:
        await api.stats()
        with pytest.raises(Exception, match="403"):
            await api.history()
    assert [(e.endpoint, e.outcome, e.status_code, e.attempts) for e in requests] == [
        ("login", "ok", 200, 1),
        ("stats", "ok", 200, 2),
        ("history", "PermissionDeniedError", 403, 1),
    ]
    assert requests[1].path == "/{cache_id}/stats"
    assert all(e.duration >= 0 for e in requests)
    assert [(e.endpoint, e.reason) for e in retries] == [("stats", "503")]


async def test_a_failing_hook_never_fails_the_call(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged and ignored; after remove_hooks it is not called."""
    calls: list[object] = []

    def broken(event: object) -> None:
        calls.append(event)
        raise RuntimeError("boom")

    router.get("/7/stats").respond(200, json={})
    add_hooks(on_request=broken, on_retry=broken)
    try:
        async with AsyncAnalytics("u", "p") as api:
            assert len(await api.stats()) == 0
    finally:
        remove_hooks(on_request=broken, on_retry=broken)
    assert len(calls) == 2  # login and stats
    assert "hook" in caplog.text
    async with AsyncAnalytics("u", "p") as api:
        await api.stats()
    assert len(calls) == 2


async def test_a_transport_failure_is_an_event_without_status(
    router: respx.MockRouter, events: tuple[list[RequestEvent], list[RetryEvent]]
) -> None:
    """A call that got no answer reports TransportError, no status, and its attempts."""
    requests, _ = events
    router.get("/7/stats").mock(side_effect=httpx.ConnectError("refused"))
    async with AsyncAnalytics("u", "p", retry=FAST) as api:
        with pytest.raises(Exception, match="ConnectError"):
            await api.stats()
    last = requests[-1]
    assert (last.endpoint, last.outcome, last.status_code, last.attempts) == (
        "stats",
        "TransportError",
        None,
        4,
    )


def test_memcachier_log_adds_one_stderr_handler() -> None:
    """MEMCACHIER_LOG=debug|info adds one marked stderr handler at that level; other values none."""
    logger = logging.getLogger("memcachier_async")
    before = list(logger.handlers)
    level = logger.level
    try:
        handler = setup_from_env({"MEMCACHIER_LOG": "info"})
        assert handler is not None
        assert handler.level == logging.INFO
        again = setup_from_env({"MEMCACHIER_LOG": "DEBUG"})
        assert again is handler
        assert handler.level == logging.DEBUG
        assert len(logger.handlers) == len(before) + 1
        assert setup_from_env({"MEMCACHIER_LOG": "warning"}) is None
        assert setup_from_env({}) is None
    finally:
        logger.handlers[:] = before
        logger.setLevel(level)


def test_memcachier_log_at_import_prints_retries_on_stderr(tmp_path: object) -> None:
    """A script with no logging set up sees the retry lines on stderr under MEMCACHIER_LOG=info."""
    code = (
        "import anyio, httpx\n"
        "from memcachier_async import AsyncAnalytics, RetryPolicy\n"
        "answers = iter([503, 200])\n"
        "def handler(request):\n"
        "    return httpx.Response(next(answers), json={})\n"
        "async def main():\n"
        "    policy = RetryPolicy(initial_backoff=0.0, max_backoff=0.0)\n"
        "    async with AsyncAnalytics('u', 'p', cache_id=1, retry=policy,\n"
        "                              transport=httpx.MockTransport(handler)) as api:\n"
        "        await api.stats()\n"
        "anyio.run(main)\n"
    )
    env = {**os.environ, "MEMCACHIER_LOG": "info"}
    quiet = {k: v for k, v in env.items() if k != "MEMCACHIER_LOG"}
    loud = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    silent = subprocess.run([sys.executable, "-c", code], env=quiet, capture_output=True, text=True)
    assert loud.returncode == silent.returncode == 0, loud.stderr
    assert "INFO memcachier_async] retrying GET" in loud.stderr
    assert "attempt 1 of 4 failed (503)" in loud.stderr
    assert "retrying" not in silent.stderr  # INFO: not printed by logging's last resort


async def test_client_metrics_count_retries_and_time_calls(router: respx.MockRouter) -> None:
    """ClientMetrics: retries by endpoint and reason, a latency histogram by endpoint and outcome."""
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    router.get("/7/stats").respond(503)
    with metrics:
        async with AsyncAnalytics("u", "p", retry=FAST) as api:
            with pytest.raises(ServerError):
                await api.stats()
    async with AsyncAnalytics("u", "p", retry=FAST) as api:  # uninstalled: not counted
        with pytest.raises(ServerError):
            await api.stats()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("memcachier_client_retries_total", endpoint="stats", reason="503") == 3
    count = "memcachier_client_call_duration_seconds_count"
    assert sample(count, endpoint="stats", outcome="ServerError") == 1
    assert sample(count, endpoint="login", outcome="ok") == 1
    text = generate_latest(registry).decode()
    assert "# TYPE memcachier_client_call_duration_seconds histogram" in text


async def test_the_exporter_measures_its_own_calls() -> None:
    """The exporter's registry carries the client metrics of its polls, retries included."""
    emulator = Emulator(faults=FaultPlan().script("stats", "unavailable"))
    async with emulator.client(retry=FAST) as api:
        # A round long enough for the call and its retry to finish, however loaded the machine.
        exporter = Exporter([("web", api)], interval=5.0)
        await exporter.run(rounds=1)
    emulator.close()
    registry = exporter.registry
    assert (
        registry.get_sample_value(
            "memcachier_client_retries_total", {"endpoint": "stats", "reason": "503"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "memcachier_client_call_duration_seconds_count", {"endpoint": "stats", "outcome": "ok"}
        )
        == 1
    )


async def test_the_retries_page_instrumentation_example(
    router: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/retries.md's example installs ClientMetrics and a hook that reports slow calls."""
    from docs_examples import page_code

    monkeypatch.setenv("MEMCACHIER_USERNAME", "user")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "pw")
    monkeypatch.delenv("MEMCACHIER_BASE_URL", raising=False)
    code = page_code("retries.md")
    registry = CollectorRegistry()
    router.get("/7/stats").respond(200, json={})
    metrics = code["instrument"](registry)
    try:
        code["slow_call_alarm"](
            RequestEvent("stats", "GET", "/{cache_id}/stats", "ok", 200, 6.5, 1)
        )
        async with AsyncAnalytics("u", "p") as api:
            await api.stats()
    finally:
        metrics.uninstall()
        remove_hooks(on_request=code["slow_call_alarm"])
    assert "stats took 6.5 s (ok)" in capsys.readouterr().out
    count = registry.get_sample_value(
        "memcachier_client_call_duration_seconds_count", {"endpoint": "stats", "outcome": "ok"}
    )
    assert count == 1


def test_client_metrics_installs_nest() -> None:
    """Two installs (the exporter's poller and its server) need two uninstalls to stop counting."""
    from memcachier_async._transports import hooks

    metrics = ClientMetrics(CollectorRegistry())
    with metrics:
        with metrics:
            pass
        assert metrics.on_request in hooks.request_hooks
    assert metrics.on_request not in hooks.request_hooks
    metrics.uninstall()  # one too many: nothing to undo
    assert metrics.on_request not in hooks.request_hooks
