"""What CI tests is what pyproject.toml declares.

noxfile.py and .ci/run take the Pythons from the classifiers and the lowest
versions from the ``>=`` floors; these tests keep both declarations in a
shape those readers rely on.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Extras a user installs, and the test extra; lint and bench are tools, not promises.
TESTED_EXTRAS = ("emulator", "cli", "prometheus", "aiohttp", "speedups", "otel", "test")


def declared_pythons() -> list[Version]:
    found = (
        re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c)
        for c in PROJECT["classifiers"]
    )
    return [Version(m[1]) for m in found if m]


def test_classifiers_name_every_python_from_the_floor_up() -> None:
    """The Python classifiers (CI's matrix) start at requires-python's floor, with no gap."""
    versions = declared_pythons()
    floor = Version(PROJECT["requires-python"].removeprefix(">="))
    assert versions[0] == floor
    assert [v.minor for v in versions] == list(range(floor.minor, floor.minor + len(versions)))
    assert all(str(v) in SpecifierSet(PROJECT["requires-python"]) for v in versions)


def test_every_dependency_has_one_floor_and_no_ceiling() -> None:
    """Each dependency of the core and of the tested extras is ``name>=floor``: the
    lowest session installs exactly those floors and checks it got them.
    """
    texts = list(PROJECT["dependencies"])
    for extra in TESTED_EXTRAS:
        texts += PROJECT["optional-dependencies"][extra]
    for text in texts:
        requirement = Requirement(text)
        if requirement.name == PROJECT["name"]:
            assert set(requirement.extras) <= set(TESTED_EXTRAS), text
            continue
        assert [s.operator for s in requirement.specifier] == [">="], text
