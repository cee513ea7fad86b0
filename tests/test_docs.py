"""The docs and the README: every python block runs or says why not, the reference covers
the public surface, the README stays a landing page in step with CI."""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import pytest
import respx
from docs_examples import (
    DOCS,
    ROOT,
    all_pages,
    blocks,
    compile_block,
    markers_without_block,
    page_code,
)

import memcachier_async
import memcachier_async.testing

TESTS = ROOT / "tests"
SAMPLES = TESTS / "samples"
BASE = "https://analytics.memcachier.com/api/v1"


def source_of_tests() -> str:
    return "\n".join(path.read_text() for path in sorted(TESTS.glob("test_*.py")))


def pages_run_over_tcp() -> set[str]:
    """Pages tests/test_docs_tcp.py runs in a fresh process against the emulator over TCP."""
    source = (TESTS / "test_docs_tcp.py").read_text()
    return set(re.findall(r"run_page\(\s*served,\s*\"([\w/.-]+\.md)\"", source))


def names_read_by_tests() -> set[tuple[str, str]]:
    """(page, name) pairs some test reads: ``named_blocks("page.md", "name")`` or a helper
    called the same way."""
    return set(re.findall(r"\(\s*\"([\w/.-]+\.md)\",\s*\"([^\"]+)\"", source_of_tests()))


@pytest.mark.parametrize("page", all_pages())
def test_every_python_block_runs_or_says_why_not(page: str) -> None:
    """A python block is run in a fresh process against the emulator over TCP, read by name by
    a test, or marked skip with a reason."""
    named = names_read_by_tests()
    for block in blocks(page):
        if block.lang not in {"python", "py"}:
            continue
        where = f"{page}:{block.line}"
        if block.runs:
            # In a fresh process, against the emulator over TCP with its real clock.
            assert page in pages_run_over_tcp(), f"{where}: tests/test_docs_tcp.py does not run it"
        elif block.skip_reason is not None:
            assert block.skip_reason, f"{where}: a skipped block says why"
        else:
            assert (page, block.marker) in named, f"{where}: no test reads {block.marker!r}"


@pytest.mark.parametrize("page", all_pages())
def test_named_blocks_are_read_and_markers_mark_a_block(page: str) -> None:
    """Every docs-test name is one a test asks for, and every marker sits above a block."""
    named = names_read_by_tests()
    for block in blocks(page):
        if block.marker is not None and block.skip_reason is None:
            assert (page, block.marker) in named, f"{page}:{block.line}: {block.marker!r} unread"
    assert markers_without_block(page) == []


@pytest.mark.parametrize("page", all_pages())
def test_running_blocks_compile(page: str) -> None:
    """The blocks page_code runs are valid Python (a syntax error names the page's line)."""
    for block in blocks(page):
        if block.runs:
            compile_block(block)


def test_page_code_reports_the_pages_own_line_numbers() -> None:
    """A failing block's traceback points at its line in the page, not at line 1."""
    (block, *_) = [block for block in blocks("index.md") if block.runs]
    code = compile_block(block)
    assert code.co_filename == str(DOCS / "index.md")
    assert min(line for _, _, line in code.co_lines() if line) >= block.line


def reference_targets() -> set[str]:
    text = "\n".join(path.read_text() for path in (DOCS / "reference").glob("*.md"))
    return set(re.findall(r"^::: (\S+)", text, re.M))


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("memcachier_async", memcachier_async.__all__),
        ("memcachier_async.testing", memcachier_async.testing.__all__),
    ],
)
def test_reference_covers_the_public_surface(module: str, names: list[str]) -> None:
    """Every public name has its entry (``::: module.name``) in docs/reference/."""
    documented = reference_targets()
    missing = [n for n in names if n != "__version__" and f"{module}.{n}" not in documented]
    assert missing == [], f"add '::: {module}.NAME' to docs/reference/ for {missing}"


def test_reference_names_only_public_objects() -> None:
    """The reference documents public objects only, through their public path."""
    public = {f"memcachier_async.{n}" for n in memcachier_async.__all__}
    public |= {f"memcachier_async.testing.{n}" for n in memcachier_async.testing.__all__}
    public.add("memcachier_async.testing.pytest_plugin")
    assert reference_targets() - public == set()


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_is_a_landing_page() -> None:
    """The README stays under 150 lines: the manual lives in docs/."""
    assert len(readme().splitlines()) < 150


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command() -> None:
    """The README's first block is the demo and the test command; .ci/run runs that test command."""
    first = blocks("README.md")[0]
    assert first.lang == "bash"
    commands = [line for line in first.code.splitlines() if line and not line.startswith("#")]
    demo, test_command = commands
    assert demo.endswith("memcachier-analytics demo")
    ci_run = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci_run], "keep .ci/run and the README in step"


def test_readme_links_reach_existing_pages() -> None:
    """Every relative link of the README points at a file of the repository."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme())
    local = [link for link in links if "://" not in link]
    assert local
    assert [link for link in local if not (ROOT / link).exists()] == []


def test_readme_has_a_limits_and_safety_section() -> None:
    """The README's "Limits and safety" section links to the full page."""
    section = readme().split("## Limits and safety", 1)[1].split("\n## ", 1)[0]
    assert "docs/limits.md" in section


def sample(name: str) -> object:
    return json.loads((SAMPLES / name).read_text())


@pytest.mark.anyio
async def test_client_page_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The client page's first example logs in once and prints the cache id."""
    show_cache_id = page_code("client.md")["show_cache_id"]
    with respx.mock(base_url=BASE) as router:
        login = router.get("/login").respond(json=sample("login.json"))
        await show_cache_id("user", "pw")
    assert login.call_count == 1
    assert capsys.readouterr().out == "cache 1561\n"


@pytest.mark.anyio
async def test_performance_page_client_sends_with_aiohttp(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The performance page's line builds an aiohttp-backed client: under trio it refuses, naming asyncio."""
    if anyio_backend != "trio":
        pytest.skip("sending over aiohttp on asyncio is tests/test_docs_tcp.py's")
    monkeypatch.setenv("MEMCACHIER_USERNAME", "user")
    monkeypatch.setenv("MEMCACHIER_PASSWORD", "pw")
    async with page_code("performance.md")["api"] as api:
        with pytest.raises(RuntimeError, match="asyncio only"):
            await api.stats()


def sphinx_roles() -> Any:
    """docs/_griffe/sphinx_roles.py, loaded from its file (it needs the docs extra's griffe)."""
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location(
        "sphinx_roles", DOCS / "_griffe" / "sphinx_roles.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_roles_become_links_or_code() -> None:
    """A role the resolver finds becomes a cross-reference (``~`` shows the last part); others, code."""
    roles = sphinx_roles()
    known = {
        "login": "memcachier_async.AsyncAnalytics.login",
        "memcachier_async.Insight": "x.Insight",
    }
    text = "See :meth:`login`, :class:`~memcachier_async.Insight` and :func:`_private`."
    assert roles.convert(text, known.get) == (
        "See [`login`][memcachier_async.AsyncAnalytics.login], [`Insight`][x.Insight] and `_private`."
    )


def test_docstring_literal_blocks_become_fences() -> None:
    """``text::`` and its indented block become ``text:`` and a fenced block; a lone ``::`` goes."""
    roles = sphinx_roles()
    text = "Use it::\n\n    api = make()\n\n    await api.stats()\n\nThen:\n\n::\n\n    done()\n"
    assert roles.literal_blocks(text) == (
        "Use it:\n\n```python\napi = make()\n\nawait api.stats()\n```\n\nThen:\n\n```python\ndone()\n```\n"
    )


def test_docs_cite_nothing_that_does_not_ship() -> None:
    """The README, the docs and the package never send a reader to the API reading notes
    (shared/api/NOTES.md), which live beside the project, not in it."""
    texts = {
        path: path.read_text()
        for path in [
            ROOT / "README.md",
            *DOCS.rglob("*.md"),
            *(ROOT / "memcachier_async").rglob("*.py"),
        ]
    }
    citing = sorted(
        str(path.relative_to(ROOT))
        for path, text in texts.items()
        if "NOTES.md" in text or "shared/api" in text
    )
    assert citing == []
