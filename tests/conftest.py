"""Every async test runs on asyncio and on trio."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

# Our own pytest plugin (the ``memcachier_emulator`` fixture) is loaded here
# rather than through its entry point, which pyproject's addopts disables: an
# entry point imports the package before pytest-cov starts measuring.
pytest_plugins = ["memcachier_async.testing.pytest_plugin"]


@pytest.fixture
def clean_cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials, config or terminal width from the developer's shell."""
    for name in (
        "MEMCACHIER_USERNAME",
        "MEMCACHIER_PASSWORD",
        "MEMCACHIER_CONFIG",
        "MEMCACHIER_BASE_URL",
        "COLUMNS",
    ):
        monkeypatch.delenv(name, raising=False)


def _required_here(variable: str) -> bool:
    """CI runs every real-binary test: a missing binary is a failure there, not a skip."""
    return os.environ.get(variable) == "1" or os.environ.get("CI", "").lower() in ("1", "true")


@pytest.fixture
def require_binary() -> Callable[[str, str], str]:
    """``require_binary(name, package)``: the binary's path, or skip (fail in CI) when it is missing.

    Missing binaries fail rather than skip when ``CI`` is true or when
    ``MEMCACHIER_REQUIRE_PROMETHEUS=1`` (``.ci/run`` sets it).
    """

    def require(name: str, package: str) -> str:
        path = shutil.which(name)
        if path is None:
            message = f"the {name} binary is not installed (Debian package {package})"
            if _required_here("MEMCACHIER_REQUIRE_PROMETHEUS"):
                pytest.fail(f"{message}; CI must run this test")
            pytest.skip(message)
        return path

    return require


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``unmeasured`` run without coverage tracing.

    pytest-cov's own ``no_cover`` marker crashes under ``--no-cov`` (its
    controller is then None), so it is only added while coverage is on.
    """
    if getattr(config.option, "no_cov", False) or not config.pluginmanager.hasplugin("_cov"):
        return
    for item in items:
        if item.get_closest_marker("unmeasured") is not None:
            item.add_marker(pytest.mark.no_cover)
