"""The ``memcachier_emulator``, ``memcachier_mock_api`` and ``memcachier_instant_retries`` fixtures.

Installed with the package as a pytest plugin (entry point
``memcachier_async``), so the fixture is available in any test suite::

    @pytest.mark.anyio
    async def test_dashboard(memcachier_emulator):
        async with memcachier_emulator.client() as api:
            assert len(await api.stats()) == 3

``memcachier_mock_api`` runs the test inside :func:`~memcachier_async.testing.mock_api`
(every client the code under test makes talks to the emulator it yields);
``memcachier_instant_retries`` inside :func:`~memcachier_async.testing.instant_retries`.

With plugin autoloading disabled, enable it with
``-p memcachier_async.testing.pytest_plugin``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from memcachier_async.testing import Emulator


@pytest.fixture
def memcachier_emulator() -> Iterator[Emulator]:
    """A fresh emulator: one cache on three simulated servers, with some traffic
    and one history sample; closed after the test."""
    from memcachier_async.testing import Emulator

    emulator = Emulator(history_interval=1.0)
    emulator.drive_traffic(500)
    emulator.sample()
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture
def memcachier_mock_api() -> Iterator[Emulator]:
    """Every client made during the test talks to this fresh emulator (see ``mock_api``)."""
    from memcachier_async.testing import mock_api

    with mock_api() as emulator:
        yield emulator


@pytest.fixture
def memcachier_instant_retries() -> Iterator[None]:
    """Every retry during the test waits zero seconds (see ``instant_retries``)."""
    from memcachier_async.testing import instant_retries

    with instant_retries():
        yield
