"""Sessions: tests (every declared Python), lowest, lint, typecheck, docs, bench,
mutation.

The Pythons come from pyproject.toml's classifiers (tests/test_ci_matrix.py
keeps them in step with ``requires-python``). On a developer's machine a
declared Python that is missing is skipped; under CI it is an error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import nox
from nox.virtualenv import UV
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)

nox.options.sessions = ["tests", "tests_httpx2", "lowest", "lint", "typecheck", "docs"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() in {"1", "true"}


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (with coverage and its floor unless ``-- --no-cov``)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


# The suite as an application that called httpx2.alias_httpx() runs it: the
# alias is made before pytest (or anything else) imports httpx.
UNDER_HTTPX2 = (
    "import sys, httpx2; httpx2.alias_httpx(); import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


@nox.session(python=PYTHONS[-1])
def tests_httpx2(session: nox.Session) -> None:
    """The test suite (respx included) with ``import httpx`` loading httpx2, on one Python."""
    session.install("-e", ".[test]")
    session.env["MEMCACHIER_EXPECT_HTTPX2"] = "1"  # tests/test_httpx2.py checks the alias held
    # httpx2 imports anyio before pytest starts, so pytest cannot rewrite the
    # asserts of anyio's plugin module: that warning is expected here.
    quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    session.run("python", "-c", UNDER_HTTPX2, *quiet, *session.posargs)


@nox.session(python=PYTHONS[0], venv_backend="uv", reuse_venv=False)
def lowest(session: nox.Session) -> None:
    """The suite on the oldest Python with the lowest version pyproject allows of
    every dependency: core and every runtime extra (the floors are promises).
    """
    session.install("--resolution", "lowest-direct", "-e", f".[{','.join(LOWEST_EXTRAS)}]")
    freeze = session.run(UV, "pip", "freeze", external=True, silent=True)
    assert isinstance(freeze, str)
    session.log("installed:\n" + freeze)
    python = session.run(
        "python", "-c", "import platform; print(platform.python_version())", silent=True
    )
    assert isinstance(python, str)
    wrong = floors_not_installed(PYPROJECT, LOWEST_EXTRAS, freeze, python.strip())
    if wrong:
        session.error("a declared floor was not what got installed: " + "; ".join(wrong))
    session.run("python", "-m", "pytest", *session.posargs)


# Every runtime extra (the test extra names cli, prometheus, aiohttp and otel).
LOWEST_EXTRAS = ("test", "speedups")


def floors_not_installed(
    pyproject: dict[str, Any], extras: Sequence[str], freeze: str, python: str
) -> list[str]:
    """Each dependency of the core and of ``extras`` whose installed version is not
    its declared floor (``name>=floor``), as ``"name: floor X, installed Y"``.

    A floor the resolver could not reach (another dependency needs more) is a
    promise nobody tests: raise it in pyproject.toml.
    """
    project = pyproject["project"]
    installed = {}
    for line in freeze.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            installed[canonicalize_name(name)] = Version(version.strip())
    requirements = [Requirement(r) for r in project["dependencies"]]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                pending.extend(requirement.extras)
            else:
                requirements.append(requirement)
    wrong = []
    environment = {"python_version": ".".join(python.split(".")[:2]), "python_full_version": python}
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        name = canonicalize_name(requirement.name)
        if len(floors) != 1:
            wrong.append(f"{name}: no single >= floor in {requirement}")
        elif installed.get(name) != floors[0]:
            wrong.append(f"{name}: floor {floors[0]}, installed {installed.get(name)}")
    return wrong


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and on the typing test file."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "memcachier_async")
    session.run("mypy", "--strict", "tests/typing_check.py")


@nox.session
def docs(session: nox.Session) -> None:
    """mkdocs build --strict: a broken link or reference fails (nox -s docs -- serve to browse)."""
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's notice about MkDocs 2.0
    if session.posargs == ["serve"]:
        session.run("mkdocs", "serve")
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side; regenerates benchmarks/RESULTS.md."""
    session.install("-e", ".[test,bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing of the pure core with mutmut (slow: not in CI).

    What is mutated and which tests run is ``[tool.mutmut]`` in pyproject.toml;
    ``nox -s mutation -- "memcachier_async._insight*"`` runs one module's
    mutants. Record the score and the survivors in tests/MUTATION.md.
    """
    session.install("-e", ".[test]", "mutmut>=3.3")
    session.run("nice", "-n", "10", "mutmut", "run", *session.posargs, external=True)
    session.run("mutmut", "results")
