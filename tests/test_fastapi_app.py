"""examples/fastapi_app.py: one client per process, a background poller, read-only handlers.

The app runs as in production, its client made by ``AsyncAnalytics.from_env()``
in the lifespan, under ``mock_api()`` (so that client talks to an in-process
emulator) and ``instant_retries()`` (so retries cost no time).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from memcachier_async import to_dict
from memcachier_async.testing import Emulator, FaultPlan, Faults, instant_retries, mock_api

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parent.parent / "examples" / "fastapi_app.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """The example module, loaded from its file (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The emulator every client of the app talks to, with instant retries."""
    # Every stats answer comes 10 s after the previous one, with traffic in
    # between: each poll covers a busy interval however fast the test runs.
    # That clock runs far ahead of the wall time between polls, which
    # watch()'s clock-step check would rightly call a jump: widen it.
    monkeypatch.setattr("memcachier_async._insight.CLOCK_TOLERANCE", 1e9)
    ticks = itertools.count(1_700_000_000, 10)

    def clock() -> float:
        emulator.drive_traffic(200)
        return float(next(ticks))

    emulator = Emulator(clock=clock, history_interval=3600, faults=FaultPlan())
    # Any credentials: mock_api() makes them the emulator's.
    monkeypatch.setenv("MEMCACHIER_USERNAME", "dashboard")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "not-a-real-password")
    monkeypatch.delenv("MEMCACHIER_BASE_URL", raising=False)
    with mock_api(emulator), instant_retries():
        yield emulator
    emulator.close()


def logins(emulator: Emulator) -> int:
    return sum(1 for r in emulator.requests if r.endpoint == "login")


async def wait_for(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():  # noqa: ASYNC110 - the poller has no event to wait on
            await anyio.sleep(0.005)


async def get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        return await http.get(path)


async def test_endpoints_serve_what_the_poller_keeps(
    example: ModuleType, emulator: Emulator
) -> None:
    """/cache/stats and /cache/insight answer from the background poller's latest round."""
    app = example.create_app(interval=0.01)
    async with app.router.lifespan_context(app):
        monitor = app.state.monitor
        assert monitor.rounds >= 1  # started once the first round was in
        stats = await get(app, "/cache/stats")
        assert stats.status_code == 200
        servers = emulator.cache.servers
        assert stats.json()["servers"] == len(servers)

        await wait_for(lambda: monitor.insight is not None)
        insight = await get(app, "/cache/insight")
        assert insight.status_code == 200
        data = insight.json()
        assert data["seconds"] > 0
        assert data["request_rate"] > 0  # traffic ran between the two polls
        assert 0 <= data["hit_rate"] <= 1
        assert data["memory_limit"] == sum(s.stats(0)["limit_maxbytes"] for s in servers)
        assert (await get(app, "/healthz")).json()["ok"] is True
    assert logins(emulator) == 1  # one client for the process, not one per request


async def test_handlers_never_call_the_api(example: ModuleType, emulator: Emulator) -> None:
    """Requests are served from memory: the API sees only the poller's calls."""
    app = example.create_app(interval=3600)
    async with app.router.lifespan_context(app):
        assert emulator.calls["stats"] == 1  # the first round, before serving
        for _ in range(5):
            response = await get(app, "/cache/stats")
            assert response.status_code == 200
        assert emulator.calls["stats"] == 1
        # What the one round read: the emulator's counters, summed over servers.
        servers = emulator.cache.servers
        assert response.json()["get_hits"] == sum(s.stats(0)["get_hits"] for s in servers)
        assert response.json()["items"] == sum(s.stats(0)["curr_items"] for s in servers)
        # One round only: no interval measured yet; ask again when the interval is over.
        for path in ("/cache/insight", "/cache/insight/full"):
            response = await get(app, path)
            assert response.status_code == 503
            assert response.json()["detail"].startswith("warming up: ")
            assert 1 <= int(response.headers["retry-after"]) <= 3600


async def test_shutdown_closes_the_client_and_stops_the_poller(
    example: ModuleType, emulator: Emulator
) -> None:
    """Leaving the lifespan cancels the poller task and closes the one client."""
    app = example.create_app(interval=0.01)
    async with app.router.lifespan_context(app):
        monitor = app.state.monitor
        assert monitor.running
        api = monitor.api
        assert not api.http_client.is_closed
    assert not monitor.running
    assert api.http_client.is_closed
    calls = emulator.calls["stats"]
    await anyio.sleep(0.05)  # several intervals: a live poller would have called again
    assert emulator.calls["stats"] == calls


async def test_a_failing_api_degrades_the_endpoints_not_the_app(
    example: ModuleType, emulator: Emulator
) -> None:
    """When the cache cannot be read, /healthz and /cache/stats say 503 with the reason."""
    emulator.cache.active = False  # "No cache found." on every call
    app = example.create_app(interval=3600)
    async with app.router.lifespan_context(app):
        health = await get(app, "/healthz")
        assert health.status_code == 503
        assert "No cache found." in health.json()["detail"]
        assert (await get(app, "/cache/stats")).status_code == 503


def test_module_app_reads_credentials_only_at_startup(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing the example (as uvicorn does) needs no credentials: the client is made in the lifespan."""
    monkeypatch.delenv("MEMCACHIER_USERNAME", raising=False)
    assert example.app.title == "Cache dashboard"


async def test_models_are_returned_as_they_are(example: ModuleType, emulator: Emulator) -> None:
    """/cache/servers is the polled Stats and /cache/insight/full the Insight, serialised by FastAPI."""
    app = example.create_app(interval=0.01)
    async with app.router.lifespan_context(app):
        monitor = app.state.monitor
        await wait_for(lambda: monitor.insight is not None)
        servers = await get(app, "/cache/servers")
        assert servers.status_code == 200
        assert servers.json() == to_dict(monitor.stats)
        full = (await get(app, "/cache/insight/full")).json()
        assert set(full["servers"]) == {s.name for s in emulator.cache.servers}
        assert full["seconds"] > 0
        schema = (await get(app, "/openapi.json")).json()
    documented = schema["paths"]["/cache/servers"]["get"]["responses"]["200"]
    assert "get_hits" in str(documented)


async def test_live_calls_use_a_short_deadline_on_the_shared_client(
    example: ModuleType, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/cache/live reads now through with_options: same login and pool, its own deadline."""
    app = example.create_app(interval=3600)
    async with app.router.lifespan_context(app):
        live = await get(app, "/cache/live")
        assert live.status_code == 200
        assert set(live.json()) == {s.name for s in emulator.cache.servers}
        credentials = (await get(app, "/cache/credentials")).json()
        assert "dashboard" in {c["sasl_username"] for c in credentials}
        assert all("sasl_password" not in c for c in credentials)
        assert logins(emulator) == 1  # the view shares the poller's login

        # A 503 is retried (instantly, under instant_retries) and the caller never sees it.
        assert emulator.faults is not None
        emulator.faults.script("stats", "unavailable")
        assert (await get(app, "/cache/live")).status_code == 200
        statuses = [r.status for r in emulator.requests if r.endpoint == "stats"]
        assert statuses[-2:] == [503, 200]

        # An API slower than the deadline: 504 from the handler, the poller untouched.
        monkeypatch.setattr(example, "REQUEST_DEADLINE", 0.05)
        emulator.faults = FaultPlan(stats=Faults(latency=1.0, delay=1.0))
        slow = await get(app, "/cache/live")
        assert slow.status_code == 504
        assert "deadline" in slow.json()["detail"]


@pytest.mark.parametrize(
    ("environ", "seconds"),
    [
        ({}, 5.0),
        ({"DASHBOARD_POLL_INTERVAL": "0.5"}, 0.5),
        ({"DASHBOARD_POLL_INTERVAL": "60"}, 60.0),
    ],
)
def test_poll_interval_comes_from_the_environment(
    example: ModuleType, environ: dict[str, str], seconds: float
) -> None:
    """DASHBOARD_POLL_INTERVAL sets the poll interval; without it, a short default."""
    assert example.interval_from(environ) == seconds


@pytest.mark.parametrize("value", ["", "soon", "0", "-5", "nan", "inf"])
def test_a_bad_poll_interval_is_refused_naming_the_variable(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A value that is not positive seconds stops create_app() with the variable's name."""
    monkeypatch.setenv("DASHBOARD_POLL_INTERVAL", value)
    with pytest.raises(ValueError, match=r"^DASHBOARD_POLL_INTERVAL must be a positive number"):
        example.create_app()


async def test_warming_up_says_when_to_ask_again_then_answers(
    example: ModuleType, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the first interval ends, /cache/insight is 503 "warming up" with a Retry-After
    of at most the interval; asked again after that long, it answers with rates."""
    monkeypatch.setenv("DASHBOARD_POLL_INTERVAL", "1")
    app = example.create_app()
    async with app.router.lifespan_context(app):
        assert app.state.monitor.interval == 1.0
        early = await get(app, "/cache/insight")
        assert early.status_code == 503
        assert early.json()["detail"] == "warming up: the first interval of 1 s is not over yet"
        wait = int(early.headers["retry-after"])
        assert wait == 1
        await anyio.sleep(wait + 0.5)
        later = await get(app, "/cache/insight")
        assert later.status_code == 200, later.text
        assert later.json()["request_rate"] > 0


def test_examples_ship_in_the_sdist() -> None:
    """The sdist includes examples/ and every file the docs embed with --8<--."""
    import re

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 only
        import tomli as tomllib

    root = EXAMPLE.parent.parent
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    included = pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert "examples" in included
    embedded = {
        match.split(":")[0]
        for page in (root / "docs").rglob("*.md")
        for match in re.findall(r'^--8<-- "([^"]+)"', page.read_text(), re.M)
    }
    assert embedded
    missing = [path for path in embedded if not any(path.startswith(i) for i in included)]
    assert missing == []


def test_the_pages_commands_answer_the_first_curl(
    require_binary: Callable[[str, str], str], tmp_path: Path
) -> None:
    """The FastAPI page's commands, against memcachier-analytics emulator: uvicorn serves the
    example with the default interval, and the first curl --retry gets the rates."""
    import json
    import os
    import re
    import shlex
    import signal
    import subprocess

    from docs_examples import named_blocks

    curl = require_binary("curl", "curl")
    (block,) = named_blocks("fastapi.md", "run-commands")
    _, serve_line, curl_line = block.strip().splitlines()
    # The credentials come from the emulator's export lines; any free ports, not 8000.
    argv = [word for word in shlex.split(serve_line.removesuffix("&")) if "=" not in word]
    assert argv[:2] == ["uvicorn", "examples.fastapi_app:app"]
    root = EXAMPLE.parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMCACHIER_", "DASHBOARD_"))}
    emulator = subprocess.Popen(
        [sys.executable, "-m", "memcachier_async._cli", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    server: subprocess.Popen[str] | None = None
    try:
        assert emulator.stdout is not None
        exports = {}
        for line in emulator.stdout:
            if line.startswith("export "):
                name, _, value = shlex.split(line)[1].partition("=")
                exports[name] = value
            if "Ctrl-C stops it" in line:
                break
        server = subprocess.Popen(
            [sys.executable, "-m", *argv, "--port", "0"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **exports},
        )
        assert server.stderr is not None
        address = None
        for line in server.stderr:
            found = re.search(r"running on http://([\d.]+:\d+)", line)
            if found:
                address = found[1]
                break
        assert address is not None
        words = shlex.split(curl_line, comments=True)
        assert words[0] == "curl"
        words = [curl, *(w.replace("localhost:8000", address) for w in words[1:])]
        done = subprocess.run(words, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["seconds"] > 0
        assert answer["request_rate"] > 0
    finally:
        for process in (server, emulator):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
                for stream in (process.stdout, process.stderr):
                    if stream is not None:
                        stream.close()
