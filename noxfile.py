"""Sessions: tests (each supported Python found), lint, typecheck, docs, bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_venv = "yes"
# Test on every supported Python this machine has; skip the others.
nox.options.error_on_missing_interpreters = False

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite with coverage (the floor is in pyproject.toml)."""
    session.install("-e", ".[test]")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report")


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
