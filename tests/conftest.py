"""Every async test runs on asyncio and on trio."""

from __future__ import annotations

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
