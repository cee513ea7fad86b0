"""The code blocks of the docs (``docs/**/*.md``) and of the README, for the tests that run them.

The rules every page follows (``tests/test_docs.py`` enforces them):

- A ``python`` block runs. ``page_code(page)`` executes every python block of
  a page, in order, in one namespace, and the page's tests call what the
  blocks define and check what it does.
- A block that must not run says why, in an HTML comment on the line before
  its fence (comments may stack): ``<!-- docs-test: skip: REASON -->``.
- A block that a test reads another way (shell commands it runs, a config
  file it writes, a snippet it compares with a file) is named the same way,
  ``<!-- docs-test: NAME -->``, and the test asks for ``named_blocks(page, NAME)``.
  A named python block is not executed by ``page_code``.

Blocks of other languages (``bash``, ``toml``, ``yaml``, ``text``) are not
run unless a test asks for them by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PYTHON = {"python", "py"}
MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # of the first line of code (1-based)
    lang: str
    marker: str | None  # the text after "docs-test:", if any
    code: str

    @property
    def runs(self) -> bool:
        """Executed by ``page_code``: a python block with no marker."""
        return self.lang in PYTHON and self.marker is None

    @property
    def skip_reason(self) -> str | None:
        if self.marker is not None and self.marker.startswith("skip:"):
            return self.marker.removeprefix("skip:").strip()
        return None


def page_path(page: str) -> Path:
    """``"README.md"`` is the README; any other name is a page under docs/."""
    return ROOT / page if page == "README.md" else DOCS / page


def all_pages() -> list[str]:
    """The README and every page under docs/."""
    return ["README.md", *sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))]


def blocks(page: str) -> list[Block]:
    """Every fenced block of a page, with the docs-test marker written above it."""
    lines = page_path(page).read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], opening["indent"]
        lang = opening["info"].strip().split(" ", 1)[0].split("{", 1)[0]
        marker = None
        above = i - 1
        while above >= 0 and lines[above].strip().startswith("<!--"):
            found_marker = MARKER.search(lines[above])
            if found_marker is not None:
                marker = found_marker[1]
                break
            above -= 1
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        found.append(Block(page, i + 2, lang, marker, "\n".join(body) + "\n"))
        i = end + 1
    return found


def markers_without_block(page: str) -> list[int]:
    """Lines of docs-test markers that no fenced block follows (a typo or a lost block)."""
    lines = page_path(page).read_text().splitlines()
    lost = []
    for number, line in enumerate(lines):
        if MARKER.search(line) is None:
            continue
        after = number + 1
        while after < len(lines) and lines[after].strip().startswith("<!--"):
            after += 1
        if after >= len(lines) or FENCE.match(lines[after]) is None:
            lost.append(number + 1)
    return lost


def compile_block(block: Block) -> Any:
    """Compiled with the page's own line numbers, so a traceback points into the page."""
    source = "\n" * (block.line - 1) + block.code
    return compile(source, str(page_path(block.page)), "exec")


def page_code(page: str, **names: Any) -> dict[str, Any]:
    """Execute the running python blocks of a page, in order, in one namespace.

    ``names`` are put in the namespace first, for blocks that use a name the
    page leaves to the reader (``username``, ``password``).
    """
    running = [block for block in blocks(page) if block.runs]
    assert running, f"no python block to run in {page}"
    namespace: dict[str, Any] = dict(names)
    for block in running:
        exec(compile_block(block), namespace)
    return namespace


def named_blocks(page: str, name: str) -> list[str]:
    """The code of the blocks of a page marked ``<!-- docs-test: NAME -->``."""
    found = [block.code for block in blocks(page) if block.marker == name]
    assert found, f"no block named {name!r} in {page}"
    return found
