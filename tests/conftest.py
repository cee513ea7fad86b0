"""Every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest

# Our own pytest plugin (the ``memcachier_emulator`` fixture) is loaded here
# rather than through its entry point, which pyproject's addopts disables: an
# entry point imports the package before pytest-cov starts measuring.
pytest_plugins = ["memcachier_async.testing.pytest_plugin"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
