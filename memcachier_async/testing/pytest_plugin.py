"""The ``memcachier_emulator`` pytest fixture.

Installed with the package as a pytest plugin (entry point
``memcachier_async``), so the fixture is available in any test suite::

    @pytest.mark.anyio
    async def test_dashboard(memcachier_emulator):
        async with memcachier_emulator.client() as api:
            assert len(await api.stats()) == 3

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
